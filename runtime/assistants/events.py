"""Typed Assistants stream events, keyed by event name.

:func:`parse_event` turns one :class:`~runtime.protocol.sse.SSERecord` into an event object.
The hot events (``thread.message.delta`` and ``thread.run.step.delta``) keep their decoded
dict and build their pydantic model only when ``.delta`` is read, so a stream of many deltas
costs one ``json.loads`` per event. Unknown event names become :class:`UnknownEvent`, never an
exception; an ``error`` event becomes :class:`ErrorEvent` whether its data is the flat error
object or wrapped in ``{"error": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from runtime.assistants.models import Message, MessageDelta, Run, RunStep, RunStepDelta, Thread
from runtime.protocol.events import (
    DoneEvent,
    ErrorEvent,
    MalformedEvent,
    StreamEvent,
    UnknownEvent,
    invalid_delta,
    lenient_json,
    scan_json,
    typed_event,
    validated_into,
    validated_whole_in_one_pass,
)
from runtime.protocol.sse import SSERecord

__all__ = [
    "DoneEvent",
    "ErrorEvent",
    "MalformedEvent",
    "MessageDeltaEvent",
    "MessageEvent",
    "RunEvent",
    "RunStepDeltaEvent",
    "RunStepEvent",
    "StreamEvent",
    "ThreadCreatedEvent",
    "UnknownEvent",
    "decoded_event",
    "parse_event",
]

RUN_EVENTS = frozenset(
    {
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.requires_action",
        "thread.run.completed",
        "thread.run.incomplete",
        "thread.run.failed",
        "thread.run.cancelling",
        "thread.run.cancelled",
        "thread.run.expired",
    }
)
STEP_EVENTS = frozenset(
    {
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.run.step.completed",
        "thread.run.step.failed",
        "thread.run.step.cancelled",
        "thread.run.step.expired",
    }
)
MESSAGE_EVENTS = frozenset(
    {
        "thread.message.created",
        "thread.message.in_progress",
        "thread.message.completed",
        "thread.message.incomplete",
    }
)


class ThreadCreatedEvent(StreamEvent):
    """``thread.created``: the thread of a create-thread-and-run call."""

    @cached_property
    def thread(self) -> Thread:
        """The created thread."""
        return Thread.model_validate(self.data)


class RunEvent(StreamEvent):
    """``thread.run.*``: the run changed status."""

    @cached_property
    def run(self) -> Run:
        """The run as the event carried it."""
        return Run.model_validate(self.data)


class RunStepEvent(StreamEvent):
    """``thread.run.step.*`` (not delta): a step changed status."""

    @cached_property
    def step(self) -> RunStep:
        """The step as the event carried it."""
        return RunStep.model_validate(self.data)


class RunStepDeltaEvent(StreamEvent):
    """``thread.run.step.delta``: fragments of tool calls."""

    @cached_property
    def delta(self) -> RunStepDelta:
        """The typed delta (built on first access).

        Raises:
            StreamError: the data does not have the shape of a step delta.
        """
        try:
            return RunStepDelta.model_validate(self.data)
        except ValidationError as exc:
            raise invalid_delta(self.event, exc) from exc


class MessageEvent(StreamEvent):
    """``thread.message.*`` (not delta): a message changed status."""

    @cached_property
    def message(self) -> Message:
        """The message as the event carried it."""
        return Message.model_validate(self.data)


class MessageDeltaEvent(StreamEvent):
    """``thread.message.delta``: fragments of message content."""

    @cached_property
    def delta(self) -> MessageDelta:
        """The typed delta (built on first access).

        Raises:
            StreamError: the data does not have the shape of a message delta.
        """
        try:
            return MessageDelta.model_validate(self.data)
        except ValidationError as exc:
            raise invalid_delta(self.event, exc) from exc


def _event_class(name: str) -> type[StreamEvent]:
    if name == "thread.message.delta":
        return MessageDeltaEvent
    if name == "thread.run.step.delta":
        return RunStepDeltaEvent
    if name in RUN_EVENTS:
        return RunEvent
    if name in STEP_EVENTS:
        return RunStepEvent
    if name in MESSAGE_EVENTS:
        return MessageEvent
    if name == "thread.created":
        return ThreadCreatedEvent
    return UnknownEvent


_CLASS_CACHE: dict[str, type[StreamEvent]] = {}

# Status events validate their object as they are parsed (see typed_event), straight into
# the event's cached property; pydantic's validator is called without model_validate's frame.
_EAGER: dict[type[StreamEvent], Callable[[Any], object]] = {
    RunEvent: validated_into("run", Run.__pydantic_validator__.validate_python),
    RunStepEvent: validated_into("step", RunStep.__pydantic_validator__.validate_python),
    MessageEvent: validated_into("message", Message.__pydantic_validator__.validate_python),
    ThreadCreatedEvent: validated_into("thread", Thread.__pydantic_validator__.validate_python),
}


# Status events are validated in one pass over their text (see validated_whole_in_one_pass):
# class, the object model's validate_json, the attribute keeping the object.
_ONE_PASS: dict[str, tuple[type[StreamEvent], Callable[[str], Any], str]] = {
    **dict.fromkeys(RUN_EVENTS, (RunEvent, Run.__pydantic_validator__.validate_json, "run")),
    **dict.fromkeys(
        STEP_EVENTS, (RunStepEvent, RunStep.__pydantic_validator__.validate_json, "step")
    ),
    **dict.fromkeys(
        MESSAGE_EVENTS, (MessageEvent, Message.__pydantic_validator__.validate_json, "message")
    ),
    "thread.created": (ThreadCreatedEvent, Thread.__pydantic_validator__.validate_json, "thread"),
}


def parse_event(record: SSERecord) -> StreamEvent:
    """Turn one SSE record into a typed event; never raises on bad data."""
    name = record.event
    raw = record.data
    if name == "done" or raw == "[DONE]":
        return DoneEvent("done", raw)
    one_pass = _ONE_PASS.get(name)
    if one_pass is not None:
        cls, validate, attribute = one_pass
        event = validated_whole_in_one_pass(cls, name, raw, attribute, validate)
        if event is not None:
            return event
    return decoded_event(name, raw)


def decoded_event(name: str, raw: str) -> StreamEvent:
    """The event of ``raw`` the long way: decode the text, then validate the dict (any event;
    what an event validated in one pass must equal). Never raises."""
    cls = _CLASS_CACHE.get(name)
    if cls is None:
        cls = _event_class(name)
        if cls is not UnknownEvent:  # only known names: a hostile stream cannot grow the cache
            _CLASS_CACHE[name] = cls
    try:
        # The bare scanner skips json.loads' type checks and whitespace scan (hot path); the
        # fallback handles surrounding whitespace, non-JSON and trailing garbage.
        data, end = scan_json(raw, 0)
        if end != len(raw):
            data = lenient_json(name, raw)
    except (StopIteration, ValueError, RecursionError):  # RecursionError: hostile nesting
        data = lenient_json(name, raw)
    if (cls is RunStepDeltaEvent or cls is MessageDeltaEvent) and type(data) is dict:
        return cls(name, data)  # the hot path: nothing to validate (typed_event's outcome)
    if name == "error":
        return ErrorEvent(name, data)
    if cls is UnknownEvent:
        return UnknownEvent(name, data)
    return typed_event(cls, name, data, raw, _EAGER)
