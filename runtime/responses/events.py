"""Typed Responses API stream events, decoded from the same SSE records as Assistants events.

:func:`parse_response_event` turns one :class:`~runtime.protocol.sse.SSERecord` into an event.
The event name is the SSE ``event:`` field, or the data's ``type`` when the server sent no
``event:`` line. Lifecycle events (``response.created`` ... ``response.failed``) validate their
:class:`~runtime.responses.models.Response` at once, item and part events their item or part
(in one pass over the event's text when its SSE line names it); the hot delta events read
their few fields straight from the decoded dict. Unknown names become
:class:`~runtime.protocol.events.UnknownEvent`, an ``error`` event an
:class:`~runtime.protocol.events.ErrorEvent`, never an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter

from runtime.protocol.events import (
    DoneEvent,
    ErrorEvent,
    StreamEvent,
    UnknownEvent,
    scan_json,
    typed_event,
    validated_in_one_pass,
    validated_into,
)
from runtime.protocol.objects import APIModel
from runtime.protocol.sse import SSERecord
from runtime.responses.models import (
    OutputContent,
    OutputContentByType,
    OutputItem,
    OutputItemByType,
    Response,
)

LIFECYCLE_EVENTS = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "response.cancelled",
    }
)
TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "response.cancelled"}
)

_ITEM = TypeAdapter[OutputItem](OutputItemByType)
_PART = TypeAdapter[OutputContent](OutputContentByType)
# The core validators, without the adapters' Python frame and keyword arguments (status
# events validate their item or part as they are parsed: about fifty a run).
_ITEM_VALIDATE: Callable[[Any], OutputItem] = _ITEM.validator.validate_python
_PART_VALIDATE: Callable[[Any], OutputContent] = _PART.validator.validate_python


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) else 0


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


class ResponseStreamEvent(StreamEvent):
    """Base of the Responses events; ``data`` is the decoded JSON object."""

    data: dict[str, Any]

    @property
    def sequence_number(self) -> int | None:
        """The server's event counter, when it sent one."""
        value = self._top.get("sequence_number")
        return value if isinstance(value, int) else None


class ResponseLifecycleEvent(ResponseStreamEvent):
    """``response.created / queued / in_progress / completed / incomplete / failed``."""

    @cached_property
    def response(self) -> Response:
        """The response as the event carried it."""
        return Response.model_validate(self.data.get("response"))

    @property
    def is_terminal(self) -> bool:
        """True for completed, incomplete, failed and cancelled."""
        return self.event in TERMINAL_EVENTS


class _ItemAddressed(ResponseStreamEvent):
    @property
    def output_index(self) -> int:
        """Position of the item in ``response.output``."""
        return _int(self._top, "output_index")

    @property
    def item_id(self) -> str:
        """The id of the item the event refers to (may disagree with the item's; see stream)."""
        return _str(self._top, "item_id")


class OutputItemEvent(_ItemAddressed):
    """``response.output_item.added`` / ``.done``: an output item started or finished."""

    @cached_property
    def item(self) -> OutputItem:
        """The item as the event carried it."""
        return _ITEM.validate_python(self.data.get("item"))

    @property
    def item_id(self) -> str:
        """The id of the item itself."""
        return self.item.id or ""


class ContentPartEvent(_ItemAddressed):
    """``response.content_part.added`` / ``.done``: a content part of a message item."""

    @property
    def content_index(self) -> int:
        """Position of the part in the item's content."""
        return _int(self._top, "content_index")

    @cached_property
    def part(self) -> OutputContent:
        """The part as the event carried it."""
        return _PART.validate_python(self.data.get("part"))


class OutputTextDeltaEvent(_ItemAddressed):
    """``response.output_text.delta``: a piece of text to append."""

    @property
    def content_index(self) -> int:
        """Position of the part in the item's content."""
        return _int(self._top, "content_index")

    @property
    def delta(self) -> str:
        """The text to append."""
        return _str(self.data, "delta")


class OutputTextDoneEvent(_ItemAddressed):
    """``response.output_text.done``: the final text of one content part."""

    @property
    def content_index(self) -> int:
        """Position of the part in the item's content."""
        return _int(self._top, "content_index")

    @property
    def text(self) -> str:
        """The whole text of the part, as the server says it ended."""
        return _str(self.data, "text")


class FunctionCallArgumentsDeltaEvent(_ItemAddressed):
    """``response.function_call_arguments.delta``: a fragment of JSON arguments."""

    @property
    def delta(self) -> str:
        """The fragment to append."""
        return _str(self.data, "delta")


class FunctionCallArgumentsDoneEvent(_ItemAddressed):
    """``response.function_call_arguments.done``: the complete arguments."""

    @property
    def arguments(self) -> str:
        """The whole JSON arguments string."""
        return _str(self.data, "arguments")


_CLASSES: dict[str, type[ResponseStreamEvent]] = {
    **dict.fromkeys(LIFECYCLE_EVENTS, ResponseLifecycleEvent),
    "response.output_item.added": OutputItemEvent,
    "response.output_item.done": OutputItemEvent,
    "response.content_part.added": ContentPartEvent,
    "response.content_part.done": ContentPartEvent,
    "response.output_text.delta": OutputTextDeltaEvent,
    "response.output_text.done": OutputTextDoneEvent,
    "response.function_call_arguments.delta": FunctionCallArgumentsDeltaEvent,
    "response.function_call_arguments.done": FunctionCallArgumentsDoneEvent,
}


# Status and item events are rare: each is validated as it is parsed (see typed_event),
# straight into the event's cached property.
_EAGER: dict[type[ResponseStreamEvent], Callable[[Any], object]] = {
    ResponseLifecycleEvent: validated_into(
        "response", Response.__pydantic_validator__.validate_python, "response"
    ),
    OutputItemEvent: validated_into("item", _ITEM_VALIDATE, "item"),
    ContentPartEvent: validated_into("part", _PART_VALIDATE, "part"),
}
# The delta events: nothing to validate, their accessors read plain fields.
_DELTAS = {
    "response.output_text.delta": OutputTextDeltaEvent,
    "response.function_call_arguments.delta": FunctionCallArgumentsDeltaEvent,
}


class _ResponseEnvelope(APIModel):
    response: Response


class _ItemEnvelope(APIModel):
    item: OutputItemByType


class _PartEnvelope(APIModel):
    part: OutputContentByType


# Status and item events named by their SSE line are validated in one pass over their text
# (see validated_in_one_pass): class, the envelope's validate_json, the object's field.
_ONE_PASS: dict[str, tuple[type[ResponseStreamEvent], Callable[[str], Any], str]] = {
    **dict.fromkeys(
        LIFECYCLE_EVENTS,
        (
            ResponseLifecycleEvent,
            _ResponseEnvelope.__pydantic_validator__.validate_json,
            "response",
        ),
    ),
    **dict.fromkeys(
        ("response.output_item.added", "response.output_item.done"),
        (OutputItemEvent, _ItemEnvelope.__pydantic_validator__.validate_json, "item"),
    ),
    **dict.fromkeys(
        ("response.content_part.added", "response.content_part.done"),
        (ContentPartEvent, _PartEnvelope.__pydantic_validator__.validate_json, "part"),
    ),
}


def _decode_slow(raw: str) -> Any:
    """The JSON value of ``raw`` (surrounding whitespace allowed), else ``raw`` itself."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: hostile nesting depth
        return raw


def parse_response_event(record: SSERecord) -> StreamEvent:
    """Turn one SSE record of a Responses stream into a typed event; never raises."""
    raw = record.data
    name = record.event
    if name == "done" or raw == "[DONE]":
        return DoneEvent("done", raw)
    one_pass = _ONE_PASS.get(name)
    if one_pass is not None:
        kind, validate, key = one_pass
        event = validated_in_one_pass(kind, name, raw, key, validate)
        if event is not None:
            return event
    return decoded_event(name, raw)


def decoded_event(name: str, raw: str) -> StreamEvent:
    """The event of ``raw`` the long way: decode the text, then validate the dict (any event;
    what an event validated in one pass must equal). Never raises."""
    try:
        # The bare scanner skips json.loads' type checks and whitespace scan (hot path).
        data, end = scan_json(raw, 0)
        if end != len(raw):
            data = _decode_slow(raw)
    except (StopIteration, ValueError, RecursionError):
        data = _decode_slow(raw)
    if type(data) is dict:
        if name == "message" and isinstance(data.get("type"), str):
            name = data["type"]
        delta = _DELTAS.get(name)
        if delta is not None:
            return delta(name, data)  # the hot path: nothing to validate
    if name == "error":
        return ErrorEvent(name, data)
    cls = _CLASSES.get(name)
    if cls is None:
        return UnknownEvent(name, data)
    return typed_event(cls, name, data, raw, _EAGER)
