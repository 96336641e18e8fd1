"""Typed Responses stream events and tolerant models."""

from __future__ import annotations

import json

from runtime.protocol.events import DoneEvent, ErrorEvent, MalformedEvent, UnknownEvent
from runtime.protocol.sse import SSERecord
from runtime.responses.events import (
    ContentPartEvent,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    OutputItemEvent,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    ResponseLifecycleEvent,
    parse_response_event,
)
from runtime.responses.models import (
    FunctionCallItem,
    OutputMessage,
    OutputText,
    Response,
    ResponseUsage,
    UnknownItem,
)


def record(name: str, data: object, *, with_event_line: bool = True) -> SSERecord:
    return SSERecord(event=name if with_event_line else "message", data=json.dumps(data))


def test_lifecycle_event_carries_a_validated_response() -> None:
    """response.completed becomes a terminal lifecycle event with a typed Response."""
    data = {"type": "response.completed", "response": {"id": "resp_1", "status": "completed"}}
    event = parse_response_event(record("response.completed", data))
    assert isinstance(event, ResponseLifecycleEvent)
    assert event.is_terminal
    assert event.response.id == "resp_1" and event.response.status == "completed"


def test_event_name_falls_back_to_the_data_type() -> None:
    """Without an ``event:`` line the data's ``type`` names the event."""
    data = {"type": "response.output_text.delta", "output_index": 2, "delta": "Hi"}
    event = parse_response_event(record("ignored", data, with_event_line=False))
    assert isinstance(event, OutputTextDeltaEvent)
    assert (event.output_index, event.delta, event.content_index) == (2, "Hi", 0)


def test_item_part_and_argument_events_are_typed() -> None:
    """Each item-level event name maps to its class and exposes its fields."""
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f"}
    added = parse_response_event(
        record("response.output_item.added", {"output_index": 0, "item": item})
    )
    assert isinstance(added, OutputItemEvent)
    assert isinstance(added.item, FunctionCallItem) and added.item_id == "fc_1"
    part = parse_response_event(
        record(
            "response.content_part.done",
            {"item_id": "m", "output_index": 1, "part": {"type": "output_text", "text": "x"}},
        )
    )
    assert isinstance(part, ContentPartEvent) and isinstance(part.part, OutputText)
    delta = parse_response_event(
        record("response.function_call_arguments.delta", {"item_id": "fc_1", "delta": '{"a'})
    )
    assert isinstance(delta, FunctionCallArgumentsDeltaEvent) and delta.delta == '{"a'
    done = parse_response_event(
        record("response.function_call_arguments.done", {"arguments": "{}"})
    )
    assert isinstance(done, FunctionCallArgumentsDoneEvent) and done.arguments == "{}"
    text = parse_response_event(record("response.output_text.done", {"text": "all"}))
    assert isinstance(text, OutputTextDoneEvent) and text.text == "all"


def test_unknown_error_done_and_malformed_events_never_raise() -> None:
    """Unknown names pass through raw; error, [DONE] and bad data are typed, not raised."""
    unknown = parse_response_event(record("response.audio.delta", {"delta": "x"}))
    assert isinstance(unknown, UnknownEvent) and unknown.data == {"delta": "x"}
    error = parse_response_event(
        record("error", {"type": "error", "code": "server_error", "message": "boom"})
    )
    assert isinstance(error, ErrorEvent)
    assert error.error.code == "server_error" and error.error.message == "boom"
    assert isinstance(parse_response_event(SSERecord("message", "[DONE]")), DoneEvent)
    no_data = parse_response_event(SSERecord("response.completed", ""))
    assert isinstance(no_data, MalformedEvent) and no_data.reason == "no data"
    bad = parse_response_event(record("response.completed", {"response": {"status": 3}}))
    assert isinstance(bad, MalformedEvent)


def test_response_model_keeps_unknown_fields_and_items() -> None:
    """A response with new fields and new item types validates; helpers see through it."""
    response = Response.model_validate(
        {
            "id": "resp_1",
            "status": "completed",
            "brand_new_field": {"x": 1},
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "id": "m", "content": [{"type": "output_text", "text": "A"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            ],
        }
    )
    assert isinstance(response.output[0], UnknownItem)
    assert isinstance(response.output[1], OutputMessage)
    assert response.output_text == "A"
    assert [c.call_id for c in response.function_calls] == ["c"]
    assert response.model_extra == {"brand_new_field": {"x": 1}}
    assert response.is_terminal


def test_usage_adds_up_across_responses() -> None:
    """Usage of several responses sums field by field (and keeps the Assistants aliases)."""
    total = ResponseUsage(input_tokens=3, output_tokens=4, total_tokens=7) + ResponseUsage(
        input_tokens=1, output_tokens=2, total_tokens=3
    )
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens) == (4, 6, 10)
