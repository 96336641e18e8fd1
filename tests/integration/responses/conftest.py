"""Fixtures for the Responses tests: an emulator, a ResponsesClient on it, and tools."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

import runtime.retry
from runtime.emulator import Emulator
from runtime.responses import ResponsesClient
from tools import ToolContext, ToolRegistry

API_KEY = "sk-test-responses"


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    runtime.retry.set_testing(True)
    try:
        yield
    finally:
        runtime.retry.set_testing(False)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(seed=7) as emulator:
        yield emulator


@pytest.fixture
async def rc(emu: Emulator) -> AsyncIterator[ResponsesClient]:
    async with ResponsesClient(base_url=emu.base_url, api_key=API_KEY) as client:
        yield client


class Probe:
    """Counts tool executions and the peak number running at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.calls: list[str] = []
        self.cancelled: list[str] = []


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def registry(probe: Probe) -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        probe.calls.append("add")
        return a + b

    @reg.tool
    async def slow(seconds: float, ctx: ToolContext) -> str:
        """Sleep, then say how long. seconds: time to sleep."""
        probe.calls.append("slow")
        probe.running += 1
        probe.peak = max(probe.peak, probe.running)
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            probe.cancelled.append(ctx.tool_call_id)
            raise
        finally:
            probe.running -= 1
        return f"slept {seconds}"

    return reg
