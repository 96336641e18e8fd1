"""Admission to the process-wide and per-batch limits: a waiting call is a queue entry, no task."""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tools import ToolCall, ToolDispatcher, ToolRegistry
from tools.dispatch import DEFAULT_PROCESS_LIMIT, set_process_limit
from tools.limits import process_limiter


@pytest.fixture
async def limit_of() -> AsyncIterator[type[None]]:
    """Restores the process-wide limit whatever the test set."""
    yield type(None)
    set_process_limit(DEFAULT_PROCESS_LIMIT)


class Gate:
    """A tool that records the calls it starts and holds them until opened."""

    def __init__(self) -> None:
        self.registry = ToolRegistry()
        self.started: list[str] = []
        self.opened = asyncio.Event()
        gate = self

        @self.registry.tool
        async def hold(tag: str) -> str:
            """Wait for the gate."""
            gate.started.append(tag)
            await gate.opened.wait()
            return tag

    async def until_started(self, count: int) -> None:
        for _ in range(1000):
            if len(self.started) >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"only {len(self.started)} calls started")


def calls(prefix: str, count: int) -> list[ToolCall]:
    return [ToolCall(f"{prefix}{i}", "hold", f'{{"tag": "{prefix}{i}"}}') for i in range(count)]


async def settle_loop() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_calls_waiting_for_the_process_limit_hold_no_tasks(limit_of: object) -> None:
    """1,000 calls behind a process limit of 4: only the 4 admitted ones have a task."""
    gate = Gate()
    set_process_limit(4)
    before = len(asyncio.all_tasks())
    batch = asyncio.create_task(
        ToolDispatcher(gate.registry, max_concurrency=1000).run_batch(calls("c", 1000))
    )
    await gate.until_started(4)
    await settle_loop()
    alive = len(asyncio.all_tasks()) - before
    assert len(gate.started) == 4
    assert process_limiter.waiting == 996
    assert alive <= 4 + 1  # the 4 calls and the batch itself
    gate.opened.set()
    results = await batch
    assert [r.output for r in results] == [f"c{i}" for i in range(1000)]
    assert process_limiter.active == 0 and process_limiter.waiting == 0


async def test_calls_waiting_for_the_batch_limit_hold_no_tasks() -> None:
    """500 calls of a batch limited to 3 at once: 3 tasks, the rest queued without one."""
    gate = Gate()
    before = len(asyncio.all_tasks())
    batch = asyncio.create_task(
        ToolDispatcher(gate.registry, max_concurrency=3).run_batch(calls("b", 500))
    )
    await gate.until_started(3)
    await settle_loop()
    assert len(gate.started) == 3
    assert len(asyncio.all_tasks()) - before <= 3 + 1
    gate.opened.set()
    results = await batch
    assert [r.output for r in results] == [f"b{i}" for i in range(500)]
    assert sorted(gate.started) == sorted(f"b{i}" for i in range(500))


async def test_admission_is_fifo_across_batches(limit_of: object) -> None:
    """With one process slot, calls of three batches start in the order they were queued."""
    gate = Gate()
    set_process_limit(1)
    first = asyncio.create_task(ToolDispatcher(gate.registry).run_batch(calls("a", 3)))
    await gate.until_started(1)
    second = asyncio.create_task(ToolDispatcher(gate.registry).run_batch(calls("b", 3)))
    await settle_loop()
    third = asyncio.create_task(ToolDispatcher(gate.registry).run_batch(calls("c", 2)))
    await settle_loop()
    gate.opened.set()
    await asyncio.gather(first, second, third)
    assert gate.started == ["a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1"]


async def test_cancelled_batch_frees_its_queue_entries_and_its_calls_never_start(
    limit_of: object,
) -> None:
    """Cancelling a batch whose calls wait for a slot leaves the queue at once; they never run."""
    gate = Gate()
    set_process_limit(1)
    holder = asyncio.create_task(ToolDispatcher(gate.registry).run_batch(calls("h", 1)))
    await gate.until_started(1)
    dispatcher = ToolDispatcher(gate.registry, max_concurrency=100)
    waiting = asyncio.create_task(dispatcher.run_batch(calls("w", 50)))
    later = asyncio.create_task(ToolDispatcher(gate.registry).run_batch(calls("l", 2)))
    await settle_loop()
    assert process_limiter.waiting == 52
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert process_limiter.waiting == 2  # only the other batch's calls are left
    assert dispatcher.in_flight == 0
    cancelled = dispatcher.cached("w0")
    assert cancelled is not None and cancelled.error_type == "cancelled"
    gate.opened.set()
    await asyncio.gather(holder, later)
    assert gate.started == ["h0", "l0", "l1"]
    assert process_limiter.active == 0 and process_limiter.waiting == 0


async def test_cancelled_batch_keeps_other_batches_calls(limit_of: object) -> None:
    """A batch cancelled while its calls wait for a batch slot cancels only its own calls."""
    gate = Gate()
    set_process_limit(2)
    mine = asyncio.create_task(
        ToolDispatcher(gate.registry, max_concurrency=1).run_batch(calls("m", 5))
    )
    other = asyncio.create_task(ToolDispatcher(gate.registry).run_batch(calls("o", 3)))
    await gate.until_started(2)
    mine.cancel()
    with pytest.raises(asyncio.CancelledError):
        await mine
    gate.opened.set()
    results = await other
    assert [r.output for r in results] == ["o0", "o1", "o2"]
    assert [tag for tag in gate.started if tag.startswith("m")] == ["m0"]
    assert process_limiter.active == 0


async def test_batch_deadline_ends_calls_still_waiting_for_a_slot(limit_of: object) -> None:
    """Calls queued past the batch deadline time out at it, without waiting for a slot."""
    gate = Gate()
    set_process_limit(1)
    holder = asyncio.create_task(ToolDispatcher(gate.registry).run_batch(calls("h", 1)))
    await gate.until_started(1)
    finished: list[str] = []

    async def on_finish(result: object) -> None:
        finished.append(getattr(result, "tool_call_id", ""))

    started = time.monotonic()
    results = await ToolDispatcher(gate.registry).run_batch(
        calls("q", 3), deadline=started + 0.05, on_finish=on_finish
    )
    assert time.monotonic() - started < 5  # the holder never lets go before the gate opens
    assert [r.error_type for r in results] == ["timeout"] * 3
    assert "waited for a slot" in results[0].output
    assert sorted(finished) == ["q0", "q1", "q2"]
    assert process_limiter.waiting == 0
    gate.opened.set()
    await holder
    assert gate.started == ["h0"]
    assert process_limiter.active == 0


async def test_batch_sharing_a_queued_call_gets_its_result(limit_of: object) -> None:
    """A second batch asking for a call another batch queued waits for it; it runs once."""
    gate = Gate()
    set_process_limit(1)
    dispatcher = ToolDispatcher(gate.registry)
    holder = asyncio.create_task(ToolDispatcher(gate.registry).run_batch(calls("h", 1)))
    await gate.until_started(1)
    first = asyncio.create_task(dispatcher.run_batch(calls("s", 2)))
    await settle_loop()
    second = asyncio.create_task(dispatcher.run_batch(calls("s", 2)[1:]))
    await settle_loop()
    gate.opened.set()
    one, two, _ = await asyncio.gather(first, second, holder)
    assert [r.output for r in one] == ["s0", "s1"]
    assert [r.output for r in two] == ["s1"]
    assert gate.started.count("s1") == 1


async def test_invalid_calls_do_not_wait_for_a_slot(limit_of: object) -> None:
    """Unknown tools and bad arguments fail at once even when every slot is taken."""
    gate = Gate()
    set_process_limit(1)
    holder = asyncio.create_task(ToolDispatcher(gate.registry).run_batch(calls("h", 1)))
    await gate.until_started(1)
    bad = [ToolCall("u", "nope", "{}"), ToolCall("v", "hold", '{"tag": 1}')]
    results = await asyncio.wait_for(ToolDispatcher(gate.registry).run_batch(bad), 5)
    assert [r.error_type for r in results] == ["unknown_tool", "invalid_arguments"]
    gate.opened.set()
    await holder


async def test_aclose_withdraws_queued_calls(limit_of: object) -> None:
    """aclose() settles calls still queued for a slot as cancelled, and they never start."""
    gate = Gate()
    set_process_limit(1)
    holder = asyncio.create_task(ToolDispatcher(gate.registry).run_batch(calls("h", 1)))
    await gate.until_started(1)
    dispatcher = ToolDispatcher(gate.registry)
    batch = asyncio.create_task(dispatcher.run_batch(calls("z", 3)))
    await settle_loop()
    await dispatcher.aclose()
    assert process_limiter.waiting == 0
    results = await batch
    assert [r.error_type for r in results] == ["cancelled"] * 3
    gate.opened.set()
    await holder
    assert gate.started == ["h0"]
