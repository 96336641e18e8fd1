"""Stream events both protocols share: the base, ``error``, ``done``, unknown and malformed.

Each protocol's events module adds its own typed events and a ``parse`` function; these are
the pieces every stream meets whatever its protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, TypeVar

from pydantic import ValidationError

from runtime.errors import StreamError, StreamEventError
from runtime.logging import ModuleLogger

log = ModuleLogger("runtime.protocol")

StreamEventT = TypeVar("StreamEventT", bound="StreamEvent")


class StreamEvent:
    """Base of every stream event.

    Attributes:
        event: the SSE event name.
        data: the decoded JSON data (a dict for API objects), or the raw text when it was not JSON.
            An event validated in one pass (:func:`validated_in_one_pass`) decodes it on first read.
    """

    def __init__(self, event: str, data: Any) -> None:
        self.event = event
        self.data = data
        # The top-level fields the accumulators and accessors read; an event validated in one
        # pass keeps here every field but its object's, so reading them decodes nothing again.
        self._top: Any = data

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes not set: ``data`` of an event validated in one pass, and
        # ``_top`` of one whose whole data is its object.
        fields = self.__dict__
        raw = fields.get("_raw")
        if raw is not None and (name == "data" or name == "_top"):
            if "data" not in fields:
                fields["data"] = json.loads(raw)
            fields.setdefault("_top", fields["data"])
            return fields[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(event={self.event!r})"


class ErrorEvent(StreamEvent):
    """``error``: the server reports an error inside the stream."""

    @cached_property
    def error(self) -> StreamEventError:
        """The error as our typed exception (not raised)."""
        return error_from_data(self.data)


class DoneEvent(StreamEvent):
    """``done`` / ``[DONE]``: the stream is over."""


class UnknownEvent(StreamEvent):
    """An event name this version does not know; delivered raw."""


class MalformedEvent(StreamEvent):
    """A known event whose data is not a JSON object (e.g. a lost ``data:`` prefix).

    Attributes:
        reason: why the data could not be used.
    """

    def __init__(self, event: str, data: Any, reason: str) -> None:
        super().__init__(event, data)
        self.reason = reason


def typed_event(
    cls: Callable[[str, Any], StreamEvent],
    name: str,
    data: Any,
    raw: str,
    eager: Mapping[Any, Callable[[Any], object]],
) -> StreamEvent:
    """A known event over its decoded data, or a :class:`MalformedEvent` saying what is wrong.

    ``eager`` maps an event class to the check that validates its object now: status events
    are rare, so validating them here means a consumer reading the typed object never meets a
    pydantic ValidationError later (the hot delta events stay lazy). Never raises.
    """
    if not isinstance(data, dict):
        return MalformedEvent(name, data, "no data" if not raw else "data is not a JSON object")
    event = cls(name, data)
    validate = eager.get(cls)
    if validate is not None:
        try:
            validate(event)
        except ValidationError as exc:
            reason = f"invalid {name} object: {exc.error_count()} errors"
            return MalformedEvent(name, data, reason)
    return event


def validated_in_one_pass(
    cls: type[StreamEventT], name: str, raw: str, key: str, validate: Callable[[str], Any]
) -> StreamEventT | None:
    """A status event validated straight from its raw JSON, or None to take the long way.

    ``validate`` is the ``validate_json`` of an envelope model whose one field ``key`` is the
    event's object and whose extras are the other top-level fields: one pass over the text
    parses and validates (about the cost of decoding it alone), where decoding and then
    validating the dict costs half as much again. The event's object goes where its cached
    property keeps it, ``data`` is decoded only if read. Any failure (not JSON, not an object,
    an invalid object) returns None, so the caller's usual path decides the outcome (a
    :class:`MalformedEvent` and its reason) exactly as before.
    """
    try:
        envelope = validate(raw)
    except (ValidationError, ValueError, RecursionError):
        return None
    event = _undecoded(cls, name, raw)
    fields = event.__dict__
    fields["_top"] = envelope.__pydantic_extra__
    fields[key] = envelope.__dict__[key]
    return event


def validated_whole_in_one_pass(
    cls: type[StreamEventT], name: str, raw: str, attribute: str, validate: Callable[[str], Any]
) -> StreamEventT | None:
    """:func:`validated_in_one_pass` for an event whose whole data is its object (``validate``
    is the object model's ``validate_json``); the object goes where the cached property
    ``attribute`` keeps it."""
    try:
        obj = validate(raw)
    except (ValidationError, ValueError, RecursionError):
        return None
    event = _undecoded(cls, name, raw)
    event.__dict__[attribute] = obj
    return event


def _undecoded(cls: type[StreamEventT], name: str, raw: str) -> StreamEventT:
    # An event whose data (and top-level fields) are decoded from ``raw`` on first read.
    event = cls.__new__(cls)
    fields = event.__dict__
    fields["event"] = name
    fields["_raw"] = raw
    return event


def validated_into(
    attribute: str, validate: Callable[[Any], object], key: str | None = None
) -> Callable[[Any], None]:
    """An ``eager`` check of :func:`typed_event`: validates the event's object (its data, or
    ``data[key]``) and stores it where the event's cached property ``attribute`` keeps its
    value, so parsing costs no property lookup per status event (a hundred per run)."""
    if key is None:

        def check(event: Any) -> None:
            event.__dict__[attribute] = validate(event.data)

    else:

        def check(event: Any) -> None:
            event.__dict__[attribute] = validate(event.data.get(key))

    return check


def invalid_delta(name: str, exc: ValidationError) -> StreamError:
    # Deltas are validated lazily (hot path), so a hostile shape surfaces only here: keep it
    # inside our error tree rather than leaking pydantic's ValidationError to handlers.
    return StreamError(f"invalid {name} object: {exc.error_count()} errors")


def error_from_data(data: Any) -> StreamEventError:
    """Build the typed error of an ``error`` event, flat or wrapped in ``{"error": ...}``."""
    body = data.get("error") if isinstance(data, dict) and "error" in data else data
    if not isinstance(body, dict):
        return StreamEventError(str(body or "error event without details"), data=data)
    return StreamEventError(
        str(body.get("message") or "error event without a message"),
        code=_opt_str(body.get("code")),
        error_type=_opt_str(body.get("type")),
        param=_opt_str(body.get("param")),
        data=data,
    )


_DECODER = json.JSONDecoder()
raw_decode = _DECODER.raw_decode
# The C scanner behind raw_decode, without its Python frame: ``scan_json(text, 0)`` returns
# ``(value, end)`` and raises StopIteration when no value starts at 0 (hot path: once per event).
scan_json: Callable[[str, int], tuple[Any, int]] = getattr(_DECODER, "scan_once")  # noqa: B009


def lenient_json(name: str, raw: str) -> Any:
    """A JSON object followed only by stray closing brackets, else ``raw`` unchanged.

    The OpenAI reference's tool-call streaming example ends every run object with one ``}``
    too many; that object (its required_action above all) is still what the server meant.
    """
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        pass
    try:
        obj, end = _DECODER.raw_decode(raw)
    except (ValueError, RecursionError):
        return raw
    rest = raw[end:].strip()
    if not isinstance(obj, dict) or rest.strip("}]") or len(rest) > 8:
        return raw
    log.warning("protocol.trailing_json_garbage", sse_event=name, extra=rest)
    return obj


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
