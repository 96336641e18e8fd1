"""Conformance: the reference streams, served over loopback HTTP, through the real client."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from runtime import AssistantsClient, EventHandler
from runtime.assistants.events import (
    DoneEvent,
    MalformedEvent,
    MessageDeltaEvent,
    MessageEvent,
    RunEvent,
    RunStepDeltaEvent,
    RunStepEvent,
    StreamEvent,
    ThreadCreatedEvent,
)
from runtime.assistants.stream import RunStream
from runtime.protocol.snapshots import TextSnapshot, ToolCallSnapshot

ServeApp = Callable[[web.Application], Awaitable[str]]
EXPECTED_TEXT = "Hello! How can I assist you today?"
WEATHER_ARGS = '{"location":"San Francisco, CA","unit":"fahrenheit"}'


def reference_examples(reference_dir: Path) -> list[bytes]:
    """The SSE blocks printed after the streaming create-thread-and-run examples (verbatim)."""
    text = (reference_dir / "openai-create-thread-and-run-reference.txt").read_text()
    marker = "for event in stream:\n  print(event)\n"
    blocks = []
    for part in text.split(marker)[1:]:
        end = part.index("data: [DONE]\n") + len("data: [DONE]\n")
        blocks.append(part[:end].encode())
    return blocks


def recorded_as_sse(reference_dir: Path) -> bytes:
    """assistants-stream-recorded.jsonl rendered as an SSE body."""
    out = []
    for line in (reference_dir / "assistants-stream-recorded.jsonl").read_text().splitlines():
        record = json.loads(line)
        out.append(f"event: {record['event']}\ndata: {json.dumps(record['data'])}\n\n")
    return "".join(out).encode()


def sse_app(body: bytes, path: str, seen: list[dict[str, Any]], chunk: int = 97) -> web.Application:
    """A server answering POST ``path`` with ``body`` as an event stream, in small writes."""

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for i in range(0, len(body), chunk):
            await response.write(body[i : i + chunk])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post(path, handle)
    return app


class Collector(EventHandler):
    """Keeps what the conformance checks look at."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.deltas: list[str] = []
        self.fragments: list[str] = []
        self.done_calls: list[tuple[str, str, str]] = []
        self.statuses: list[str] = []
        self.ended = 0

    async def on_event(self, event: StreamEvent) -> None:
        self.events.append(event)

    async def on_run_status(self, run: Any) -> None:
        self.statuses.append(run.status)

    async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
        self.deltas.append(delta)

    async def on_tool_call_created(self, snapshot: ToolCallSnapshot) -> None:
        self.fragments.append(snapshot.arguments)

    async def on_tool_call_delta(self, delta: str, snapshot: ToolCallSnapshot) -> None:
        self.fragments.append(delta)

    async def on_tool_call_done(self, snapshot: ToolCallSnapshot) -> None:
        self.done_calls.append((snapshot.id, snapshot.name, snapshot.arguments))

    async def on_end(self) -> None:
        self.ended += 1


async def replay(
    serve: ServeApp, body: bytes, handler: Collector
) -> tuple[RunStream, list[dict[str, Any]]]:
    """Stream ``body`` through AssistantsClient.create_thread_and_run(stream=True)."""
    seen: list[dict[str, Any]] = []
    root = await serve(sse_app(body, "/v1/threads/runs", seen))
    async with AssistantsClient(base_url=root + "/v1", api_key="sk-conformance-0000") as client:
        stream = await client.create_thread_and_run(
            "asst_123",
            thread={"messages": [{"role": "user", "content": "Hello"}]},
            stream=True,
            handler=handler,
        )
        async with stream:
            await stream.until_done()
    return stream, seen


def test_reference_has_two_streaming_examples(reference_dir: Path) -> None:
    """The extraction finds the text example (with the lost data prefix) and the tool example."""
    text, tools = reference_examples(reference_dir)
    assert b"\nevent: thread.run.completed\n{" in text
    assert b"\n...\n" in text and b"\n...\n" in tools
    assert b"thread.run.requires_action" in tools


async def test_recorded_stream_completes_with_text(serve: ServeApp, reference_dir: Path) -> None:
    """The recorded run streams to completed with the assistant's greeting."""
    handler = Collector()
    stream, seen = await replay(serve, recorded_as_sse(reference_dir), handler)
    assert seen[0]["stream"] is True and seen[0]["assistant_id"] == "asst_123"
    assert stream.run is not None and stream.run.status == "completed"
    assert stream.run.usage is not None and stream.run.usage.total_tokens > 0
    assert stream.text == EXPECTED_TEXT
    assert "".join(handler.deltas) == EXPECTED_TEXT
    assert handler.statuses == ["queued", "queued", "in_progress", "completed"]
    assert len(handler.events) == 19 and handler.ended == 1
    assert not any(isinstance(e, MalformedEvent) for e in handler.events)


async def test_reference_text_example(serve: ServeApp, reference_dir: Path) -> None:
    """The text example yields its events, the data-less completed event as MalformedEvent,
    the final text, and ends gracefully at done."""
    handler = Collector()
    stream, _ = await replay(serve, reference_examples(reference_dir)[0], handler)
    kinds = [type(e) for e in handler.events]
    assert kinds == [
        ThreadCreatedEvent,
        RunEvent,
        RunEvent,
        RunEvent,
        RunStepEvent,
        RunStepEvent,
        MessageEvent,
        MessageEvent,
        MessageDeltaEvent,
        MessageDeltaEvent,
        MessageDeltaEvent,
        MessageEvent,
        RunStepEvent,
        MalformedEvent,
        DoneEvent,
    ]
    completed = handler.events[-2]
    assert completed.event == "thread.run.completed" and completed.data == ""
    assert stream.state.thread is not None and stream.state.thread.id == "thread_123"
    assert handler.deltas == ["Hello", " today", "?"]
    assert stream.text == EXPECTED_TEXT
    assert stream.stopped and stream.state.saw_done and handler.ended == 1
    assert stream.run is not None and stream.run.status == "in_progress"


async def test_reference_tool_call_example(serve: ServeApp, reference_dir: Path) -> None:
    """The tool example stops in requires_action with the exact arguments of required_action;
    the streamed fragments arrive and are assembled in order."""
    handler = Collector()
    stream, _ = await replay(serve, reference_examples(reference_dir)[1], handler)
    assert stream.run is not None and stream.run.status == "requires_action"
    (call,) = stream.run.required_tool_calls
    assert (call.id, call.function.name) == ("call_XXNp8YGaFrjrSjgqxtC8JJ1B", "get_current_weather")
    assert call.function.arguments == WEATHER_ARGS
    assert json.loads(call.function.arguments) == {
        "location": "San Francisco, CA",
        "unit": "fahrenheit",
    }
    assert handler.fragments == ["", '{"', "location", "ahrenheit", '"}']
    assert "".join(handler.fragments) == '{"locationahrenheit"}'  # what the elided example streams
    assert handler.done_calls == [
        ("call_XXNp8YGaFrjrSjgqxtC8JJ1B", "get_current_weather", WEATHER_ARGS)
    ]
    kinds = [type(e) for e in handler.events]
    assert kinds.count(RunStepDeltaEvent) == 5 and kinds[-1] is DoneEvent
    assert not any(isinstance(e, MalformedEvent) for e in handler.events)
    assert stream.stopped and stream.state.last_run_event == "thread.run.requires_action"


@pytest.mark.parametrize("chunk", [1, 4096])
async def test_recorded_stream_any_chunking(
    serve: ServeApp, reference_dir: Path, chunk: int
) -> None:
    """Byte-by-byte and large writes over HTTP give the same events and text."""
    seen: list[dict[str, Any]] = []
    root = await serve(
        sse_app(recorded_as_sse(reference_dir), "/v1/threads/thread_1/runs", seen, chunk)
    )
    async with AssistantsClient(base_url=root + "/v1", api_key="sk-conformance-0000") as client:
        stream = await client.create_run("thread_1", "asst_1", stream=True)
        names = [event.event async for event in stream]
    assert len(names) == 19 and names[-1] == "thread.run.completed"
    assert stream.text == EXPECTED_TEXT
