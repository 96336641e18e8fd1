"""Status events' objects, validated as they are parsed, are what full validation gives."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

from runtime.assistants.events import MessageEvent, RunEvent, RunStepEvent, parse_event
from runtime.assistants.models import Message, Run, RunStep
from runtime.protocol.objects import ResponseMeta
from runtime.protocol.sse import SSERecord
from runtime.responses.events import (
    ContentPartEvent,
    OutputItemEvent,
    ResponseLifecycleEvent,
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
