"""The two timed checks issue 3 asks for (generous bounds): concurrency without loop stalls."""

import asyncio
import time

from tools import ToolCall, ToolDispatcher, ToolRegistry

registry = ToolRegistry()


@registry.tool
def blocking_sleep(seconds: float) -> str:
    """Sleep in a worker thread (blocking)."""
    time.sleep(seconds)
    return "done"


@registry.tool
async def async_sleep(seconds: float) -> str:
    """Sleep on the event loop."""
    await asyncio.sleep(seconds)
    return "done"


async def test_eight_sync_tools_run_in_parallel_without_stalling_loop() -> None:
    """8 sync tools sleeping 0.5 s finish in about 0.5 s; a heartbeat never stalls > 0.1 s."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    calls = [ToolCall(f"c{i}", "blocking_sleep", '{"seconds": 0.5}') for i in range(8)]
    start = time.monotonic()
    results = await ToolDispatcher(registry).run_batch(calls)
    elapsed = time.monotonic() - start
    stop.set()
    await beat
    assert [r.output for r in results] == ["done"] * 8
    assert 0.5 <= elapsed < 1.2
    assert len(gaps) > 10
    assert max(gaps) < 0.1


async def test_hundred_async_calls_take_about_one_call() -> None:
    """100 async calls of a 50 ms tool finish in about 50 ms plus overhead."""
    calls = [ToolCall(f"c{i}", "async_sleep", '{"seconds": 0.05}') for i in range(100)]
    dispatcher = ToolDispatcher(registry, max_concurrency=100)
    start = time.monotonic()
    results = await dispatcher.run_batch(calls)
    elapsed = time.monotonic() - start
    assert all(not r.is_error for r in results)
    assert 0.05 <= elapsed < 0.5
