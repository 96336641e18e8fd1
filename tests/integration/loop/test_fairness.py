"""Many runs on one loop take turns (runtime.fairness), on both protocols."""

from __future__ import annotations

import asyncio
import gc

from runtime import fairness

from .conftest import Driver, call, lines


async def test_runs_launched_at_once_take_turns_and_all_finish(
    driver: Driver, no_slice: None
) -> None:
    """Thirty runs launched at once, each with a tool round, wait in line for their turns
    (starting, sending, parsing) and every one completes with its own answer."""
    line = fairness.share()
    waited = line.waited
    results = await asyncio.gather(*(driver.run(call("add", a=i, b=1)) for i in range(30)))
    assert [r.text for r in results] == [f"add returned: {i + 1}" for i in range(30)]
    assert all(r.ok and r.rounds == 1 for r in results)
    assert line.waited - waited >= 30 and line.waiting == 0


async def test_a_run_cancelled_in_line_sends_nothing(driver: Driver, no_slice: None) -> None:
    """A run cancelled while it waits for its first turn has sent no request: the server
    created no turn and holds nothing to cancel."""
    line = fairness.share()
    assert line.turn() is None  # someone else's turn: the next run waits
    task = asyncio.create_task(driver.run("hello"))
    await asyncio.sleep(0)
    assert line.waiting == 1
    task.cancel()
    results = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert driver.start_requests() == 0 and driver.turns_created() == 0
    assert (await driver.run("after")).text == "You said: after"  # the line moved on


async def test_a_run_leaves_no_cyclic_garbage(driver: Driver) -> None:
    """A run with a tool round, one call of which raises, frees everything it made by
    reference counting: the cyclic collector finds nothing after it (so an application
    with many runs in flight may run the collector's full passes rarely: runtime.fairness)."""
    await driver.run(call("add", a=0, b=0))  # first-use caches, pools, the emulator's own
    gc.collect()
    gc.disable()
    try:
        result = await driver.run(lines(call("explode", reason="boom"), call("add", a=3, b=4)))
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = [type(o).__qualname__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert result.ok and "add returned: 7" in result.text
    assert result.tool_calls[0].is_error
    assert garbage == []
