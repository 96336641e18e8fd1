"""Typed stream events: every referenced event name, error shapes, unknown and malformed data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from runtime.assistants.events import (
    DoneEvent,
    ErrorEvent,
    MalformedEvent,
    MessageDeltaEvent,
    MessageEvent,
    RunEvent,
    RunStepDeltaEvent,
    RunStepEvent,
    ThreadCreatedEvent,
    UnknownEvent,
    parse_event,
)
from runtime.errors import StreamEventError
from runtime.protocol.sse import SSERecord


def referenced_event_names(reference_dir: Path) -> set[str]:
    """Every event name typed in the OpenAI reference or listed in the Azure one."""
    openai = (reference_dir / "openai-create-thread-and-run-reference.txt").read_text()
    names = set(re.findall(r'event: Literal\["([a-z_.]+)"\]', openai))
    azure = (reference_dir / "azure-assistants-runs-reference.txt").read_text()
    table = azure[azure.index("Assistant stream events") :]
    names |= set(re.findall(r"^(thread\.[a-z_.]+|error|done) \|$", table, re.MULTILINE))
    return names


def sample(name: str) -> tuple[type, Any]:
    """The expected class and a minimal valid payload for an event name."""
    if name == "done":
        return DoneEvent, "[DONE]"
    if name == "error":
        return ErrorEvent, {"message": "boom", "type": "server_error", "code": None}
    if name == "thread.created":
        return ThreadCreatedEvent, {"id": "thread_1", "object": "thread"}
    if name == "thread.message.delta":
        return MessageDeltaEvent, {"id": "msg_1", "delta": {"content": []}}
    if name == "thread.run.step.delta":
        return RunStepDeltaEvent, {"id": "step_1", "delta": {"step_details": {}}}
    if name.startswith("thread.run.step."):
        return RunStepEvent, {"id": "step_1", "status": name.rsplit(".", 1)[1]}
    if name.startswith("thread.message."):
        return MessageEvent, {"id": "msg_1", "status": name.rsplit(".", 1)[1]}
    return RunEvent, {"id": "run_1", "status": name.rsplit(".", 1)[1]}


def as_record(name: str, data: Any) -> SSERecord:
    """An SSE record carrying ``data`` (JSON-encoded unless already a string)."""
    return SSERecord(name, data if isinstance(data, str) else json.dumps(data))


def test_reference_lists_all_expected_events(reference_dir: Path) -> None:
    """The references name 25 events, including incomplete ones, error and done."""
    names = referenced_event_names(reference_dir)
    assert {"thread.run.incomplete", "thread.message.incomplete", "error", "done"} <= names
    assert len(names) == 25


def test_every_referenced_event_is_typed(reference_dir: Path) -> None:
    """Each referenced event name parses into its typed class, never UnknownEvent."""
    for name in sorted(referenced_event_names(reference_dir)):
        cls, data = sample(name)
        event = parse_event(as_record(name, data))
        assert type(event) is cls, name
        assert event.event == name


def test_typed_accessors_return_models() -> None:
    """Run, step, message, thread and delta accessors build the pydantic models."""
    run = parse_event(
        as_record(
            "thread.run.incomplete",
            {
                "id": "run_1",
                "status": "incomplete",
                "incomplete_details": {"reason": "max_completion_tokens"},
            },
        )
    )
    assert isinstance(run, RunEvent)
    assert run.run.incomplete_details is not None
    assert run.run.incomplete_details.reason == "max_completion_tokens"
    delta = parse_event(
        as_record(
            "thread.message.delta",
            {
                "id": "msg_1",
                "delta": {"content": [{"index": 0, "type": "text", "text": {"value": "Hi"}}]},
            },
        )
    )
    assert isinstance(delta, MessageDeltaEvent)
    assert delta.delta.delta.content[0].text is not None
    assert delta.delta.delta.content[0].text.value == "Hi"


@pytest.mark.parametrize(
    "data",
    [
        {
            "message": "The server had an error",
            "type": "server_error",
            "code": "server_error",
            "param": None,
        },
        {
            "error": {
                "message": "The server had an error",
                "type": "server_error",
                "code": "server_error",
                "param": None,
            }
        },
    ],
    ids=["flat", "wrapped"],
)
def test_error_event_flat_or_wrapped(data: dict[str, Any]) -> None:
    """An error event yields the same typed StreamEventError whichever shape its data has."""
    event = parse_event(as_record("error", data))
    assert isinstance(event, ErrorEvent)
    error = event.error
    assert isinstance(error, StreamEventError)
    assert (error.message, error.code, error.error_type) == (
        "The server had an error",
        "server_error",
        "server_error",
    )


def test_error_event_with_text_data() -> None:
    """An error event whose data is not JSON still becomes a typed error with that text."""
    event = parse_event(SSERecord("error", "upstream timeout"))
    assert isinstance(event, ErrorEvent)
    assert event.error.message == "upstream timeout"


def test_unknown_event_is_delivered_raw() -> None:
    """An event name this version does not know comes through as UnknownEvent with its data."""
    event = parse_event(as_record("thread.run.step.reasoning", {"id": "x", "n": 1}))
    assert isinstance(event, UnknownEvent)
    assert event.data == {"id": "x", "n": 1}
    text = parse_event(SSERecord("ping", "not json"))
    assert isinstance(text, UnknownEvent) and text.data == "not json"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "no data"),
        ("[1, 2]", "data is not a JSON object"),
        ('{"id": ', "data is not a JSON object"),
    ],
)
def test_malformed_known_event(raw: str, reason: str) -> None:
    """A known event without usable JSON object data is a MalformedEvent with a reason."""
    event = parse_event(SSERecord("thread.run.completed", raw))
    assert isinstance(event, MalformedEvent)
    assert event.reason == reason


def test_known_event_failing_validation_is_malformed() -> None:
    """A status event whose object lacks required fields is MalformedEvent, not ValidationError."""
    event = parse_event(as_record("thread.run.completed", {"status": "completed"}))
    assert isinstance(event, MalformedEvent)
    assert "invalid" in event.reason
    step = parse_event(as_record("thread.run.step.completed", {"id": 5, "step_details": 3}))
    assert isinstance(step, MalformedEvent)


def test_stray_closing_brace_is_tolerated() -> None:
    """A run object followed by one stray ``}`` (as in the reference's tool example) is used."""
    event = parse_event(SSERecord("thread.run.queued", '{"id": "run_1", "status": "queued"}}'))
    assert isinstance(event, RunEvent) and event.run.status == "queued"


@pytest.mark.parametrize(
    "raw", ['{"id": "run_1"} trailing', '{"id": "run_1"}{"id": "run_2"}', "[1]]"]
)
def test_other_trailing_garbage_stays_malformed(raw: str) -> None:
    """Anything but stray closing brackets after the object keeps the event malformed."""
    assert isinstance(parse_event(SSERecord("thread.run.queued", raw)), MalformedEvent)
