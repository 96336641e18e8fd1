"""Sync tools stuck past their timeout: abandoned threads are replaced (up to a cap), a call
that gets no thread says so (``pool_exhausted``, logged), and the pool keeps serving."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from tools import ToolCall, ToolCallResult, ToolDispatcher, ToolRegistry
from tools.limits import (
    DEFAULT_MAX_ABANDONED_THREADS,
    DEFAULT_THREAD_POOL_SIZE,
    PoolStats,
    set_max_abandoned_threads,
    set_thread_pool_size,
    thread_pool,
)

registry = ToolRegistry()
release = threading.Event()


@registry.tool(timeout_s=0.2)
def stuck() -> str:
    """Ignore the cancel flag and block far beyond the timeout."""
    release.wait(30)
    return "released"


@registry.tool(timeout_s=10)
def slow_but_fine() -> str:
    """Hold a thread within its own (long) timeout."""
    release.wait(30)
    return "done"


@registry.tool(timeout_s=0.3)
def quick(x: int) -> int:
    """A normal sync tool."""
    return x + 1


@pytest.fixture
def small_pool() -> Iterator[None]:
    """A fresh pool of 2 threads with 2 replacements; stuck tools are released at the end."""
    release.clear()
    set_thread_pool_size(2)
    set_max_abandoned_threads(2)
    try:
        yield
    finally:
        release.set()
        set_max_abandoned_threads(DEFAULT_MAX_ABANDONED_THREADS)
        set_thread_pool_size(DEFAULT_THREAD_POOL_SIZE)


async def settled() -> PoolStats:
    """The pool's counts once no call is abandoned any more and extra threads left (5 s max)."""
    for _ in range(500):
        stats = thread_pool().stats()
        if stats.abandoned == 0 and stats.threads <= stats.max_workers:
            return stats
        await asyncio.sleep(0.01)
    return stats


def error(result: ToolCallResult) -> dict[str, Any]:
    assert result.is_error, result.output
    body: dict[str, Any] = json.loads(result.output)["error"]
    return body


async def run(dispatcher: ToolDispatcher, *names: str, tag: str) -> list[ToolCallResult]:
    calls = [
        ToolCall(f"{tag}{i}", name, '{"x": 1}' if name == "quick" else "{}")
        for i, name in enumerate(names)
    ]
    return await dispatcher.run_batch(calls)


async def test_stuck_threads_are_replaced_then_calls_fail_fast(small_pool: None) -> None:
    """Timed-out stuck calls give up their thread to a replacement, so a normal sync tool
    still runs; past the cap every thread is stuck and calls fail at once with a logged
    pool_exhausted error; once the stuck calls return, the pool serves again."""
    dispatcher = ToolDispatcher(registry)
    with capture_logs() as logs:
        first = await run(dispatcher, "stuck", "stuck", tag="a")
    assert [r.error_type for r in first] == ["timeout", "timeout"]
    abandoned = [e for e in logs if e["event"] == "tools.thread_abandoned"]
    assert sorted(e["tool_call_id"] for e in abandoned) == ["a0", "a1"]
    assert all(e["log_level"] == "warning" and e["tool"] == "stuck" for e in abandoned)

    (ok,) = await run(dispatcher, "quick", tag="b")
    assert ok.output == "2"  # ran on a replacement thread
    assert thread_pool().stats().abandoned == 2

    second = await run(dispatcher, "stuck", "stuck", tag="c")
    assert [r.error_type for r in second] == ["timeout", "timeout"]
    stats = thread_pool().stats()
    assert (stats.threads, stats.abandoned) == (4, 4)  # 2 workers + 2 replacements, all stuck

    with capture_logs() as logs:
        (refused,) = await run(dispatcher, "quick", tag="d")
    body = error(refused)
    assert refused.error_type == "pool_exhausted" and body["type"] == "pool_exhausted"
    assert body["message"].startswith("no thread can run tool 'quick': all 4 tool threads")
    assert body["message"].endswith("the tool did not run")
    (warning,) = [e for e in logs if e["event"] == "tools.pool_exhausted"]
    assert warning["log_level"] == "warning" and warning["tool"] == "quick"
    assert warning["fail_fast"] is True  # refused at once, not after waiting
    assert (warning["threads"], warning["abandoned"], warning["max_workers"]) == (4, 4, 2)
    assert warning["max_abandoned"] == 2

    release.set()
    await settled()
    (again,) = await run(dispatcher, "quick", tag="e")
    assert again.output == "2"


async def test_call_waiting_past_its_deadline_for_a_thread_is_pool_exhausted(
    small_pool: None,
) -> None:
    """A sync call that cannot get a thread within its timeout reports pool_exhausted, not
    timeout, and is logged with the pool's counts; the busy calls finish normally."""
    set_thread_pool_size(1)

    async def release_after_quick(result: ToolCallResult) -> None:
        if result.name == "quick":
            release.set()

    calls = [ToolCall("f0", "slow_but_fine", "{}"), ToolCall("f1", "quick", '{"x": 1}')]
    with capture_logs() as logs:
        results = await ToolDispatcher(registry).run_batch(calls, on_finish=release_after_quick)
    assert results[1].error_type == "pool_exhausted"
    assert results[0].output == "done"
    body = error(results[1])
    assert (
        "before its deadline" in body["message"] and "1 of 1 tool threads busy" in body["message"]
    )
    (warning,) = [e for e in logs if e["event"] == "tools.pool_exhausted"]
    assert (warning["busy"], warning["threads"], warning["abandoned"]) == (1, 1, 0)


async def test_released_abandoned_threads_leave_a_full_pool() -> None:
    """When stuck calls finally return, replaced threads exit: the pool shrinks back to its
    size and its counts settle."""
    release.clear()
    set_thread_pool_size(2)
    set_max_abandoned_threads(2)
    try:
        dispatcher = ToolDispatcher(registry)
        await run(dispatcher, "stuck", "stuck", tag="g")
        await run(dispatcher, "quick", "quick", tag="h")
        assert thread_pool().stats().threads >= 3  # replacements were started
        release.set()
        stats = await settled()
        assert (stats.threads, stats.busy, stats.abandoned, stats.queued) == (2, 0, 0, 0)
    finally:
        release.set()
        set_max_abandoned_threads(DEFAULT_MAX_ABANDONED_THREADS)
        set_thread_pool_size(DEFAULT_THREAD_POOL_SIZE)
