"""Pydantic models of the API objects: every documented shape parses, unknown fields survive."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from runtime.assistants.models import (
    TERMINAL_STATUSES,
    Assistant,
    CodeInterpreterToolCall,
    FileCitationAnnotation,
    FilePathAnnotation,
    FileSearchToolCall,
    FunctionToolCall,
    ImageFileContent,
    ImageURLContent,
    Message,
    MessageCreationStepDetails,
    MessageDelta,
    Run,
    RunStep,
    RunStepDelta,
    TextContent,
    Thread,
    ToolCallsStepDetails,
    UnknownAnnotation,
    UnknownContent,
    UnknownToolCall,
)

ALL_STATUSES = [
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "cancelled",
    "failed",
    "completed",
    "incomplete",
    "expired",
]


def recorded(reference_dir: Path, event: str) -> dict[str, Any]:
    """The data of the first recorded event with that name."""
    for line in (reference_dir / "assistants-stream-recorded.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["event"] == event:
            data: dict[str, Any] = record["data"]
            return data
    raise LookupError(event)


def test_assistant_keeps_unknown_fields() -> None:
    """An Assistant parses and keeps fields this version does not declare."""
    data = {
        "id": "asst_1",
        "object": "assistant",
        "model": "gpt-4o",
        "tools": [{"type": "code_interpreter"}],
        "reasoning_effort": "low",
        "metadata": {"k": "v"},
    }
    assistant = Assistant.model_validate(data)
    assert assistant.model == "gpt-4o"
    assert assistant.model_extra == {"reasoning_effort": "low"}
    assert assistant.model_dump()["reasoning_effort"] == "low"


def test_thread_from_stream_example() -> None:
    """A Thread as the thread.created event carries it."""
    thread = Thread.model_validate(
        {"id": "thread_123", "object": "thread", "created_at": 1710348075, "metadata": {}}
    )
    assert (thread.id, thread.created_at, thread.metadata) == ("thread_123", 1710348075, {})


def test_message_content_kinds_and_annotations() -> None:
    """Text (with citation, file path and unknown annotations), image_file, image_url and an
    unknown content type each parse to their own model."""
    message = Message.model_validate(
        {
            "id": "msg_1",
            "role": "assistant",
            "content": [
                {
                    "type": "text",
                    "text": {
                        "value": "See [1] and [2].",
                        "annotations": [
                            {
                                "type": "file_citation",
                                "text": "[1]",
                                "start_index": 4,
                                "end_index": 7,
                                "file_citation": {"file_id": "file_a"},
                            },
                            {
                                "type": "file_path",
                                "text": "[2]",
                                "start_index": 12,
                                "end_index": 15,
                                "file_path": {"file_id": "file_b"},
                            },
                            {"type": "url_citation", "url": "https://example.org"},
                        ],
                    },
                },
                {"type": "image_file", "image_file": {"file_id": "file_img", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}},
                {"type": "audio", "audio": {"id": "a"}},
            ],
        }
    )
    text, image_file, image_url, unknown = message.content
    assert isinstance(text, TextContent)
    citation, path, other = text.text.annotations
    assert isinstance(citation, FileCitationAnnotation)
    assert citation.file_citation is not None and citation.file_citation.file_id == "file_a"
    assert isinstance(path, FilePathAnnotation)
    assert path.file_path is not None and path.file_path.file_id == "file_b"
    assert isinstance(other, UnknownAnnotation) and other.model_extra == {
        "url": "https://example.org"
    }
    assert isinstance(image_file, ImageFileContent) and image_file.image_file.file_id == "file_img"
    assert isinstance(image_url, ImageURLContent) and image_url.image_url.detail == "high"
    assert isinstance(unknown, UnknownContent) and unknown.type == "audio"
    assert message.text == "See [1] and [2]."


def test_recorded_completed_message(reference_dir: Path) -> None:
    """The recorded thread.message.completed parses with its final text."""
    message = Message.model_validate(recorded(reference_dir, "thread.message.completed"))
    assert message.text == "Hello! How can I assist you today?"
    assert message.status == "completed"


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_run_every_status(status: str) -> None:
    """Every documented run status parses; terminal ones say so."""
    run = Run.model_validate({"id": "run_1", "thread_id": "thread_1", "status": status})
    assert run.status == status
    assert run.is_terminal is (status in TERMINAL_STATUSES)
    assert run.is_terminal is (
        status in {"cancelled", "failed", "completed", "incomplete", "expired"}
    )


def test_run_reference_example_has_all_details(reference_dir: Path) -> None:
    """The reference's full Run example: required_action, last_error, incomplete_details, usage."""
    text = (reference_dir / "openai-create-thread-and-run-reference.txt").read_text()
    start = text.index("Returns Examples\n{") + len("Returns Examples\n")
    run = Run.model_validate(json.loads(text[start:]))
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_completion_tokens"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert run.usage is not None and run.usage.total_tokens == 0
    (call,) = run.required_tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("id", "name", "arguments")
    assert run.truncation_strategy == {"type": "auto", "last_messages": 1}


def test_run_incomplete_and_failed() -> None:
    """An incomplete run carries its reason; a failed run its last_error; usage totals parse."""
    run = Run.model_validate(
        {
            "id": "run_1",
            "status": "incomplete",
            "incomplete_details": {"reason": "max_prompt_tokens"},
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            "brand_new_field": [1],
        }
    )
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_prompt_tokens"
    assert run.usage is not None and run.usage.total_tokens == 7
    assert run.model_extra == {"brand_new_field": [1]}
    failed = Run.model_validate(
        {
            "id": "run_2",
            "status": "failed",
            "last_error": {"code": "rate_limit_exceeded", "message": "m"},
        }
    )
    assert failed.last_error is not None and failed.last_error.code == "rate_limit_exceeded"
    assert failed.required_tool_calls == []


def test_run_step_message_creation(reference_dir: Path) -> None:
    """A message_creation step names its message."""
    step = RunStep.model_validate(recorded(reference_dir, "thread.run.step.completed"))
    assert isinstance(step.step_details, MessageCreationStepDetails)
    assert step.step_details.message_creation.message_id == "msg_qyWb3atvM7GHkhW6GwF8wy8Q"


def test_run_step_tool_calls_of_every_kind() -> None:
    """A tool_calls step holds function, code_interpreter, file_search and unknown calls."""
    step = RunStep.model_validate(
        {
            "id": "step_1",
            "type": "tool_calls",
            "status": "completed",
            "step_details": {
                "type": "tool_calls",
                "tool_calls": [
                    {
                        "id": "call_f",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":1}', "output": "2"},
                    },
                    {
                        "id": "call_c",
                        "type": "code_interpreter",
                        "code_interpreter": {
                            "input": "1+1",
                            "outputs": [{"type": "logs", "logs": "2"}],
                        },
                    },
                    {
                        "id": "call_s",
                        "type": "file_search",
                        "file_search": {"ranking_options": {"ranker": "auto"}, "results": []},
                    },
                    {"id": "call_w", "type": "web_search", "web_search": {}},
                ],
            },
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }
    )
    assert isinstance(step.step_details, ToolCallsStepDetails)
    function, code, search, unknown = step.step_details.tool_calls
    assert isinstance(function, FunctionToolCall) and function.function.output == "2"
    assert isinstance(code, CodeInterpreterToolCall) and code.code_interpreter.input == "1+1"
    assert code.code_interpreter.outputs == [{"type": "logs", "logs": "2"}]
    assert isinstance(search, FileSearchToolCall) and "results" in search.file_search
    assert isinstance(unknown, UnknownToolCall) and unknown.type == "web_search"


def test_message_delta_object(reference_dir: Path) -> None:
    """A thread.message.delta addresses content by index and carries the text piece."""
    delta = MessageDelta.model_validate(recorded(reference_dir, "thread.message.delta"))
    (part,) = delta.delta.content
    assert part.index == 0 and part.text is not None and part.text.value == "Hello"


def test_run_step_delta_object(reference_dir: Path) -> None:
    """A thread.run.step.delta from the reference carries the call id, name and arguments."""
    text = (reference_dir / "openai-create-thread-and-run-reference.txt").read_text()
    line = re.search(r'data: (\{"id":"step_001","object":"thread.run.step.delta".*)', text)
    assert line is not None
    delta = RunStepDelta.model_validate_json(line.group(1))
    assert delta.delta.step_details is not None
    (call,) = delta.delta.step_details.tool_calls or []
    assert call.id == "call_XXNp8YGaFrjrSjgqxtC8JJ1B"
    assert call.function is not None and call.function.name == "get_current_weather"
