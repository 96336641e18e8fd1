"""Shared, generic fixtures for the whole test suite (keep this file small)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import runtime.retry
from runtime import fairness

REPO_ROOT = Path(__file__).resolve().parents[1]

ServeApp = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
def reference_dir() -> Path:
    """The protocol ground truth, copied into the repository: recorded streams and references."""
    return REPO_ROOT / "tests" / "data" / "reference"


@pytest.fixture
def no_retry_waits() -> Iterator[None]:
    """Turn retry waits off for one test (attempts still happen), then back on."""
    runtime.retry.set_testing(True)
    try:
        yield
    finally:
        runtime.retry.set_testing(False)


@pytest.fixture
async def serve() -> AsyncIterator[ServeApp]:
    """Start aiohttp apps on ephemeral loopback ports; ``await serve(app)`` returns its root URL.

    Every server is closed when the test ends.
    """
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    try:
        yield start
    finally:
        for server in servers:
            await server.close()


@pytest.fixture
def steps_of_a_bystander() -> Callable[[Awaitable[object]], Awaitable[int]]:
    """``await steps_of_a_bystander(work)``: how many times another task ran while ``work``
    was awaited (0 when ``work`` held the loop from start to end)."""

    async def count(work: Awaitable[object]) -> int:
        steps = 0
        done = asyncio.Event()

        async def bystander() -> None:
            nonlocal steps
            while not done.is_set():
                steps += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(bystander())
        await asyncio.sleep(0)
        start = steps
        try:
            await work
        finally:
            done.set()
            await task
        return steps - start

    return count


@pytest.fixture
def no_slice() -> Iterator[None]:
    """Runs wait for a turn (``runtime.fairness``) whenever another already had one in this
    pass of the loop: taking turns shown without depending on how fast the machine is."""
    fairness.set_slice(0)
    yield
    fairness.set_slice(fairness.DEFAULT_SLICE_S)
