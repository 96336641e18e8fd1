"""runtime.fairness: runs that ask for turns share the loop with its timers, in order."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from runtime import fairness


def burn(seconds: float) -> None:
    """Hold the loop, as parsing or building a request does."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass


async def test_a_turn_on_a_quiet_loop_is_immediate() -> None:
    """With nobody in line and the slice not used up, a turn is granted without waiting."""
    line = fairness.share()
    assert line.turn() is None
    assert line.turn() is None  # still within the slice
    assert line.waiting == 0


async def test_one_line_per_loop() -> None:
    """The running loop always gets the same line."""
    assert fairness.share() is fairness.share()


async def test_a_timer_runs_between_runs_that_take_turns() -> None:
    """Forty tasks that each hold the loop for 1 ms after asking a turn: a timer due when
    they start runs after the first slice's worth of them, not after all forty."""
    order: list[str] = []

    async def work(i: int) -> None:
        await fairness.wait_turn()
        burn(0.001)
        order.append(f"task {i}")

    asyncio.get_running_loop().call_later(0, order.append, "timer")
    await asyncio.gather(*(work(i) for i in range(40)))
    assert order.index("timer") < 20  # 40 before the timer without turns
    assert [o for o in order if o != "timer"] == [f"task {i}" for i in range(40)]  # in line


async def test_without_turns_the_timer_waits_for_everyone() -> None:
    """The same tasks without asking a turn hold the loop until all are done (the case
    the line is for)."""
    order: list[str] = []

    async def work(i: int) -> None:
        burn(0.001)
        order.append(f"task {i}")

    asyncio.get_running_loop().call_later(0, order.append, "timer")
    await asyncio.gather(*(work(i) for i in range(40)))
    assert order.index("timer") == 40


async def test_a_task_cancelled_in_line_is_skipped(no_slice: None) -> None:
    """A task cancelled while it waits for its turn does not hold up the ones behind it."""
    line = fairness.share()
    assert line.turn() is None
    first, second = line.turn(), line.turn()
    assert first is not None and second is not None and line.waiting == 2
    first.cancel()
    await asyncio.wait_for(second, timeout=5)
    assert line.waiting == 0


async def test_the_line_lets_more_through_a_pass_while_passes_are_short() -> None:
    """Waiting tasks are let through a few per pass of the loop, more each pass while the
    passes stay short, so a long line empties in a few passes, not one per task."""
    line = fairness.share()
    assert line.turn() is None
    burn(fairness.DEFAULT_SLICE_S * 1.2)  # the slice is used up: the next ones wait
    waiters = [line.turn() for _ in range(500)]
    assert all(w is not None for w in waiters) and line.waiting == 500
    passes = 0
    stop = False

    async def count_passes() -> None:
        nonlocal passes
        while not stop:
            passes += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_passes())
    await asyncio.sleep(0)
    await asyncio.gather(*(w for w in waiters if w is not None))
    stop = True
    await counter
    assert passes < 50  # one task a pass would take 500
    assert line.waiting == 0


def test_the_slice_is_not_negative() -> None:
    """A negative or NaN slice is refused with a clear error."""
    with pytest.raises(ValueError, match="slice"):
        fairness.set_slice(-1)
    with pytest.raises(ValueError, match="slice"):
        fairness.set_slice(float("nan"))


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """Put the collector back as it was: thresholds, and nothing frozen."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_collector_freezes_start_up_and_spaces_full_passes(collector_restored: None) -> None:
    """After the call what start-up made is frozen, full passes wait for 1000 middle ones
    (young and middle thresholds kept), and an object made afterwards is still collected
    by a young pass."""
    young, middle, _ = gc.get_threshold()
    start_up = [{"i": i} for i in range(1000)]
    frozen = fairness.tune_collector()
    assert frozen == gc.get_freeze_count() >= len(start_up)
    assert gc.get_threshold() == (young, middle, 1000)
    assert _a_new_cycle_is_freed_by(generation=0)


def test_tune_collector_refuses_a_zero_spacing(collector_restored: None) -> None:
    """full_every below 1 is a ValueError, and the collector is left as it was."""
    before = gc.get_threshold()
    with pytest.raises(ValueError, match="full_every"):
        fairness.tune_collector(0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_tune_collector_sets_the_middle_threshold_when_asked(collector_restored: None) -> None:
    """middle_every replaces the middle threshold (young kept, full passes spaced); a cycle
    made afterwards is still freed by a middle pass."""
    young, _, _ = gc.get_threshold()
    fairness.tune_collector(middle_every=5)
    assert gc.get_threshold() == (young, 5, 1000)
    assert _a_new_cycle_is_freed_by(generation=1)


def test_tune_collector_refuses_a_zero_middle_threshold(collector_restored: None) -> None:
    """middle_every below 1 is a ValueError, and the collector is left as it was."""
    before = gc.get_threshold()
    with pytest.raises(ValueError, match="middle_every"):
        fairness.tune_collector(middle_every=0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def _a_new_cycle_is_freed_by(generation: int) -> bool:
    """Whether a reference cycle made now is freed by one collection of ``generation``."""

    class Node:
        other: object = None

    cycle = Node()
    cycle.other = cycle
    ref = weakref.ref(cycle)
    del cycle
    gc.collect(generation)
    return ref() is None
