"""ResponseStream: append-only snapshots, handler callbacks, inconsistency logging."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from runtime.core.hooks import EventHandler, StatusUpdate
from runtime.errors import HandlerError, StreamInterrupted
from runtime.protocol.snapshots import TextSnapshot, ToolCallSnapshot
from runtime.responses import ResponseStream

RESPONSE = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
        for name, data in events
    )


async def chunks(payload: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def text_stream(final_text: str = "Hello world", final_id: str = "msg_1") -> bytes:
    message = {"type": "message", "id": "msg_1", "status": "in_progress", "content": []}
    done_message = {
        "type": "message",
        "id": final_id,
        "status": "completed",
        "content": [{"type": "output_text", "text": final_text}],
    }
    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    return sse(
        ("response.created", {"response": RESPONSE}),
        ("response.output_item.added", {"output_index": 0, "item": message}),
        ("response.output_text.delta", {**at, "delta": "Hello"}),
        ("response.output_text.delta", {**at, "delta": " world"}),
        ("response.output_text.done", {**at, "text": final_text}),
        ("response.output_item.done", {"output_index": 0, "item": done_message}),
        (
            "response.completed",
            {"response": {**RESPONSE, "status": "completed", "output": [done_message]}},
        ),
    )


class Recorder(EventHandler):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.snapshots: list[Any] = []

    async def on_status(self, update: StatusUpdate) -> None:
        self.calls.append(("status", update.status))

    async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
        self.calls.append(("text", snapshot.text))
        self.snapshots.append(snapshot)

    async def on_message_done(self, snapshot: TextSnapshot) -> None:
        self.calls.append(("message_done", snapshot.text))

    async def on_tool_call_created(self, snapshot: ToolCallSnapshot) -> None:
        self.calls.append(("created", (snapshot.id, snapshot.name)))

    async def on_tool_call_delta(self, delta: str, snapshot: ToolCallSnapshot) -> None:
        self.calls.append(("delta", snapshot.arguments))

    async def on_tool_call_done(self, snapshot: ToolCallSnapshot) -> None:
        self.calls.append(("done", snapshot.arguments))

    async def on_end(self) -> None:
        self.calls.append(("end", None))


async def test_text_deltas_grow_one_snapshot_in_place() -> None:
    """Deltas append to one snapshot object; the handler sees its text grow."""
    handler = Recorder()
    stream = ResponseStream(chunks(text_stream()), handler=handler)
    response = await stream.final_response()
    assert response.status == "completed" and stream.text == "Hello world"
    assert [c for c in handler.calls if c[0] == "text"] == [
        ("text", "Hello"),
        ("text", "Hello world"),
    ]
    assert handler.snapshots[0] is handler.snapshots[1]
    assert isinstance(handler.snapshots[0], TextSnapshot)
    assert handler.calls[0] == ("status", "in_progress")
    assert handler.calls[-2:] == [("status", "completed"), ("end", None)]


async def test_byte_by_byte_delivery_gives_the_same_result() -> None:
    """Chunk boundaries do not matter: one byte at a time yields the same snapshots."""
    stream = ResponseStream(chunks(text_stream(), size=1))
    await stream.until_done()
    assert stream.text == "Hello world" and stream.stopped


async def test_function_call_snapshot_assembles_arguments() -> None:
    """A function_call item fires created/delta/done with call_id, name and full arguments."""
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "add"}
    at = {"item_id": "fc_1", "output_index": 0}
    done_item = {**item, "arguments": '{"a":1}', "status": "completed"}
    payload = sse(
        ("response.created", {"response": RESPONSE}),
        ("response.output_item.added", {"output_index": 0, "item": {**item, "arguments": ""}}),
        ("response.function_call_arguments.delta", {**at, "delta": '{"a"'}),
        ("response.function_call_arguments.delta", {**at, "delta": ":1}"}),
        ("response.function_call_arguments.done", {**at, "arguments": '{"a":1}'}),
        ("response.output_item.done", {"output_index": 0, "item": done_item}),
        (
            "response.completed",
            {"response": {**RESPONSE, "status": "completed", "output": [done_item]}},
        ),
    )
    handler = Recorder()
    stream = ResponseStream(chunks(payload), handler=handler)
    await stream.until_done()
    calls = [c for c in handler.calls if c[0] in {"created", "delta", "done"}]
    assert calls == [
        ("created", ("call_1", "add")),
        ("delta", '{"a"'),
        ("delta", '{"a":1}'),
        ("done", '{"a":1}'),
    ]
    (snapshot,) = stream.state.function_calls
    assert isinstance(snapshot, ToolCallSnapshot)
    assert (snapshot.id, snapshot.item_id, snapshot.group) == ("call_1", "fc_1", "resp_1")


async def test_disagreeing_final_text_is_logged_and_wins() -> None:
    """When the done events state another text, the mismatch is logged and the final text kept."""
    with capture_logs() as logs:
        stream = ResponseStream(chunks(text_stream(final_text="Hello there", final_id="msg_2")))
        await stream.until_done()
    assert stream.text == "Hello there"
    names = [entry["event"] for entry in logs]
    assert "responses.text_mismatch" in names
    mismatch = next(e for e in logs if e["event"] == "responses.item_id_mismatch")
    assert (mismatch["expected"], mismatch["got"], mismatch["output_index"]) == (
        "msg_1",
        "msg_2",
        0,
    )
    assert mismatch["log_level"] == "warning"
    assert stream.state.inconsistencies >= 2
    assert stream.state.messages[0].id == "msg_2"


async def test_stream_without_terminal_event_is_interrupted_with_the_id() -> None:
    """EOF before a terminal event raises StreamInterrupted carrying the response id."""
    payload = sse(("response.created", {"response": RESPONSE}))
    stream = ResponseStream(chunks(payload))
    with pytest.raises(StreamInterrupted) as caught:
        await stream.until_done()
    assert caught.value.run_id == "resp_1" and caught.value.reason == "eof"
    assert stream.response_id == "resp_1" and not stream.stopped


async def test_a_failing_callback_surfaces_as_handler_error() -> None:
    """An exception in a callback becomes HandlerError naming the callback."""

    class Broken(EventHandler):
        async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
            raise ValueError("nope")

    stream = ResponseStream(chunks(text_stream()), handler=Broken())
    with pytest.raises(HandlerError) as caught:
        await stream.until_done()
    assert caught.value.callback == "on_text_delta"
    assert isinstance(caught.value.__cause__, ValueError)


async def test_error_event_is_recorded_and_reported() -> None:
    """An error event is kept on the stream and passed to on_error, not raised."""
    seen: list[str] = []

    class Errors(EventHandler):
        async def on_error(self, error: Any) -> None:
            seen.append(error.code)

    payload = sse(
        ("response.created", {"response": RESPONSE}),
        ("error", {"code": "server_error", "message": "boom"}),
        ("response.failed", {"response": {**RESPONSE, "status": "failed"}}),
    )
    stream = ResponseStream(chunks(payload), handler=Errors())
    await stream.until_done()
    assert seen == ["server_error"]
    assert (
        stream.state.errors[0].message == "boom"
        and stream.response is not None
        and stream.response.status == "failed"
    )


async def test_malformed_event_is_logged_and_skipped() -> None:
    """A known event whose data is not an object is logged and the stream goes on."""
    payload = (
        sse(("response.created", {"response": RESPONSE}))
        + b"event: response.output_item.added\ndata: oops\n\n"
        + sse(("response.completed", {"response": {**RESPONSE, "status": "completed"}}))
    )
    with capture_logs() as logs:
        stream = ResponseStream(chunks(payload))
        await stream.until_done()
    assert stream.response is not None and stream.response.status == "completed"
    malformed = [e for e in logs if e["event"] == "responses.malformed_event"]
    assert malformed[0]["sse_event"] == "response.output_item.added"


async def test_final_response_fills_in_items_the_stream_never_announced() -> None:
    """A function call only present in the terminal response still gets a done snapshot."""
    item = {"type": "function_call", "id": "fc_9", "call_id": "call_9", "name": "f"}
    payload = sse(
        ("response.created", {"response": RESPONSE}),
        (
            "response.completed",
            {
                "response": {
                    **RESPONSE,
                    "status": "completed",
                    "output": [{**item, "arguments": "{}"}],
                }
            },
        ),
    )
    handler = Recorder()
    stream = ResponseStream(chunks(payload), handler=handler)
    await stream.until_done()
    (snapshot,) = stream.state.function_calls
    assert (snapshot.id, snapshot.arguments, snapshot.done) == ("call_9", "{}", True)
    assert [c[0] for c in handler.calls if c[0] in {"created", "done"}] == ["created", "done"]


async def test_disagreeing_final_arguments_are_logged_and_win() -> None:
    """arguments.done that contradicts the fragments is logged; its arguments are kept."""
    item = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "f",
        "arguments": "",
    }
    at = {"item_id": "fc_1", "output_index": 0}
    payload = sse(
        ("response.created", {"response": RESPONSE}),
        ("response.output_item.added", {"output_index": 0, "item": item}),
        ("response.function_call_arguments.delta", {**at, "delta": '{"a":'}),
        ("response.function_call_arguments.done", {**at, "arguments": '{"a":2}'}),
    )
    with capture_logs() as logs:
        stream = ResponseStream(chunks(payload))
        with pytest.raises(StreamInterrupted):
            await stream.until_done()
    assert stream.state.function_calls[0].arguments == '{"a":2}'
    mismatch = next(e for e in logs if e["event"] == "responses.arguments_mismatch")
    assert (mismatch["streamed_chars"], mismatch["final_chars"]) == (5, 7)


@pytest.mark.parametrize(
    ("final_arguments", "final_name", "mismatches"),
    [('{"a":2}', "f", 0), ('{"a":3}', "f", 1), ('{"a":2}', "g", 0)],
)
async def test_final_response_after_item_done_settles_each_call_once(
    final_arguments: str, final_name: str, mismatches: int
) -> None:
    """A call settled by its item events is left alone when the final response agrees, and
    still loses to the final response when it does not (arguments logged, name taken)."""
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f"}
    at = {"item_id": "fc_1", "output_index": 0}
    final = {**item, "name": final_name, "arguments": final_arguments, "status": "completed"}
    payload = sse(
        ("response.created", {"response": RESPONSE}),
        ("response.output_item.added", {"output_index": 0, "item": {**item, "arguments": ""}}),
        ("response.function_call_arguments.delta", {**at, "delta": '{"a":2}'}),
        ("response.function_call_arguments.done", {**at, "arguments": '{"a":2}'}),
        (
            "response.output_item.done",
            {"output_index": 0, "item": {**item, "arguments": '{"a":2}'}},
        ),
        (
            "response.completed",
            {"response": {**RESPONSE, "status": "completed", "output": [final]}},
        ),
    )
    handler = Recorder()
    with capture_logs() as logs:
        stream = ResponseStream(chunks(payload), handler=handler)
        await stream.until_done()
    (snapshot,) = stream.state.function_calls
    assert (snapshot.name, snapshot.arguments) == (final_name, final_arguments)
    assert [e["event"] for e in logs].count("responses.arguments_mismatch") == mismatches
    assert [c[0] for c in handler.calls].count("done") == 1


async def test_many_buffered_events_let_other_tasks_run(
    steps_of_a_bystander: Callable[[Awaitable[object]], Awaitable[int]],
    no_slice: None,
) -> None:
    """A response stream whose 1,000 deltas arrive in one chunk lets the loop run other tasks
    between them (it asks
    for a turn before each slice of the read), instead of parsing them in one step."""
    message = {"type": "message", "id": "msg_1", "status": "in_progress", "content": []}
    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    payload = sse(
        ("response.created", {"response": RESPONSE}),
        ("response.output_item.added", {"output_index": 0, "item": message}),
        *[("response.output_text.delta", {**at, "delta": f"w{i} "}) for i in range(1000)],
        ("response.completed", {"response": {**RESPONSE, "status": "completed"}}),
    )
    stream = ResponseStream(chunks(payload, size=len(payload)))
    steps = await steps_of_a_bystander(stream.until_done())
    assert steps >= 3  # 0 when the chunk was parsed in one step
    assert stream.text == "".join(f"w{i} " for i in range(1000))


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

    message = {"type": "message", "id": "msg_1", "status": "in_progress", "content": []}
    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    done = {**RESPONSE, "status": "completed"}
    stream = ResponseStream(
        _each(
            sse(("response.created", {"response": RESPONSE})),
            sse(("response.output_item.added", {"output_index": 0, "item": message})),
            sse(("response.output_text.delta", {**at, "delta": "hi"})),
            b": keep-alive\n\n",
            sse(("response.completed", {"response": done})),
        ),
        handler=Slow(),
        idle_timeout_s=0.1,
    )
    await stream.until_done()
    assert stream.text == "hi"
