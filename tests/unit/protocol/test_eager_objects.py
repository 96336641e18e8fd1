"""Status events' objects, validated as they are parsed, are what full validation gives."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

from runtime.assistants.events import (
    MessageEvent,
    RunEvent,
    RunStepEvent,
    ThreadCreatedEvent,
    parse_event,
)
from runtime.assistants.events import decoded_event as decoded_assistants_event
from runtime.assistants.models import Message, Run, RunStep
from runtime.protocol.events import MalformedEvent, StreamEvent
from runtime.protocol.objects import ResponseMeta
from runtime.protocol.sse import SSERecord
from runtime.responses.events import (
    ContentPartEvent,
    OutputItemEvent,
    ResponseLifecycleEvent,
    decoded_event,
    parse_response_event,
)
from runtime.responses.models import OutputContentByType, OutputItemByType, Response


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _same(parsed: BaseModel, expected: BaseModel) -> None:
    assert type(parsed) is type(expected)
    assert parsed == expected
    assert parsed.model_fields_set == expected.model_fields_set
    assert parsed.model_extra == expected.model_extra


def test_recorded_assistants_status_objects_match_full_validation(reference_dir: Path) -> None:
    """Every run, step and message of the recorded Assistants stream, read from its parsed
    event, equals ``model_validate`` of the event's data (values, fields set, extras), and
    the event keeps that one object."""
    models = {
        RunEvent: ("run", Run),
        RunStepEvent: ("step", RunStep),
        MessageEvent: ("message", Message),
    }
    checked = 0
    for line in _lines(reference_dir / "assistants-stream-recorded.jsonl"):
        event = parse_event(SSERecord(line["event"], json.dumps(line["data"])))
        known = models.get(type(event))  # type: ignore[call-overload]
        if known is None:
            continue
        attribute, model = known
        parsed = getattr(event, attribute)
        _same(parsed, model.model_validate(line["data"]))
        assert getattr(event, attribute) is parsed
        checked += 1
    assert checked >= 10


def test_recorded_responses_status_objects_match_full_validation(reference_dir: Path) -> None:
    """Every response, item and content part of the recorded Responses stream, read from its
    parsed event, equals full validation of the same data."""
    item, part = TypeAdapter(OutputItemByType), TypeAdapter(OutputContentByType)
    kinds: set[type] = set()
    for line in _lines(reference_dir / "responses-stream-incomplete.jsonl"):
        event = parse_response_event(SSERecord(line["type"], json.dumps(line)))
        if isinstance(event, ResponseLifecycleEvent):
            _same(event.response, Response.model_validate(line["response"]))
        elif isinstance(event, OutputItemEvent):
            _same(event.item, item.validate_python(line["item"]))
        elif isinstance(event, ContentPartEvent):
            _same(event.part, part.validate_python(line["part"]))
        else:
            continue
        kinds.add(type(event))
    assert kinds == {ResponseLifecycleEvent, OutputItemEvent, ContentPartEvent}


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("thread.run.completed", {"status": "completed"}),
        ("thread.run.step.completed", {"id": 5, "step_details": 3}),
    ],
)
def test_invalid_status_object_is_still_malformed(name: str, data: dict[str, Any]) -> None:
    """Validating into the event's attribute keeps the outcome of a bad object: a
    MalformedEvent, not an event whose attribute raises later."""
    event = parse_event(SSERecord(name, json.dumps(data)))
    assert type(event).__name__ == "MalformedEvent"


def test_streamed_objects_carry_no_private_state() -> None:
    """An object validated from a stream has no private dict (no per-object private
    attribute set-up) and no answer metadata."""
    event = parse_response_event(
        SSERecord("response.created", json.dumps({"response": {"id": "resp_1"}}))
    )
    assert isinstance(event, ResponseLifecycleEvent)
    assert event.response.__pydantic_private__ is None
    assert event.response.response_meta is None


def test_attached_meta_survives_copy_pickle_and_counts_for_equality() -> None:
    """Answer metadata attached to an object is kept by model_copy, deepcopy and pickling,
    and tells it apart from the same object without it, as the private attribute did."""
    plain = Response.model_validate({"id": "resp_1", "status": "completed"})
    answered = Response.model_validate({"id": "resp_1", "status": "completed"})
    meta = ResponseMeta(request_id="req_1", poll_after_ms=250, server_time=1.5)
    answered.attach_meta(meta)
    assert answered.response_meta == meta
    for again in (
        answered.model_copy(),
        answered.model_copy(update={"status": "failed"}),
        copy.deepcopy(answered),
        pickle.loads(pickle.dumps(answered)),
    ):
        assert again.response_meta == meta
    assert answered != plain
    assert answered.model_dump() == plain.model_dump()


_CALL_ITEM = {
    "id": "fc_1",
    "type": "function_call",
    "status": "completed",
    "arguments": '{"n":1}',
    "call_id": "call_1",
    "name": "ping",
}
_SHAPES: list[tuple[str, dict[str, Any]]] = [
    ("response.output_item.done", {"output_index": 0, "item": _CALL_ITEM}),
    ("response.output_item.added", {"output_index": 2, "item": {"type": "reasoning", "id": "r"}}),
    (
        "response.completed",
        {"response": {"id": "resp_1", "status": "completed", "output": [_CALL_ITEM], "x": [1]}},
    ),
    ("response.content_part.added", {"item_id": "m", "part": {"type": "refusal", "refusal": "no"}}),
]
_HOSTILE = [
    '{"type":"x","sequence_number":1,"response":{"id":"r1"},"response":{"id":"r2"}}',
    '{"type":"x","response":{"id":"r1","temperature":NaN,"metadata":{"k":Infinity}}}',
    '{"type":"x","response":{"id":"r1","metadata":{"k":"\\ud800"}}}',
    '{"type":"x","response":{"id":"r1"}} }',
    '{"type":"x","response":{"id":5}}',
    '{"type":"x","response":null}',
    '{"type":"x","item":{"type":"function_call","call_id":7}}',
    '{"type":"x","output_index":"0","item":{"type":"message","content":[{"type":"output_text"}]}}',
    '{"type":"x","part":[]}',
    "[1, 2]",
    "",
]
_HOSTILE_NAMES = ("response.created", "response.output_item.done", "response.content_part.done")


def _named_raw_events(reference_dir: Path) -> list[tuple[str, str]]:
    lines = (reference_dir / "responses-stream-incomplete.jsonl").read_text().splitlines()
    recorded = [(json.loads(line)["type"], line) for line in lines if line.strip()]
    shaped = [(name, json.dumps({"type": name, "sequence_number": 3, **d})) for name, d in _SHAPES]
    hostile = [(name, raw) for name in _HOSTILE_NAMES for raw in _HOSTILE]
    return recorded + shaped + hostile


def _same_event(fast: StreamEvent, slow: StreamEvent, attributes: tuple[str, ...]) -> None:
    """The one-pass event ``fast`` is the long way's ``slow``: class, name, data, and each
    typed object among ``attributes`` (values, fields set, extras)."""
    assert type(fast) is type(slow), (slow.event, slow.data)
    assert fast.event == slow.event
    assert json.dumps(fast.data) == json.dumps(slow.data), (slow.event, slow.data)
    for attribute in attributes:
        if hasattr(type(slow), attribute) and not isinstance(slow, MalformedEvent):
            got, expected = getattr(fast, attribute), getattr(slow, attribute)
            assert type(got) is type(expected)  # repr: NaN, sent on purpose, is not == NaN
            assert repr(got) == repr(expected), (slow.event, slow.data)
            assert got.model_fields_set == expected.model_fields_set
            assert repr(got.model_extra) == repr(expected.model_extra)


def test_one_pass_validation_gives_what_the_long_way_gives(reference_dir: Path) -> None:
    """An event whose SSE line names it is validated in one pass over its text; the event is
    the one the long way (decode, then validate the dict) builds from the same text: same
    class, same object, same data and fields, and the same MalformedEvent for bad input."""
    one_pass = 0
    for name, raw in _named_raw_events(reference_dir):
        fast = parse_response_event(SSERecord(name, raw))
        slow = decoded_event(name, raw)
        _same_event(fast, slow, ("response", "item", "part"))
        for field in ("sequence_number", "output_index", "item_id", "content_index", "reason"):
            if hasattr(slow, field):
                assert getattr(fast, field) == getattr(slow, field), (field, name, raw)
        one_pass += "_raw" in vars(fast)
    assert one_pass >= 10  # the recorded and shaped status events took the one pass


_ASSISTANTS_HOSTILE = [
    '{"id":"run_1","status":"queued","status":"completed"}',
    '{"id":"run_1","temperature":NaN,"metadata":{"k":Infinity}}',
    '{"id":"run_1","metadata":{"k":"\\ud800"}}',
    '{"id":"run_1","status":"queued"}}',
    ' {"id":"run_1","status":"queued"} ',
    '{"id":5}',
    '{"id":"s","step_details":3}',
    '{"id":"m","content":[{"type":"text","text":7}]}',
    "null",
    "[1, 2]",
    "",
]
_ASSISTANTS_HOSTILE_NAMES = (
    "thread.run.completed",
    "thread.run.step.created",
    "thread.message.completed",
    "thread.created",
)


def test_assistants_one_pass_validation_gives_what_the_long_way_gives(
    reference_dir: Path,
) -> None:
    """An Assistants status event is validated in one pass over its text (its whole data is
    its object); the event equals the one the long way builds: class, object, data, and the
    same MalformedEvent and reason for bad input."""
    lines = _lines(reference_dir / "assistants-stream-recorded.jsonl")
    recorded = [(line["event"], json.dumps(line["data"])) for line in lines]
    hostile = [(n, raw) for n in _ASSISTANTS_HOSTILE_NAMES for raw in _ASSISTANTS_HOSTILE]
    one_pass = 0
    for name, raw in recorded + hostile:
        fast = parse_event(SSERecord(name, raw))
        slow = decoded_assistants_event(name, raw)
        _same_event(fast, slow, ("run", "step", "message", "thread"))
        assert getattr(fast, "reason", None) == getattr(slow, "reason", None), (name, raw)
        one_pass += "_raw" in vars(fast)
    assert one_pass >= 10  # the recorded status events took the one pass
    thread = parse_event(SSERecord("thread.created", '{"id":"thread_1","object":"thread"}'))
    assert isinstance(thread, ThreadCreatedEvent) and thread.thread.id == "thread_1"
    assert "_raw" in vars(thread) and thread.data == {"id": "thread_1", "object": "thread"}
