"""Call timeouts on one shared timer behave as ``asyncio.timeout`` does, call by call."""

from __future__ import annotations

import asyncio
import time

import pytest

from tools.deadlines import CallTimeout, Deadlines


async def _sleep_under(timeout: CallTimeout | None, seconds: float) -> str:
    if timeout is None:
        await asyncio.sleep(seconds)
        return "done"
    with timeout:
        await asyncio.sleep(seconds)
    return "done"


async def test_each_call_expires_at_its_own_deadline() -> None:
    """Three calls on one timer: the two past their deadlines raise TimeoutError (flagged
    expired) when their own deadline passes, the third finishes."""
    deadlines = Deadlines()
    timeouts = [deadlines.timeout(d) for d in (0.05, 0.15, 1.0)]
    started = time.monotonic()
    ended: list[float] = []

    async def call(timeout: CallTimeout | None, seconds: float) -> str:
        try:
            return await _sleep_under(timeout, seconds)
        finally:
            ended.append(time.monotonic() - started)

    results = await asyncio.gather(
        call(timeouts[0], 5.0),
        call(timeouts[1], 5.0),
        call(timeouts[2], 0.01),
        return_exceptions=True,
    )
    assert isinstance(results[0], TimeoutError) and isinstance(results[1], TimeoutError)
    assert results[2] == "done"
    assert [t.expired() for t in timeouts if t is not None] == [True, True, False]
    first, second = sorted(ended)[1:]
    # each at (or after) its own deadline, both long before the 5 s sleeps end
    assert 0.04 <= first < second and 0.14 <= second < 4.0


async def test_a_tools_own_timeout_error_is_not_an_expiry() -> None:
    """A TimeoutError the code raises itself passes through, and expired() stays False."""
    timeout = Deadlines().timeout(5.0)
    assert timeout is not None
    with pytest.raises(TimeoutError, match="my own"), timeout:
        raise TimeoutError("my own")
    assert not timeout.expired()


async def test_an_outer_cancel_stays_a_cancellation() -> None:
    """Cancelling the task from outside is not turned into a TimeoutError."""
    timeout = Deadlines().timeout(5.0)
    task = asyncio.ensure_future(_sleep_under(timeout, 5.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timeout is not None and not timeout.expired()


async def test_a_passed_deadline_expires_at_the_next_step() -> None:
    """A zero or negative delay expires the call at once, as asyncio.timeout(0) does."""
    timeout = Deadlines().timeout(-1.0)
    with pytest.raises(TimeoutError):
        await _sleep_under(timeout, 1.0)
    assert timeout is not None and timeout.expired()


async def test_no_timer_is_left_once_no_call_runs() -> None:
    """After the last call ends the timer is dropped (nothing keeps the calls alive)."""
    deadlines = Deadlines()
    await asyncio.gather(*(_sleep_under(deadlines.timeout(60.0), 0.0) for _ in range(8)))
    assert deadlines._handle is None and not deadlines._heap
    assert deadlines.timeout(None) is None


async def test_a_hold_keeps_one_timer_until_released() -> None:
    """Calls that end one after the other under a hold leave the timer armed (the same
    handle throughout); the release drops it and forgets the calls."""
    deadlines = Deadlines()
    deadlines.hold()
    await _sleep_under(deadlines.timeout(60.0), 0.0)
    handle = deadlines._handle
    assert handle is not None
    await _sleep_under(deadlines.timeout(30.0), 0.0)
    await _sleep_under(deadlines.timeout(90.0), 0.0)
    assert deadlines._handle is not None and not deadlines._handle.cancelled()
    assert handle.cancelled()  # re-armed once, for the earlier deadline
    deadlines.release()
    assert deadlines._handle is None and not deadlines._heap


async def test_a_call_under_a_hold_still_expires() -> None:
    """A hold does not delay expiry: a call past its deadline raises TimeoutError while
    the hold keeps the timer."""
    deadlines = Deadlines()
    deadlines.hold()
    await _sleep_under(deadlines.timeout(60.0), 0.0)
    timeout = deadlines.timeout(0.02)
    with pytest.raises(TimeoutError):
        await _sleep_under(timeout, 1.0)
    assert timeout is not None and timeout.expired()
    deadlines.release()
    assert deadlines._handle is None
