"""Fixtures for orchestrator tests: a real emulator over loopback HTTP, a client, tools."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from runtime import AssistantsClient, Orchestrator, RunPolicy
from runtime.emulator import Emulator
from runtime.retry import set_testing
from tools import ToolRegistry

FAST_POLICY = RunPolicy(
    poll_interval_s=0.05, max_poll_interval_s=0.2, cancel_wait_s=5.0, busy_wait_s=10.0
)


@dataclass
class ToolCounter:
    """Counts executions per tool call arguments, to prove nothing runs twice."""

    calls: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, key: str) -> None:
        with self.lock:
            self.calls[key] += 1


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture
def counter() -> ToolCounter:
    return ToolCounter()


@pytest.fixture
def registry(counter: ToolCounter) -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool
    async def get_weather(location: str, unit: str = "c") -> str:
        """Current weather in a city.

        Args:
            location: city name.
            unit: c or f.
        """
        counter.hit(f"get_weather:{location}")
        await asyncio.sleep(0.05)
        return f"{location}: 21{unit}"

    @reg.tool
    def slow_sync(seconds: float, label: str = "x") -> str:
        """Sleep in a thread, then answer."""
        counter.hit(f"slow_sync:{label}")
        time.sleep(seconds)
        return f"slept {seconds} ({label})"

    @reg.tool
    async def slow_async(seconds: float, label: str = "x") -> str:
        """Sleep on the loop, then answer."""
        counter.hit(f"slow_async:{label}")
        await asyncio.sleep(seconds)
        return f"waited {seconds} ({label})"

    @reg.tool
    async def explode(reason: str) -> str:
        """Always fails."""
        counter.hit("explode")
        raise RuntimeError(f"boom: {reason}")

    return reg


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(seed=1) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[AssistantsClient]:
    async with AssistantsClient(base_url=emu.base_url, api_key="sk-test-orchestrator-0000") as c:
        yield c


@pytest.fixture
async def assistant_id(client: AssistantsClient, registry: ToolRegistry) -> str:
    assistant = await client.create_assistant(model="gpt-4o", tools=registry.definitions())
    return assistant.id


@pytest.fixture
def orch(client: AssistantsClient, registry: ToolRegistry) -> Orchestrator:
    return Orchestrator(client, registry, policy=FAST_POLICY)
