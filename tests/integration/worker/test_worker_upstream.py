"""/readyz of a worker whose model API refuses connections: 503 upstream_unreachable."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from runtime.backends import create_backend
from runtime.emulator import Emulator
from runtime.transport import AiohttpTransport, Request
from runtime.worker import Job, MemoryQueue, Message, Worker
from runtime.worker.app import worker_options
from runtime.worker.http import HealthServer
from runtime.worker.metrics import WorkerMetrics
from runtime.worker.runner import executor_for
from runtime.worker.settings import load_worker_settings
from runtime.worker.upstream import UpstreamTracker
from tools import ToolRegistry


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


async def _readyz(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as resp:
        return resp.status, await resp.json()


@pytest.mark.usefixtures("no_retry_waits")
async def test_readyz_503_while_the_api_refuses_connections() -> None:
    """A job against a closed port: /readyz turns 503 upstream_unreachable while it retries."""
    base_url = f"http://127.0.0.1:{_closed_port()}/v1"
    settings = load_worker_settings(
        None,
        queue={"backend": "memory"},
        api={"base_url": base_url, "api_key": "sk-upstream-test"},
    )
    upstream = UpstreamTracker(AiohttpTransport())
    backend = create_backend(settings.runtime_settings(), ToolRegistry(), transport=upstream)
    queue = MemoryQueue()
    options = worker_options(settings, burst=False)
    worker = Worker(queue, executor_for(backend), options, WorkerMetrics())
    server = HealthServer(worker, port=0, upstream=upstream)
    await server.start()
    status, body = await _readyz(server.url)
    assert status == 200, body  # nothing tried yet
    await queue.submit(Job(id="j1", assistant_id="asst_1", messages=(Message(content="hi"),)))
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(200):
            status, body = await _readyz(server.url)
            if status == 503:
                break
            await asyncio.sleep(0.02)
        assert status == 503 and body["status"] == "upstream_unreachable", body
        assert "could not connect" in str(body["error"])
    finally:
        worker.drain()
        await asyncio.wait_for(task, timeout=30)
        await server.aclose()
        await backend.client.aclose()
        await upstream.aclose()


async def test_tracker_recovers_when_the_api_answers() -> None:
    """Refused connects count up to unreachable; one answer from the server resets it."""
    async with Emulator() as emu:
        port = emu.port
        tracker = UpstreamTracker(AiohttpTransport(), threshold=2)
        try:
            refused = Request("GET", f"http://127.0.0.1:{_closed_port()}/v1/models", {})
            for _ in range(2):
                with pytest.raises(Exception, match="could not connect"):
                    await tracker.send(refused)
            assert tracker.unreachable
            answered = await tracker.send(Request("GET", f"http://127.0.0.1:{port}/v1/x", {}))
            await answered.aclose()
            assert not tracker.unreachable and tracker.failures == 0
        finally:
            await tracker.aclose()
