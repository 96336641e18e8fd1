"""Retries over a loopback server: which failures are retried, how long we wait, how often."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog
from aiohttp import web

from runtime import AssistantsClient, RetryPolicy
from runtime.errors import (
    BadRequestError,
    ConnectError,
    NotFoundError,
    RateLimitError,
    RequestTimeout,
    ServerError,
    StreamInterrupted,
)
from runtime.retry import parse_retry_after

ServeApp = Callable[[web.Application], Awaitable[str]]
Handler = Callable[[web.Request, int], Awaitable[web.StreamResponse]]
RUN = {"id": "run_1", "thread_id": "thread_1", "status": "queued"}


class Scripted:
    """A server whose every route answers through ``script(request, attempt)``; counts attempts."""

    def __init__(self, script: Handler) -> None:
        self.script = script
        self.times: list[float] = []

    @property
    def attempts(self) -> int:
        """How many requests arrived."""
        return len(self.times)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Time-stamp the request and let the script answer it."""
        self.times.append(time.monotonic())
        await request.read()
        return await self.script(request, self.attempts)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def error(status: int, headers: dict[str, str] | None = None) -> web.Response:
    """An API error answer."""
    body = {"error": {"message": f"status {status}", "type": "x", "code": None}}
    return web.json_response(body, status=status, headers=headers or {})


def ok() -> web.Response:
    """A successful run answer."""
    return web.json_response(RUN)


async def reset(request: web.Request) -> web.Response:
    """Drop the connection without answering."""
    assert request.transport is not None
    request.transport.close()
    raise ConnectionResetError("test reset")


def fail_first(n: int, failure: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Handler:
    """A script failing the first ``n`` attempts with ``failure``, then answering ok."""

    async def script(request: web.Request, attempt: int) -> web.StreamResponse:
        return await failure(request) if attempt <= n else ok()

    return script


def status(
    code: int, headers: dict[str, str] | None = None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A failure answering ``code``."""

    async def answer(request: web.Request) -> web.Response:
        return error(code, headers)

    return answer


async def client_for(serve: ServeApp, server: Scripted, **kwargs: Any) -> AssistantsClient:
    """A client of ``server`` with fast, bounded retries unless overridden."""
    kwargs.setdefault("retry", RetryPolicy(max_attempts=3, initial_wait_s=0.01, jitter_s=0.01))
    return AssistantsClient(
        base_url=await serve(server.app()) + "/v1", api_key="sk-retrytest-123456789", **kwargs
    )


async def test_429_waits_at_least_retry_after_ms(serve: ServeApp) -> None:
    """A 429 with retry-after-ms: 200 delays the next attempt by at least 0.2 s (measured)."""
    server = Scripted(fail_first(1, status(429, {"retry-after-ms": "200"})))
    async with await client_for(serve, server) as client:
        run = await client.retrieve_run("thread_1", "run_1")
    assert run.id == "run_1" and server.attempts == 2 and client.retries == 1
    assert server.times[1] - server.times[0] >= 0.2


async def test_503_then_200(serve: ServeApp, no_retry_waits: None) -> None:
    """A 503 is retried and the second answer returned."""
    server = Scripted(fail_first(1, status(503)))
    async with await client_for(serve, server) as client:
        assert (await client.retrieve_run("thread_1", "run_1")).id == "run_1"
    assert server.attempts == 2


@pytest.mark.parametrize("code", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses_on_get(serve: ServeApp, no_retry_waits: None, code: int) -> None:
    """408, 409, 429 and 5xx are retried for an idempotent GET."""
    server = Scripted(fail_first(2, status(code)))
    async with await client_for(serve, server) as client:
        await client.retrieve_run("thread_1", "run_1")
    assert server.attempts == 3


@pytest.mark.parametrize(("code", "cls"), [(400, BadRequestError), (404, NotFoundError)])
async def test_other_4xx_are_final(
    serve: ServeApp, no_retry_waits: None, code: int, cls: type
) -> None:
    """400 and 404 are not retried."""
    server = Scripted(fail_first(5, status(code)))
    async with await client_for(serve, server) as client:
        with pytest.raises(cls):
            await client.retrieve_run("thread_1", "run_1")
    assert server.attempts == 1


async def test_attempts_are_bounded(serve: ServeApp, no_retry_waits: None) -> None:
    """A server that always answers 503 sees exactly max_attempts requests, then ServerError."""
    server = Scripted(fail_first(100, status(503)))
    async with await client_for(serve, server, retry=RetryPolicy(max_attempts=4)) as client:
        with pytest.raises(ServerError):
            await client.retrieve_run("thread_1", "run_1")
    assert server.attempts == 4 and client.retries == 3


async def test_reset_connection_retried_for_get(serve: ServeApp, no_retry_waits: None) -> None:
    """A connection reset before the answer is retried for a GET."""
    server = Scripted(fail_first(1, reset))
    async with await client_for(serve, server) as client:
        assert (await client.retrieve_run("thread_1", "run_1")).id == "run_1"
    assert server.attempts == 2


async def test_reset_connection_not_retried_for_create_run(
    serve: ServeApp, no_retry_waits: None
) -> None:
    """create_run is not idempotent: a reset after sending is raised, never re-sent."""
    server = Scripted(fail_first(1, reset))
    async with await client_for(serve, server) as client:
        with pytest.raises(ConnectError):
            await client.create_run("thread_1", "asst_1")
    assert server.attempts == 1


@pytest.mark.parametrize("code", [500, 503, 409])
async def test_non_idempotent_not_retried_on_5xx(
    serve: ServeApp, no_retry_waits: None, code: int
) -> None:
    """Submitting tool outputs after a 5xx/409 is not repeated (the server may have acted)."""
    server = Scripted(fail_first(1, status(code)))
    async with await client_for(serve, server) as client:
        with pytest.raises(Exception) as info:
            await client.submit_tool_outputs(
                "thread_1", "run_1", [{"tool_call_id": "c", "output": "1"}]
            )
    assert getattr(info.value, "status", None) == code
    assert server.attempts == 1


async def test_non_idempotent_retried_on_429(serve: ServeApp, no_retry_waits: None) -> None:
    """create_message and create_thread are retried after a 429 (the server did not act)."""
    server = Scripted(fail_first(1, status(429)))
    async with await client_for(serve, server) as client:
        await client.create_message("thread_1", content="hi")
    assert server.attempts == 2


async def test_could_not_connect_retried_even_for_post(no_retry_waits: None) -> None:
    """A refused connection is retried for create_run too, up to max_attempts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    retry = RetryPolicy(max_attempts=3)
    async with AssistantsClient(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x1234567890", retry=retry
    ) as client:
        with pytest.raises(ConnectError) as info:
            await client.create_run("thread_1", "asst_1")
    assert "could not connect" in info.value.message
    assert client.retries == 2


async def test_timeout_is_retried_then_raised(serve: ServeApp, no_retry_waits: None) -> None:
    """A GET slower than timeout_s raises RequestTimeout after every attempt timed out."""

    async def slow(request: web.Request, attempt: int) -> web.Response:
        await asyncio.sleep(2)
        return ok()

    server = Scripted(slow)
    retry = RetryPolicy(max_attempts=2)
    async with await client_for(serve, server, retry=retry, timeout_s=0.2) as client:
        with pytest.raises(RequestTimeout):
            await client.retrieve_run("thread_1", "run_1")
    assert server.attempts == 2


def sse_body(*names: str) -> bytes:
    """A small run stream."""
    out = b""
    for name in names:
        status_ = name.rsplit(".", 1)[1]
        out += f"event: {name}\ndata: {json.dumps({**RUN, 'status': status_})}\n\n".encode()
    return out + b"event: done\ndata: [DONE]\n\n"


async def stream_ok(request: web.Request) -> web.StreamResponse:
    """A complete run stream."""
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(sse_body("thread.run.created", "thread.run.completed"))
    await response.write_eof()
    return response


async def test_stream_retried_before_first_byte_on_429(
    serve: ServeApp, no_retry_waits: None
) -> None:
    """A streamed create_run answered 429 is retried, then streams to completion."""

    async def script(request: web.Request, attempt: int) -> web.StreamResponse:
        return error(429) if attempt == 1 else await stream_ok(request)

    server = Scripted(script)
    async with await client_for(serve, server) as client:
        stream = await client.create_run("thread_1", "asst_1", stream=True)
        await stream.until_done()
    assert server.attempts == 2 and stream.run is not None and stream.run.status == "completed"


async def test_stream_not_retried_after_first_byte(serve: ServeApp, no_retry_waits: None) -> None:
    """A stream cut after its first bytes raises StreamInterrupted; nothing is re-sent."""

    async def cut(request: web.Request, attempt: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(sse_body("thread.run.created")[:-30])
        assert request.transport is not None
        request.transport.close()
        return response

    server = Scripted(cut)
    async with await client_for(serve, server) as client:
        stream = await client.create_run("thread_1", "asst_1", stream=True)
        with pytest.raises(StreamInterrupted) as info:
            await stream.until_done()
    assert info.value.reason in ("connection", "eof")
    assert server.attempts == 1


async def test_stream_idle_timeout(serve: ServeApp, no_retry_waits: None) -> None:
    """A stream silent for longer than stream_idle_timeout_s ends as StreamInterrupted."""

    async def silent(request: web.Request, attempt: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'event: thread.run.created\ndata: {"id": "run_1"}\n\n')
        await asyncio.sleep(3)
        return response

    server = Scripted(silent)
    async with await client_for(serve, server, stream_idle_timeout_s=0.2) as client:
        stream = await client.create_run("thread_1", "asst_1", stream=True)
        with pytest.raises(StreamInterrupted) as info:
            await stream.until_done()
    assert info.value.reason == "idle_timeout" and info.value.run_id == "run_1"


async def test_set_testing_turns_waits_off(serve: ServeApp, no_retry_waits: None) -> None:
    """With set_testing(True) a retry-after of 30 s is logged but not waited for."""
    server = Scripted(fail_first(1, status(503, {"retry-after": "30"})))
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        async with await client_for(serve, server) as client:
            await client.retrieve_run("thread_1", "run_1")
    assert time.monotonic() - started < 10
    (scheduled,) = [e for e in logs if e["event"] == "runtime.retry_scheduled"]
    assert scheduled["wait_s"] == 30.0 and scheduled["status"] == 503 and scheduled["attempt"] == 1


def test_backoff_is_exponential_with_bounded_jitter() -> None:
    """Backoff doubles per attempt, is capped at max_wait_s, and adds at most jitter_s."""
    policy = RetryPolicy(initial_wait_s=0.5, max_wait_s=4.0, jitter_s=0.25)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)]:
        waits = [policy.backoff_s(attempt) for _ in range(200)]
        assert all(base <= w <= base + 0.25 for w in waits)
        assert len(set(waits)) > 1  # jitter really varies


def test_wait_prefers_sane_server_hint() -> None:
    """The server's retry-after wins when sane; an absurd one falls back to backoff."""
    policy = RetryPolicy(initial_wait_s=1.0, jitter_s=0.0, max_retry_after_s=60)
    hinted = RateLimitError("x", status=429, retry_after_s=2.5)
    absurd = RateLimitError("x", status=429, retry_after_s=3600)
    assert policy.wait_s(1, hinted) == 2.5
    assert policy.wait_s(1, absurd) == 1.0
    assert RetryPolicy(respect_retry_after=False, jitter_s=0).wait_s(2, hinted) == 1.0


def test_parse_retry_after_forms() -> None:
    """retry-after-ms is preferred; retry-after takes seconds or an HTTP date; junk is None."""
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    value = parse_retry_after({"retry-after": future})
    assert value is not None and 100 < value <= 121
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


async def test_connect_timeout_is_could_not_connect(no_retry_waits: None) -> None:
    """A connect timeout (a listener that never accepts) is ConnectError, retried even for POST."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(3):  # fill the accept queue so that further SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.05)
        try:
            async with AssistantsClient(
                base_url=f"http://127.0.0.1:{port}/v1",
                api_key="sk-x1234567890",
                connect_timeout_s=0.2,
                retry=RetryPolicy(max_attempts=2),
            ) as client:
                with pytest.raises(ConnectError) as info:
                    await client.create_run("thread_1", "asst_1")
        finally:
            for filler in fillers:
                filler.close()
    assert "could not connect" in info.value.message
    assert client.retries == 1


async def test_successful_call_leaves_no_cyclic_garbage(serve: ServeApp) -> None:
    """A request that succeeds at once leaves nothing for the cyclic GC (it would pause the loop
    for every thousand such requests in flight)."""
    server = Scripted(fail_first(0, status(503)))
    async with await client_for(serve, server) as client:
        await client.retrieve_run("thread_1", "run_1")  # warm: connection, caches
        gc.collect()
        gc.disable()
        try:
            for _ in range(5):
                await client.retrieve_run("thread_1", "run_1")
            found = gc.collect()
        finally:
            gc.enable()
    assert found == 0


async def test_retries_after_the_first_attempt_are_numbered_on(
    serve: ServeApp, no_retry_waits: None
) -> None:
    """Three 503s then 200: attempts 1, 2 and 3 are logged as scheduled retries, in order."""
    server = Scripted(fail_first(3, status(503)))
    with structlog.testing.capture_logs() as logs:
        async with await client_for(serve, server, retry=RetryPolicy(max_attempts=4)) as client:
            await client.retrieve_run("thread_1", "run_1")
    scheduled = [e["attempt"] for e in logs if e["event"] == "runtime.retry_scheduled"]
    assert scheduled == [1, 2, 3] and server.attempts == 4 and client.retries == 3
