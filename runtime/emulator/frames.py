"""Compact JSON of the Assistants wire objects and of the Responses API's response, byte for
byte ``json.dumps(obj, separators=(",", ":"))``, built from fixed frames around the values.

A stream carries the same run three times or more (created, in_progress, a terminal status),
each time with a few fields changed: the run's fields that never change once it exists are
encoded once a run (:class:`RunFrames`; those an assistant gives, :class:`RunSettingsFrames`, once
an assistant for its runs without overrides), and each snapshot formats only the rest; a response
likewise (:class:`ResponseFrames`: created, in_progress and its end). Values are
formatted without the stdlib encoder where they are a string, a number, null, a boolean or an
empty container (the encoder's fixed cost a call is several times a field's); anything else
goes through it. Each object's field order is the one its constructor in
:mod:`runtime.emulator.objects` (a response: :mod:`runtime.emulator.responses_items`) gives,
which the engines keep (they only reassign fields).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from runtime.jsontext import acyclic_encoder

__all__ = [
    "MessageFrames",
    "ResponseFrames",
    "RunFrames",
    "RunSettingsFrames",
    "StepFrames",
    "encode_json",
    "message_frames",
    "message_json",
    "response_frames",
    "response_json",
    "response_usage_json",
    "run_frames",
    "run_head",
    "run_json",
    "run_settings_frames",
    "step_frames",
    "step_json",
    "thread_json",
    "usage_json",
    "value_json",
]


# Compact JSON, as json.dumps(value, separators=(",", ":")): the wire objects hold no cycles.
encode_json = acyclic_encoder(json.JSONEncoder(separators=(",", ":"), check_circular=False))
_escape: Callable[[str], str] = json.encoder.encode_basestring_ascii
_float_repr = float.__repr__
_finite = math.isfinite


_WORDS = {
    word: _escape(word).encode()
    for word in (
        "thread",
        "thread.run",
        "thread.run.step",
        "thread.message",
        "queued",
        "in_progress",
        "requires_action",
        "cancelling",
        "cancelled",
        "failed",
        "completed",
        "incomplete",
        "expired",
        "message_creation",
        "tool_calls",
        "user",
        "assistant",
    )
}
"""The JSON of the protocol's fixed strings (object names, statuses, step types, roles),
looked up rather than escaped again at each event (a lookup costs a third of an escape)."""
_word = _WORDS.get


def value_json(value: Any) -> bytes:
    """One value as :func:`encode_json` encodes it (the encoder only for what needs it)."""
    if value is None:
        return b"null"
    kind = type(value)
    if kind is str:
        return _escape(value).encode()
    if kind is int:
        return b"%d" % value
    if kind is bool:
        return b"true" if value else b"false"
    if kind is float and math.isfinite(value):
        return _float_repr(value).encode()
    if (kind is dict or kind is list) and not value:
        return b"{}" if kind is dict else b"[]"
    return encode_json(value).encode()


_USAGE_FIELDS = [
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_token_details",
    "completion_tokens_details",
]
_USAGE_DETAILS = ({"cached_tokens": 0}, {"reasoning_tokens": 0})


def usage_json(usage: Mapping[str, Any] | None) -> bytes:
    """``usage`` of a run or a step (as :func:`~runtime.emulator.objects.usage_obj` makes it)."""
    if (
        type(usage) is not dict
        or list(usage) != _USAGE_FIELDS
        or (usage["prompt_token_details"], usage["completion_tokens_details"]) != _USAGE_DETAILS
    ):
        return value_json(usage)
    prompt, completion, total = (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["total_tokens"],
    )
    if type(prompt) is int and type(completion) is int and type(total) is int:
        counts = b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,' % (
            prompt,
            completion,
            total,
        )
    else:
        counts = b'{"prompt_tokens":%b,"completion_tokens":%b,"total_tokens":%b,' % (
            value_json(prompt),
            value_json(completion),
            value_json(total),
        )
    return counts + _USAGE_DETAILS_JSON


_USAGE_DETAILS_JSON = b'"prompt_token_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}'


RunFrames = tuple[bytes, bytes, bytes, bytes]
"""A run's fixed fields encoded: up to ``status``, ``model`` to ``tool_resources``,
``temperature`` to ``truncation_strategy``, and ``response_format`` to the end."""

_RUN_FIELDS = (
    "id",
    "object",
    "created_at",
    "assistant_id",
    "thread_id",
    "status",
    "started_at",
    "expires_at",
    "cancelled_at",
    "failed_at",
    "completed_at",
    "required_action",
    "last_error",
    "model",
    "instructions",
    "tools",
    "tool_resources",
    "metadata",
    "temperature",
    "top_p",
    "reasoning_effort",
    "max_completion_tokens",
    "max_prompt_tokens",
    "truncation_strategy",
    "incomplete_details",
    "usage",
    "response_format",
    "tool_choice",
    "parallel_tool_calls",
)


def run_frames(run: Mapping[str, Any]) -> RunFrames:
    """Encode the fields of a run that keep their value for its whole life."""
    return (run_head(run), *run_settings_frames(run))


RunSettingsFrames = tuple[bytes, bytes, bytes]
"""The last three of a run's :data:`RunFrames`: the fields an assistant and the request's
overrides give it (model to ``tool_resources``, ``temperature`` on, ``response_format`` on)."""


def run_head(run: Mapping[str, Any]) -> bytes:
    """The first of a run's :data:`RunFrames`: its ids and creation time, up to ``status``."""
    v = value_json
    e = _escape
    # The usual types (ids and model strings, a creation time, sampling floats) inline: a
    # call of value_json a field costs more than the field's formatting.
    return b'{"id":%b,"object":%b,"created_at":%b,"assistant_id":%b,"thread_id":%b,"status":' % (
        e(x).encode() if type(x := run["id"]) is str else v(x),
        (_word(x) or e(x).encode()) if type(x := run["object"]) is str else v(x),
        b"%d" % x if type(x := run["created_at"]) is int else v(x),
        e(x).encode() if type(x := run["assistant_id"]) is str else v(x),
        e(x).encode() if type(x := run["thread_id"]) is str else v(x),
    )


def run_settings_frames(run: Mapping[str, Any]) -> RunSettingsFrames:
    """The last three of a run's :data:`RunFrames` (the same for every run an assistant
    makes without overrides)."""
    v = value_json
    e = _escape
    middle = b',"model":%b,"instructions":%b,"tools":%b,"tool_resources":%b,"metadata":' % (
        e(x).encode() if type(x := run["model"]) is str else v(x),
        e(x).encode() if type(x := run["instructions"]) is str else v(x),
        v(run["tools"]),
        v(run["tool_resources"]),
    )
    strategy = run["truncation_strategy"]
    late = (
        b',"temperature":%b,"top_p":%b,"reasoning_effort":%b,"max_completion_tokens":%b,'
        b'"max_prompt_tokens":%b,"truncation_strategy":%b,"incomplete_details":'
        % (
            _float_repr(x).encode()
            if type(x := run["temperature"]) is float and _finite(x)
            else v(x),
            _float_repr(x).encode() if type(x := run["top_p"]) is float and _finite(x) else v(x),
            b"null" if (x := run["reasoning_effort"]) is None else v(x),
            b"null" if (x := run["max_completion_tokens"]) is None else v(x),
            b"null" if (x := run["max_prompt_tokens"]) is None else v(x),
            b'{"type":"auto","last_messages":null}'
            if strategy == _AUTO_STRATEGY and list(strategy) == ["type", "last_messages"]
            else v(strategy),
        )
    )
    tail = b',"response_format":%b,"tool_choice":%b,"parallel_tool_calls":%b}' % (
        e(x).encode() if type(x := run["response_format"]) is str else v(x),
        e(x).encode() if type(x := run["tool_choice"]) is str else v(x),
        v(run["parallel_tool_calls"]),
    )
    return middle, late, tail


_AUTO_STRATEGY = {"type": "auto", "last_messages": None}


def run_json(run: Mapping[str, Any], frames: RunFrames) -> bytes:
    """The JSON of a run: its fixed fields from ``frames`` (:func:`run_frames` of the same
    run), the fields that change (status, timestamps, required action, error, metadata,
    incomplete details, usage) formatted now. A run whose fields are not exactly the wire
    object's, in its order, is encoded whole."""
    if len(run) != len(_RUN_FIELDS):
        return encode_json(run).encode()
    head, middle, late, tail = frames
    return b"".join(
        (
            head,
            _word(x := run["status"]) or _escape(x).encode(),
            b',"started_at":',
            b"null"
            if (x := run["started_at"]) is None
            else b"%d" % x
            if type(x) is int
            else value_json(x),
            b',"expires_at":',
            b"null"
            if (x := run["expires_at"]) is None
            else b"%d" % x
            if type(x) is int
            else value_json(x),
            b',"cancelled_at":',
            b"null"
            if (x := run["cancelled_at"]) is None
            else b"%d" % x
            if type(x) is int
            else value_json(x),
            b',"failed_at":',
            b"null"
            if (x := run["failed_at"]) is None
            else b"%d" % x
            if type(x) is int
            else value_json(x),
            b',"completed_at":',
            b"null"
            if (x := run["completed_at"]) is None
            else b"%d" % x
            if type(x) is int
            else value_json(x),
            b',"required_action":',
            b"null" if (x := run["required_action"]) is None else value_json(x),
            b',"last_error":',
            b"null" if (x := run["last_error"]) is None else value_json(x),
            middle,
            b"{}" if type(x := run["metadata"]) is dict and not x else value_json(x),
            late,
            b"null" if (x := run["incomplete_details"]) is None else value_json(x),
            b',"usage":',
            b"null" if (x := run["usage"]) is None else usage_json(x),
            tail,
        )
    )


_STEP_SIZE, _MESSAGE_SIZE, _THREAD_SIZE = 15, 14, 5


StepFrames = tuple[bytes, bytes, bytes | None]
"""A step's fixed fields encoded: up to ``status``, ``expires_at``, and its ``step_details``
(None when they may still change: a tool-calls step's calls and outputs)."""


def step_frames(step: Mapping[str, Any]) -> StepFrames:
    """Encode the fields of a run step that keep their value for its whole life."""
    head = (
        b'{"id":%b,"object":%b,"created_at":%b,"run_id":%b,"assistant_id":%b,"thread_id":%b,'
        b'"type":%b,"status":'
        % (
            _escape(x).encode() if type(x := step["id"]) is str else value_json(x),
            (_word(x) or _escape(x).encode())
            if type(x := step["object"]) is str
            else value_json(x),
            b"%d" % x if type(x := step["created_at"]) is int else value_json(x),
            _escape(x).encode() if type(x := step["run_id"]) is str else value_json(x),
            _escape(x).encode() if type(x := step["assistant_id"]) is str else value_json(x),
            _escape(x).encode() if type(x := step["thread_id"]) is str else value_json(x),
            (_word(x) or _escape(x).encode()) if type(x := step["type"]) is str else value_json(x),
        )
    )
    expires = b',"expires_at":%b,"failed_at":' % (
        b"%d" % x if type(x := step["expires_at"]) is int else value_json(x)
    )
    details = step["step_details"]
    encoded: bytes | None = None
    if (
        type(details) is dict
        and list(details) == ["type", "message_creation"]
        and details["type"] == "message_creation"
    ):
        creation = details["message_creation"]
        if type(creation) is dict and list(creation) == ["message_id"]:
            encoded = b'{"type":"message_creation","message_creation":{"message_id":%b}}' % (
                _escape(x).encode() if type(x := creation["message_id"]) is str else value_json(x)
            )
    return head, expires, encoded


def step_json(step: Mapping[str, Any], frames: StepFrames | None = None) -> bytes:
    """The JSON of a run step in any state; its fixed fields from ``frames``
    (:func:`step_frames` of the same step), else encoded now."""
    if len(step) != _STEP_SIZE:
        return encode_json(step).encode()
    head, expires, details = step_frames(step) if frames is None else frames
    return b"".join(
        (
            head,
            _word(x := step["status"]) or _escape(x).encode(),
            b',"cancelled_at":',
            b"null"
            if (x := step["cancelled_at"]) is None
            else b"%d" % x
            if type(x) is int
            else value_json(x),
            b',"completed_at":',
            b"null"
            if (x := step["completed_at"]) is None
            else b"%d" % x
            if type(x) is int
            else value_json(x),
            expires,
            b"null"
            if (x := step["failed_at"]) is None
            else b"%d" % x
            if type(x) is int
            else value_json(x),
            b',"last_error":',
            b"null" if (x := step["last_error"]) is None else value_json(x),
            b',"step_details":',
            value_json(step["step_details"]) if details is None else details,
            b',"usage":',
            b"null" if (x := step["usage"]) is None else usage_json(x),
            b"}",
        )
    )


MessageFrames = tuple[bytes, bytes]
"""A message's fixed fields encoded: up to ``status``, and ``role`` with the field names
around ``content``."""


def message_frames(message: Mapping[str, Any]) -> MessageFrames:
    """Encode the fields of a message that keep their value for its whole life (its
    attachments included: only its metadata, status, content and end are ever changed)."""
    head = (
        b'{"id":%b,"object":%b,"created_at":%b,"assistant_id":%b,"thread_id":%b,"run_id":%b,'
        b'"status":'
        % (
            _escape(x).encode() if type(x := message["id"]) is str else value_json(x),
            (_word(x) or _escape(x).encode())
            if type(x := message["object"]) is str
            else value_json(x),
            b"%d" % x if type(x := message["created_at"]) is int else value_json(x),
            _escape(x).encode() if type(x := message["assistant_id"]) is str else value_json(x),
            _escape(x).encode() if type(x := message["thread_id"]) is str else value_json(x),
            _escape(x).encode() if type(x := message["run_id"]) is str else value_json(x),
        )
    )
    role = b',"role":%b,"content":' % (
        (_word(x) or _escape(x).encode()) if type(x := message["role"]) is str else value_json(x)
    )
    return head, role


def message_json(message: Mapping[str, Any], frames: MessageFrames | None = None) -> bytes:
    """The JSON of a message in any state; its fixed fields from ``frames``
    (:func:`message_frames` of the same message), else encoded now."""
    if len(message) != _MESSAGE_SIZE:
        return encode_json(message).encode()
    head, role = message_frames(message) if frames is None else frames
    return b"".join(
        (
            head,
            _word(x := message["status"]) or _escape(x).encode(),
            b',"incomplete_details":',
            b"null" if (x := message["incomplete_details"]) is None else value_json(x),
            b',"incomplete_at":',
            b"null"
            if (x := message["incomplete_at"]) is None
            else b"%d" % x
            if type(x) is int
            else value_json(x),
            b',"completed_at":',
            b"null"
            if (x := message["completed_at"]) is None
            else b"%d" % x
            if type(x) is int
            else value_json(x),
            role,
            _content_json(message["content"]),
            b',"attachments":',
            b"[]" if type(x := message["attachments"]) is list and not x else value_json(x),
            b',"metadata":',
            b"{}" if type(x := message["metadata"]) is dict and not x else value_json(x),
            b"}",
        )
    )


def _content_json(content: Any) -> bytes:
    """Content parts; none, or one text part without annotations (a reply), from a frame."""
    if type(content) is list:
        if not content:
            return b"[]"
        if len(content) == 1:
            part = content[0]
            if type(part) is dict and len(part) == 2 and part.get("type") == "text":
                text = part["text"]
                if (
                    type(text) is dict
                    and list(text) == ["value", "annotations"]
                    and text["annotations"] == []
                    and list(part) == ["type", "text"]
                ):
                    return b'[{"type":"text","text":{"value":%b,"annotations":[]}}]' % (
                        value_json(text["value"])
                    )
    return value_json(content)


def thread_json(thread: Mapping[str, Any]) -> bytes:
    """The JSON of a thread."""
    if len(thread) != _THREAD_SIZE:
        return encode_json(thread).encode()
    v = value_json
    return b'{"id":%b,"object":%b,"created_at":%b,"metadata":%b,"tool_resources":%b}' % (
        _escape(x).encode() if type(x := thread["id"]) is str else value_json(x),
        (_word(x) or _escape(x).encode()) if type(x := thread["object"]) is str else value_json(x),
        b"%d" % x if type(x := thread["created_at"]) is int else value_json(x),
        v(thread["metadata"]),
        v(thread["tool_resources"]),
    )


# -- the Responses API's response object ------------------------------------------------------

_RESPONSE_SIZE = 31
_RESPONSE_USAGE_FIELDS = [
    "input_tokens",
    "input_tokens_details",
    "output_tokens",
    "output_tokens_details",
    "total_tokens",
]
_RESPONSE_USAGE_DETAILS = ({"cached_tokens": 0, "cache_write_tokens": 0}, {"reasoning_tokens": 0})
_NO_REASONING = {"effort": None, "summary": None}
_TEXT_FORMAT = {"format": {"type": "text"}}

ResponseFrames = tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes]
"""A response's fixed fields encoded, around the fields that change: ``status``,
``completed_at``, ``error``, ``incomplete_details``, ``output`` and ``usage``."""


def _fixed_dict(value: Any, default: Mapping[str, Any], encoded: bytes) -> bytes:
    """A field whose usual value is ``default`` (then ``encoded``, in the same key order)."""
    if type(value) is dict and value == default and list(value) == list(default):
        return encoded
    return value_json(value)


def response_frames(response: Mapping[str, Any]) -> ResponseFrames:
    """Encode the fields of a response that keep their value for its whole life."""
    v = value_json
    e = _escape
    r = response
    # Strings, the creation time, null and booleans inline, as in run_frames.
    return (
        b'{"id":%b,"object":%b,"created_at":%b,"status":'
        % (
            e(x).encode() if type(x := r["id"]) is str else v(x),
            e(x).encode() if type(x := r["object"]) is str else v(x),
            b"%d" % x if type(x := r["created_at"]) is int else v(x),
        ),
        b',"background":%b,"completed_at":'
        % (b"false" if (x := r["background"]) is False else b"true" if x is True else v(x)),
        b',"conversation":%b,"error":' % (b"null" if (x := r["conversation"]) is None else v(x)),
        b',"incomplete_details":',
        b',"instructions":%b,"max_output_tokens":%b,"max_tool_calls":%b,"model":%b,"output":'
        % (
            b"null" if (x := r["instructions"]) is None else v(x),
            b"null" if (x := r["max_output_tokens"]) is None else v(x),
            b"null" if (x := r["max_tool_calls"]) is None else v(x),
            e(x).encode() if type(x := r["model"]) is str else v(x),
        ),
        b',"parallel_tool_calls":%b,"previous_response_id":%b,"prompt_cache_key":%b,'
        b'"reasoning":%b,"safety_identifier":%b,"service_tier":%b,"store":%b,"temperature":%b,'
        b'"text":%b,"tool_choice":%b,"tools":%b,"top_logprobs":%b,"top_p":%b,"truncation":%b,'
        b'"usage":'
        % (
            b"true" if (x := r["parallel_tool_calls"]) is True else v(x),
            b"null" if (x := r["previous_response_id"]) is None else v(x),
            b"null" if (x := r["prompt_cache_key"]) is None else v(x),
            _fixed_dict(r["reasoning"], _NO_REASONING, b'{"effort":null,"summary":null}'),
            b"null" if (x := r["safety_identifier"]) is None else v(x),
            e(x).encode() if type(x := r["service_tier"]) is str else v(x),
            b"true" if (x := r["store"]) is True else b"false" if x is False else v(x),
            _float_repr(x).encode()
            if type(x := r["temperature"]) is float and _finite(x)
            else v(x),
            _fixed_dict(r["text"], _TEXT_FORMAT, b'{"format":{"type":"text"}}'),
            e(x).encode() if type(x := r["tool_choice"]) is str else v(x),
            b"[]" if type(x := r["tools"]) is list and not x else v(x),
            b"%d" % x if type(x := r["top_logprobs"]) is int else v(x),
            _float_repr(x).encode() if type(x := r["top_p"]) is float and _finite(x) else v(x),
            e(x).encode() if type(x := r["truncation"]) is str else v(x),
        ),
        b',"user":%b,"metadata":%b}'
        % (
            b"null" if (x := r["user"]) is None else v(x),
            b"{}" if type(x := r["metadata"]) is dict and not x else v(x),
        ),
    )


def response_usage_json(usage: Any) -> bytes:
    """``usage`` of a response (as :func:`~runtime.emulator.responses_items.usage_obj` makes
    it)."""
    if (
        type(usage) is not dict
        or list(usage) != _RESPONSE_USAGE_FIELDS
        or (usage["input_tokens_details"], usage["output_tokens_details"])
        != _RESPONSE_USAGE_DETAILS
    ):
        return value_json(usage)
    return (
        b'{"input_tokens":%b,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},'
        b'"output_tokens":%b,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":%b}'
        % (
            value_json(usage["input_tokens"]),
            value_json(usage["output_tokens"]),
            value_json(usage["total_tokens"]),
        )
    )


def response_json(
    response: Mapping[str, Any], frames: ResponseFrames, output: bytes | None = None
) -> bytes:
    """The JSON of a response: its fixed fields from ``frames`` (:func:`response_frames` of the
    same response), the fields that change formatted now; ``output`` is its ``output`` already
    encoded (None: encoded here). A response whose field count is not the wire object's is
    encoded whole."""
    if len(response) != _RESPONSE_SIZE:
        return encode_json(response).encode()
    v = value_json
    head, background, conversation, incomplete, middle, late, tail = frames
    return b"".join(
        (
            head,
            _escape(response["status"]).encode(),
            background,
            b"null" if (x := response["completed_at"]) is None else v(x),
            conversation,
            b"null" if (x := response["error"]) is None else v(x),
            incomplete,
            b"null" if (x := response["incomplete_details"]) is None else v(x),
            middle,
            v(response["output"]) if output is None else output,
            late,
            b"null" if (x := response["usage"]) is None else response_usage_json(x),
            tail,
        )
    )
