"""RunStream: snapshots built by appending, handler callbacks, errors and interruptions."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.assistants.models import Message, Run, RunStep
from runtime.assistants.stream import RunStream
from runtime.core.hooks import EventHandler
from runtime.errors import (
    ConnectError,
    HandlerError,
    RuntimeAPIError,
    SSEDecodeError,
    StreamEventError,
    StreamInterrupted,
)
from runtime.protocol.events import DoneEvent, MalformedEvent, StreamEvent, UnknownEvent
from runtime.protocol.snapshots import TextSnapshot, ToolCallSnapshot

RUN = {"id": "run_1", "object": "thread.run", "thread_id": "thread_1"}


def sse(name: str, data: Any) -> bytes:
    """One SSE event as bytes."""
    text = data if isinstance(data, str) else json.dumps(data)
    return f"event: {name}\ndata: {text}\n\n".encode()


def run_event(status: str, **extra: Any) -> bytes:
    """A thread.run.<status> event."""
    return sse(f"thread.run.{status}", {**RUN, "status": status, **extra})


def text_delta(message_id: str, value: str, index: int = 0) -> bytes:
    """A thread.message.delta with one text fragment."""
    part = {"index": index, "type": "text", "text": {"value": value}}
    return sse("thread.message.delta", {"id": message_id, "delta": {"content": [part]}})


def message(status: str, message_id: str, text: str | None = None) -> bytes:
    """A thread.message.<status> event."""
    content = [] if text is None else [{"type": "text", "text": {"value": text, "annotations": []}}]
    body = {"id": message_id, "run_id": "run_1", "status": status, "content": content}
    return sse(f"thread.message.{status}", body)


def call_delta(step: str, index: int, **fields: Any) -> bytes:
    """A thread.run.step.delta with one tool-call fragment."""
    fragment = {"index": index, **fields}
    delta = {"step_details": {"type": "tool_calls", "tool_calls": [fragment]}}
    return sse("thread.run.step.delta", {"id": step, "delta": delta})


DONE = sse("done", "[DONE]")


async def chunks_of(*events: bytes, size: int = 7) -> AsyncIterator[bytes]:
    """The events' bytes in small chunks, like a socket would deliver them."""
    raw = b"".join(events)
    for i in range(0, len(raw), size):
        yield raw[i : i + size]


class Recorder(EventHandler):
    """Records every callback as (name, detail)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def on_event(self, event: StreamEvent) -> None:
        self.calls.append(("event", event.event))

    async def on_run_status(self, run: Run) -> None:
        self.calls.append(("run_status", run.status))

    async def on_message_created(self, message: Message) -> None:
        self.calls.append(("message_created", message.id))

    async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
        self.calls.append(("text_delta", (delta, snapshot.text)))

    async def on_message_done(self, message: Message) -> None:
        self.calls.append(("message_done", message.text))

    async def on_tool_call_created(self, snapshot: ToolCallSnapshot) -> None:
        self.calls.append(("tool_call_created", (snapshot.id, snapshot.name)))

    async def on_tool_call_delta(self, delta: dict[str, Any], snapshot: ToolCallSnapshot) -> None:
        self.calls.append(("tool_call_delta", snapshot.arguments))

    async def on_tool_call_done(self, snapshot: ToolCallSnapshot) -> None:
        self.calls.append(("tool_call_done", (snapshot.id, snapshot.arguments)))

    async def on_run_step_done(self, step: RunStep) -> None:
        self.calls.append(("run_step_done", step.id))

    async def on_error(self, error: RuntimeAPIError) -> None:
        self.calls.append(("error", type(error).__name__))

    async def on_end(self) -> None:
        self.calls.append(("end", None))

    def named(self, name: str) -> list[Any]:
        """Details of every call of one callback."""
        return [detail for call, detail in self.calls if call == name]


class Closer:
    """Counts how often the stream released its connection."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


async def test_text_snapshot_appends_and_callbacks_see_it() -> None:
    """Text deltas append to the message snapshot; on_text_delta gets (delta, snapshot so far)."""
    handler = Recorder()
    stream = RunStream(
        chunks_of(
            run_event("in_progress"),
            message("created", "msg_1"),
            text_delta("msg_1", "Hel"),
            text_delta("msg_1", "lo"),
            text_delta("msg_1", "!"),
            message("completed", "msg_1", "Hello!"),
            run_event("completed"),
            DONE,
        ),
        handler=handler,
    )
    events = [event async for event in stream]
    assert isinstance(events[-1], DoneEvent)
    assert handler.named("text_delta") == [("Hel", "Hel"), ("lo", "Hello"), ("!", "Hello!")]
    assert handler.named("message_created") == ["msg_1"]
    assert handler.named("message_done") == ["Hello!"]
    assert handler.named("run_status") == ["in_progress", "completed"]
    assert handler.named("end") == [None]
    assert stream.text == "Hello!" and stream.stopped and stream.state.saw_done
    assert stream.run is not None and stream.run.status == "completed"


async def test_content_parts_by_index_and_many_messages() -> None:
    """Fragments go to their content part by index; two messages are joined by a blank line."""
    stream = RunStream(
        chunks_of(
            text_delta("msg_1", "B", index=1),
            text_delta("msg_1", "A", index=0),
            text_delta("msg_1", "b", index=1),
            text_delta("msg_2", "second"),
            run_event("completed"),
            DONE,
        )
    )
    await stream.until_done()
    assert stream.state.messages["msg_1"].text == "ABb"
    assert stream.text == "ABb\n\nsecond"


async def test_final_message_text_wins_over_lost_deltas() -> None:
    """When thread.message.completed disagrees with the deltas, the final text is kept."""
    stream = RunStream(
        chunks_of(
            text_delta("msg_1", "Hel"),
            message("completed", "msg_1", "Hello there"),
            run_event("completed"),
            DONE,
        )
    )
    await stream.until_done()
    assert stream.state.messages["msg_1"].text == "Hello there"


async def test_many_deltas_accumulate_exactly() -> None:
    """Ten thousand fragments assemble into exactly their concatenation."""
    pieces = [f"w{i} " for i in range(10_000)]
    stream = RunStream(
        chunks_of(*(text_delta("msg_1", p) for p in pieces), run_event("completed"), size=65536)
    )
    await stream.until_done()
    assert stream.text == "".join(pieces)


async def test_tool_call_fragments_and_callbacks() -> None:
    """Tool-call fragments assemble arguments per (step, index); created/delta/done fire in order."""
    required = {
        "type": "submit_tool_outputs",
        "submit_tool_outputs": {
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"x":1}'},
                },
                {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ]
        },
    }
    handler = Recorder()
    stream = RunStream(
        chunks_of(
            call_delta(
                "step_1", 0, id="call_a", type="function", function={"name": "f", "arguments": ""}
            ),
            call_delta(
                "step_1", 1, id="call_b", type="function", function={"name": "g", "arguments": "{"}
            ),
            call_delta("step_1", 0, function={"arguments": '{"x"'}),
            call_delta("step_1", 0, function={"arguments": ":1}"}),
            call_delta("step_1", 1, function={"arguments": "}"}),
            run_event("requires_action", required_action=required),
            DONE,
        ),
        handler=handler,
    )
    await stream.until_done()
    assert handler.named("tool_call_created") == [("call_a", "f"), ("call_b", "g")]
    assert handler.named("tool_call_delta") == ['{"x"', '{"x":1}', "{}"]
    assert handler.named("tool_call_done") == [("call_a", '{"x":1}'), ("call_b", "{}")]
    assert [s.arguments for s in stream.state.tool_calls.values()] == ['{"x":1}', "{}"]
    assert all(s.done for s in stream.state.tool_calls.values())
    assert stream.stopped and stream.state.last_run_event == "thread.run.requires_action"


async def test_required_action_arguments_are_authoritative() -> None:
    """If fragments were lost, the snapshot ends with the arguments of required_action."""
    required = {
        "submit_tool_outputs": {
            "tool_calls": [{"id": "call_a", "function": {"name": "f", "arguments": '{"x":1}'}}]
        }
    }
    stream = RunStream(
        chunks_of(
            call_delta("step_1", 0, id="call_a", type="function", function={"name": "f"}),
            call_delta("step_1", 0, function={"arguments": '{"x'}),
            run_event("requires_action", required_action=required),
        )
    )
    await stream.until_done()
    (snapshot,) = stream.state.tool_calls.values()
    assert snapshot.arguments == '{"x":1}' and snapshot.done


async def test_step_completed_finishes_its_tool_calls() -> None:
    """thread.run.step.completed marks its calls done and calls on_run_step_done."""
    handler = Recorder()
    step = {
        "id": "step_1",
        "status": "completed",
        "step_details": {
            "type": "tool_calls",
            "tool_calls": [{"id": "call_c", "type": "code_interpreter", "code_interpreter": {}}],
        },
    }
    stream = RunStream(
        chunks_of(
            call_delta("step_1", 0, id="call_c", type="code_interpreter"),
            sse("thread.run.step.completed", step),
            run_event("completed"),
        ),
        handler=handler,
    )
    await stream.until_done()
    assert handler.named("tool_call_done") == [("call_c", "")]
    assert handler.named("run_step_done") == ["step_1"]
    assert stream.state.steps["step_1"].status == "completed"


async def test_error_event_reaches_on_error_and_done_without_stop_interrupts() -> None:
    """An error event is typed and reported; a done after it, with no stop, is StreamInterrupted."""
    handler = Recorder()
    stream = RunStream(
        chunks_of(
            run_event("in_progress"),
            sse("error", {"error": {"message": "overloaded", "code": "server_error"}}),
            DONE,
        ),
        handler=handler,
    )
    with pytest.raises(StreamInterrupted) as info:
        await stream.until_done()
    assert info.value.run_id == "run_1"
    assert handler.named("error") == ["StreamEventError"]
    assert (
        isinstance(stream.state.errors[0], StreamEventError)
        and stream.state.errors[0].code == "server_error"
    )
    assert handler.named("end") == [None]


async def test_eof_before_stop_raises_stream_interrupted() -> None:
    """Bytes that end while the run is still in progress raise StreamInterrupted(reason=eof)."""
    closer = Closer()
    stream = RunStream(chunks_of(run_event("in_progress"), text_delta("msg_1", "hi")), close=closer)
    with pytest.raises(StreamInterrupted) as info:
        await stream.until_done()
    assert info.value.reason == "eof"
    assert closer.count == 1
    assert stream.text == "hi"


async def test_transport_error_mid_stream_is_stream_interrupted() -> None:
    """A connection lost mid-stream becomes StreamInterrupted(reason=connection), reported first."""

    async def broken() -> AsyncIterator[bytes]:
        yield run_event("in_progress")
        raise ConnectError("the response body was cut")

    handler = Recorder()
    with pytest.raises(StreamInterrupted) as info:
        await RunStream(broken(), handler=handler).until_done()
    assert info.value.reason == "connection"
    assert isinstance(info.value.__cause__, ConnectError)
    assert handler.named("error") == ["ConnectError"]


async def test_oversized_event_raises_decode_error() -> None:
    """An event past max_event_bytes raises SSEDecodeError out of the iteration."""
    stream = RunStream(chunks_of(text_delta("msg_1", "x" * 5000)), max_event_bytes=1000)
    with pytest.raises(SSEDecodeError):
        await stream.until_done()


@pytest.mark.parametrize(
    "callback", ["on_event", "on_run_status", "on_text_delta", "on_message_created", "on_end"]
)
async def test_callback_exception_surfaces_as_handler_error(callback: str) -> None:
    """An exception in any callback is raised as HandlerError (cause chained), not swallowed."""

    class Boom(EventHandler):
        pass

    async def fail(self: EventHandler, *args: Any) -> None:
        raise ValueError("from the handler")

    setattr(Boom, callback, fail)
    closer = Closer()
    stream = RunStream(
        chunks_of(message("created", "msg_1"), text_delta("msg_1", "x"), run_event("completed")),
        handler=Boom(),
        close=closer,
    )
    with pytest.raises(HandlerError) as info:
        await stream.until_done()
    assert info.value.callback == callback
    assert isinstance(info.value.__cause__, ValueError)
    assert closer.count == 1


async def test_unknown_and_malformed_events_do_not_break_the_stream() -> None:
    """Unknown event names reach on_event raw; a completed event with lost data still stops."""
    handler = Recorder()
    raw = (
        sse("thread.run.step.reasoning", {"x": 1})
        + b'event: thread.run.completed\n{"id":"run_1"}\n\n'
        + DONE
    )
    with structlog.testing.capture_logs() as logs:
        events = [event async for event in RunStream(chunks_of(raw), handler=handler)]
    assert [type(e) for e in events] == [UnknownEvent, MalformedEvent, DoneEvent]
    (warning,) = [log for log in logs if log["event"] == "stream.malformed_event"]
    assert warning["sse_event"] == "thread.run.completed" and warning["reason"] == "no data"
    assert handler.named("event") == ["thread.run.step.reasoning", "thread.run.completed", "done"]


async def test_hostile_delta_shapes_are_ignored() -> None:
    """Deltas with wrong types (content not a list, index not an int) are skipped, not fatal."""
    weird = [
        sse("thread.message.delta", {"id": "msg_1", "delta": {"content": 5}}),
        sse(
            "thread.message.delta",
            {"id": "msg_1", "delta": {"content": [{"index": "a", "text": {"value": "x"}}]}},
        ),
        sse(
            "thread.message.delta",
            {"id": "msg_1", "delta": {"content": [{"index": 1, "text": {"value": "y"}}]}},
        ),
        sse("thread.message.delta", {"id": 3}),
        sse("thread.run.step.delta", {"id": "s", "delta": {"step_details": {"tool_calls": 7}}}),
        sse(
            "thread.run.step.delta",
            {"id": "s", "delta": {"step_details": {"tool_calls": [{"index": None}]}}},
        ),
    ]
    stream = RunStream(chunks_of(*weird, run_event("completed")))
    await stream.until_done()
    assert stream.state.messages["msg_1"].text == "xy"
    assert list(stream.state.tool_calls) == [("s", 0)]


async def test_break_then_aclose_releases_and_ends() -> None:
    """Leaving the loop early and closing the stream releases the connection and calls on_end."""
    handler = Recorder()
    closer = Closer()
    stream = RunStream(
        chunks_of(run_event("in_progress"), text_delta("m", "a"), run_event("completed")),
        handler=handler,
        close=closer,
    )
    async with stream:
        async for _event in stream:
            break
    assert closer.count == 1
    assert handler.named("end") == [None]


async def test_stream_iterates_once() -> None:
    """A RunStream refuses a second iteration."""
    stream = RunStream(chunks_of(run_event("completed")))
    await stream.until_done()
    with pytest.raises(RuntimeError):
        stream.__aiter__()


KEYS = [
    "id",
    "delta",
    "content",
    "index",
    "text",
    "value",
    "step_details",
    "tool_calls",
    "type",
    "function",
    "arguments",
    "name",
    "status",
    "required_action",
    "submit_tool_outputs",
    "message_id",
    "run_id",
    "error",
    "message",
    "code",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5) | st.sampled_from(KEYS),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=8,
)
event_names = st.sampled_from(
    [
        "thread.created",
        "thread.run.created",
        "thread.run.requires_action",
        "thread.run.completed",
        "thread.run.step.created",
        "thread.run.step.completed",
        "thread.run.step.delta",
        "thread.message.created",
        "thread.message.completed",
        "thread.message.delta",
        "error",
        "done",
        "unknown.thing",
    ]
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(event_names, json_values), max_size=8))
async def test_fuzz_stream_raises_only_typed_errors(events: list[tuple[str, Any]]) -> None:
    """Known event names with arbitrary JSON data never raise anything but RuntimeAPIError."""
    stream = RunStream(chunks_of(*(sse(name, data) for name, data in events)), handler=Recorder())
    with contextlib.suppress(RuntimeAPIError):
        await stream.until_done()
    _ = (stream.text, [s.arguments for s in stream.state.tool_calls.values()])


@pytest.mark.parametrize("each", [True, False])
async def test_many_buffered_events_let_other_tasks_run(
    each: bool,
    steps_of_a_bystander: Callable[[Awaitable[object]], Awaitable[int]],
    no_slice: None,
) -> None:
    """A stream whose 1,000 events arrive in one chunk lets the loop run other tasks between
    them (it asks
    for a turn before each slice of the read), instead of parsing them in one step."""
    deltas = [text_delta("msg_1", f"w{i} ") for i in range(1000)]
    payload = b"".join([run_event("in_progress"), *deltas, run_event("completed"), DONE])
    stream = RunStream(chunks_of(payload, size=len(payload)))
    steps = await steps_of_a_bystander(_read(stream) if each else stream.until_done())
    assert steps >= 3  # 0 when the chunk was parsed in one step
    assert stream.text == "".join(f"w{i} " for i in range(1000))


async def _read(stream: RunStream) -> None:
    async for _ in stream:
        pass


async def _each(*events: bytes) -> AsyncIterator[bytes]:
    """One chunk per event, as a server flushing after each would deliver them."""
    for event in events:
        yield event


async def test_the_consumers_own_time_is_not_the_servers_silence() -> None:
    """The idle timeout counts only the server's silence: a handler that takes longer than
    the timeout over an event, then keep-alive bytes, do not break the stream."""

    class Slow(EventHandler):
        async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
            await asyncio.sleep(0.3)

    events = (run_event("in_progress"), text_delta("msg_1", "hi"), b": keep-alive\n\n")
    stream = RunStream(
        _each(*events, run_event("completed"), DONE), handler=Slow(), idle_timeout_s=0.1
    )
    await stream.until_done()
    assert stream.text == "hi" and stream.state.run is not None
    assert stream.state.run.status == "completed"
