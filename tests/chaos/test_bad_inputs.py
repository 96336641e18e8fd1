"""The bad-input table of tests/README.md, row by row: what the user sees for each kind of bad input.

SSE-level rows run against a tiny hand-written server that sends exactly the broken stream
of the row (the emulator only produces well-formed streams); the other rows run against the
emulator. Expiry and busy-thread rows are covered in tests/integration/orchestrator/.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from runtime import AssistantsClient, EventHandler, Orchestrator, RunPolicy
from runtime.emulator import Emulator
from runtime.errors import (
    AuthenticationError,
    NotFoundError,
    RunFailedError,
    ServerError,
    StreamEventError,
)
from runtime.protocol.events import StreamEvent, UnknownEvent
from runtime.retry import set_testing
from tools import ToolRegistry

FAST = RunPolicy(poll_interval_s=0.02, max_poll_interval_s=0.05)
RUN = {
    "id": "run_1",
    "object": "thread.run",
    "thread_id": "thread_1",
    "assistant_id": "asst_1",
    "created_at": 1,
    "status": "in_progress",
}
MESSAGE = {
    "id": "msg_1",
    "object": "thread.message",
    "thread_id": "thread_1",
    "run_id": "run_1",
    "role": "assistant",
    "created_at": 2,
    "status": "completed",
    "content": [{"type": "text", "text": {"value": "Hello", "annotations": []}}],
}
DELTA = {
    "id": "msg_1",
    "object": "thread.message.delta",
    "delta": {"content": [{"index": 0, "type": "text", "text": {"value": "Hello"}}]},
}


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    set_testing(True)
    yield
    set_testing(False)


def frame(name: str, data: Any) -> bytes:
    """One SSE event (data JSON-encoded unless it is already bytes)."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return b"event: " + name.encode() + b"\ndata: " + raw + b"\n\n"


def run_as(status: str, **extra: Any) -> dict[str, Any]:
    return {**RUN, "status": status, **extra}


HEAD = frame("thread.run.created", run_as("queued")) + frame("thread.run.in_progress", RUN)
TEXT = (
    frame("thread.message.created", {**MESSAGE, "status": "in_progress", "content": []})
    + frame("thread.message.delta", DELTA)
    + frame("thread.message.completed", MESSAGE)
)
TAIL = frame("thread.run.completed", run_as("completed")) + b"event: done\ndata: [DONE]\n\n"


def fake_server(stream: bytes, polled: dict[str, Any]) -> web.Application:
    """Answers create-run with ``stream`` (in one chunk), retrieve/list runs with ``polled``
    (carrying the metadata the client sent), messages with MESSAGE."""
    metadata: dict[str, Any] = {}

    async def create(request: web.Request) -> web.StreamResponse:
        metadata.update((await request.json()).get("metadata") or {})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(stream)
        await response.write_eof()
        return response

    async def retrieve(request: web.Request) -> web.Response:
        return web.json_response({**polled, "metadata": metadata})

    async def list_runs(request: web.Request) -> web.Response:
        data = [{**polled, "metadata": metadata}]
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def messages(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [MESSAGE], "has_more": False})

    app = web.Application()
    app.router.add_post("/v1/threads/{tid}/runs", create)
    app.router.add_get("/v1/threads/{tid}/runs/{rid}", retrieve)
    app.router.add_get("/v1/threads/{tid}/runs", list_runs)
    app.router.add_get("/v1/threads/{tid}/messages", messages)
    return app


class Recorder(EventHandler):
    """Keeps the unknown events and stream errors a user's handler receives."""

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.errors: list[Exception] = []

    async def on_event(self, event: StreamEvent) -> None:
        if isinstance(event, UnknownEvent):
            self.unknown.append(event.event)

    async def on_error(self, error: Exception) -> None:
        self.errors.append(error)


async def drive(
    serve: Any, stream: bytes, polled: dict[str, Any], **client: Any
) -> tuple[Any, Recorder, list[dict[str, Any]]]:
    """Run once against the fake server; return the result, the handler and the log events."""
    url = await serve(fake_server(stream, polled))
    handler = Recorder()
    async with AssistantsClient(base_url=url + "/v1", api_key="sk-bad-input-0000", **client) as c:
        with capture_logs() as logs:
            result = await Orchestrator(c, ToolRegistry(), policy=FAST, handler=handler).run(
                "thread_1", "asst_1"
            )
    return result, handler, logs


def names(logs: list[dict[str, Any]]) -> set[str]:
    return {str(entry["event"]) for entry in logs}


async def test_malformed_sse_is_a_lost_stream_recovered_by_polling(serve: Any) -> None:
    """Row "malformed SSE": junk lines are skipped; an oversized line = stream lost -> polled."""
    junk = b"this is not a field\n\x00\xff garbage\n:comment\n\n"
    huge = b"data: " + b"x" * 5000 + b"\n\n"
    result, _, logs = await drive(
        serve, HEAD + junk + huge + TEXT + TAIL, run_as("completed"), max_event_bytes=1024
    )
    assert (result.status, result.text, result.recoveries) == ("completed", "Hello", 1)
    lost = [e for e in logs if e["event"] == "run.stream_lost"]
    assert lost and lost[0]["error"] == "SSEDecodeError"
    assert result.run_id == "run_1"  # the run was found again (by id or idempotency key)


async def test_unknown_event_reaches_the_handler_and_changes_nothing(serve: Any) -> None:
    """Row "unknown event": delivered raw to EventHandler.on_event; the run goes on."""
    vendor = frame("thread.run.vendor_extension", {"anything": [1, 2]})
    result, handler, logs = await drive(serve, HEAD + vendor + TEXT + TAIL, run_as("completed"))
    assert (result.status, result.text, result.recoveries) == ("completed", "Hello", 0)
    assert handler.unknown == ["thread.run.vendor_extension"]
    assert not [e for e in logs if e["log_level"] in ("warning", "error")]


@pytest.mark.parametrize(
    "data",
    [
        {"message": "The model crashed.", "type": "server_error", "code": "server_error"},
        {
            "error": {
                "message": "The model crashed.",
                "type": "server_error",
                "code": "server_error",
            }
        },
    ],
    ids=["flat", "wrapped"],
)
async def test_error_event_in_both_shapes(serve: Any, data: dict[str, Any]) -> None:
    """Row "error event": on_error gets StreamEventError(code); the run's real status is polled."""
    stream = HEAD + frame("error", data) + b"event: done\ndata: [DONE]\n\n"
    failed = run_as("failed", last_error={"code": "server_error", "message": "The model crashed."})
    result, handler, logs = await drive(serve, stream, failed)
    assert result.status == "failed"
    assert result.last_error.code == "server_error"
    (error,) = [e for e in handler.errors if isinstance(e, StreamEventError)]
    assert (error.code, error.message) == ("server_error", "The model crashed.")
    assert {"stream.error_event", "run.stream_lost"} <= names(logs)
    with pytest.raises(RunFailedError, match="ended failed: The model crashed"):
        result.raise_for_status()


async def test_non_json_data_is_a_malformed_event(serve: Any) -> None:
    """Row "non-JSON data": logged as stream.malformed_event; the status is confirmed by polling."""
    stream = HEAD + TEXT + frame("thread.run.completed", b"{not json") + b"event: done\n\n"
    result, _, logs = await drive(serve, stream, run_as("completed"))
    assert (result.status, result.text) == ("completed", "Hello")
    (malformed,) = [e for e in logs if e["event"] == "stream.malformed_event"]
    assert malformed["sse_event"] == "thread.run.completed"


# --- rows answered by the emulator -----------------------------------------------------------


def tool_registry() -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool
    def echo(text: str) -> str:
        """Echo text."""
        return text

    @reg.tool
    def explode(reason: str) -> str:
        """Always raises."""
        raise RuntimeError(f"boom: {reason}")

    @reg.tool
    def huge() -> str:
        """A 100,000-character output."""
        return "x" * 100_000

    return reg


async def test_tool_rows_become_error_outputs_never_a_crashed_run() -> None:
    """Rows "invalid tool arguments", "unknown tool", "tool exception", "oversized output"."""
    lines = [
        "/call echo {not json",
        '/call echo {"text": 5}',
        "/call teleport {}",
        '/call explode {"reason": "x"}',
        "/call huge {}",
    ]
    async with (
        Emulator() as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-bad-input-0000") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o")
        orch = Orchestrator(client, tool_registry(), policy=RunPolicy(max_output_chars=1000))
        with capture_logs() as logs:
            result = await orch.create_thread_and_run(
                assistant.id, messages=[{"role": "user", "content": "\n".join(lines)}]
            )
    assert result.status == "completed"
    calls = result.tool_calls
    assert [c.error_type for c in calls] == [
        "invalid_json",
        "invalid_arguments",
        "unknown_tool",
        "tool_exception",
        None,
    ]
    details = json.loads(calls[1].output)["error"]["details"]
    assert details[0]["loc"] == "text"
    assert "available tools: echo, explode, huge" in calls[2].output
    assert "RuntimeError: boom: x" in calls[3].output
    assert len(calls[4].output) == 1000 and calls[4].output.endswith("chars]")
    assert "…[truncated 99" in calls[4].output
    assert all(c.output in result.text for c in calls)  # the model read every output
    failing = [e for e in logs if e["event"] == "tool.finished" and e["log_level"] == "warning"]
    assert [e["tool"] for e in failing] == ["explode"]  # only the exception logs a traceback


async def test_expired_run_is_a_result_and_raise_for_status_raises() -> None:
    """Row "expired run": RunResult(status="expired"); raise_on_failure gives RunFailedError."""
    reg = ToolRegistry()

    @reg.tool
    async def stuck() -> str:
        """Never finishes in time."""
        import asyncio

        await asyncio.sleep(30)
        return "late"

    async with (
        Emulator(run_ttl_s=1.0) as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-bad-input-0000") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o")
        policy = RunPolicy(expiry_margin_s=-1.0, poll_interval_s=0.05)
        with pytest.raises(RunFailedError) as info:
            await Orchestrator(client, reg, policy=policy).create_thread_and_run(
                assistant.id,
                messages=[{"role": "user", "content": "/call stuck {}"}],
                raise_on_failure=True,
            )
    assert info.value.status == "expired"
    assert info.value.result.status == "expired"


async def test_http_error_rows() -> None:
    """Rows "4xx", "5xx", "authentication failure": typed errors; only 5xx is retried."""
    async with Emulator(api_key="sk-right-key-000000") as emu:
        async with AssistantsClient(base_url=emu.base_url, api_key="sk-wrong-key-000000") as bad:
            with pytest.raises(AuthenticationError) as auth:
                await bad.create_assistant(model="gpt-4o")
            assert (auth.value.status, bad.retries) == (401, 0)
            assert "Incorrect API key" in str(auth.value)
        async with AssistantsClient(base_url=emu.base_url, api_key="sk-right-key-000000") as c:
            with pytest.raises(NotFoundError) as missing:
                await c.retrieve_thread("thread_nope")
            assert (missing.value.status, c.retries) == (404, 0)
            assert missing.value.request_id
            emu.inject("503", method="GET", times=2, retry_after_ms=1)
            thread = await c.create_thread()
            assert (await c.retrieve_thread(thread.id)).id == thread.id
            assert c.retries == 2
            emu.inject("500", method="GET", times=10)
            with pytest.raises(ServerError) as server:
                await c.retrieve_thread(thread.id)
            assert server.value.status == 500
            assert c.retries == 2 + c.retry.max_attempts - 1


async def test_a_run_stuck_in_progress_past_expires_at_is_given_up(serve: Any) -> None:
    """Row "run never ends": a run still in_progress past expires_at plus the grace is no
    longer polled forever: the cancel is tried once (refused here: 404) and the result is
    expired with the reason, after a bounded number of requests."""
    stuck = run_as("in_progress", expires_at=int(time.time()) - 120)
    url = await serve(fake_server(HEAD, stuck))
    policy = replace(FAST, expiry_grace_s=1.0)
    async with AssistantsClient(base_url=url + "/v1", api_key="sk-bad-input-0000") as c:
        started = time.monotonic()
        result = await asyncio.wait_for(
            Orchestrator(c, ToolRegistry(), policy=policy).run("thread_1", "asst_1"), 10
        )
    assert time.monotonic() - started < 5
    assert result.status == "expired"
    assert result.reason is not None and "expires_at" in result.reason
