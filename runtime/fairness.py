"""Fair shares of one event loop among many concurrent runs.

asyncio runs every callback that is ready before it looks at its timers again. When a
thousand runs wake at once (a burst of starts, a thousand streams with data, a thousand
tool rounds done), one pass of the loop can take a second, and every timer of the process
waits that long: lease heartbeats, health checks, deadlines, the application's own.

So a run asks for its turn (:func:`turn`) before each stretch of its own CPU work: before it
starts, before each request it sends and before each piece of a stream it parses. While the
loop is not busy the answer is immediate (a clock read). Once the runs have worked for a
slice (:func:`set_slice`, 5 ms by default) since the loop last came round, the next ones
wait in line, first come first served, and are let through a few per pass of the loop (more
while passes stay short, fewer when they run long), so timers and I/O callbacks run between
them. Code that never asks is not slowed down.

What a turn bounds is the work the runs queue between two passes of the loop; a single
stretch between two turns (a tool's own code, a garbage-collector pass) is not cut short.
The longest such stretch with many runs in flight is a full pass of CPython's cyclic
collector: it walks every tracked object of the process (110-160 per run in flight, with
600-850 references among them), about 0.1-0.2 s with a thousand runs on a 2-core
machine. A run leaves no cyclic garbage (all it makes is freed by reference counting, even
when a tool raises), so those passes find nothing to free.

The library never changes the collector's settings by itself: the collector belongs to the
process. An application that embeds the runtime and keeps hundreds of runs in flight may
call :func:`tune_collector` once, after its start-up, and gets no full pass during a burst
of runs; the price is that reference cycles its own code makes after that call may live
longer (until the next full pass), and that what start-up made is never collected as a
cycle. One that keeps a few runs at a time needs nothing. The worker process calls it at
start (``[worker] tune_collector``, on by default).
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections import deque

__all__ = ["LoopShare", "set_slice", "share", "tune_collector", "turn", "wait_turn"]

DEFAULT_SLICE_S = 0.005
_MAX_GRANT = 4096

_slice_s = DEFAULT_SLICE_S


def set_slice(seconds: float) -> None:
    """How long runs may work, all together, before the loop comes round again (seconds,
    >= 0; 0 lets one run through per pass of the loop while any waits)."""
    global _slice_s
    if not seconds >= 0:
        raise ValueError(f"the slice must be >= 0 seconds, not {seconds!r}")
    _slice_s = float(seconds)


def tune_collector(full_every: int = 1000, middle_every: int | None = None) -> int:
    """Make the cyclic collector's full passes rare, for a process with many runs in flight.

    Call it once, after start-up (imports, configuration, tool registries), from the
    application: the library never calls it (an embedding service owns its collector; the
    worker process calls it unless ``[worker] tune_collector = false``). It collects what
    start-up left, freezes the survivors (``gc.freeze()``: no pass walks them again) and lets
    ``full_every`` middle passes go by before a full one (``gc.set_threshold``; CPython's
    default is 10), keeping the young threshold and, unless ``middle_every`` is given, the
    middle one.

    What it buys: with a thousand runs in flight a full pass takes 0.1-0.2 s of CPU in one
    loop callback, twice or more while the runs start; afterwards none comes during such a
    burst, and what stays are young passes (under 10 ms) and middle ones (10-22 ms).

    What it costs: the call itself is one full collection of the start-up heap (a few ms to
    tens of ms, once). Freezing is free, but what is frozen is never collected as a cycle
    again (it is still freed by reference counting). Afterwards a reference cycle that
    outlives a middle pass is freed only at the next full pass, after ``full_every`` middle
    ones instead of 10 (a process making many long-lived cycles holds them longer, so it
    should not use this). Runs themselves make no cyclic garbage. To undo:
    ``gc.unfreeze()`` and ``gc.set_threshold(young, middle, 10)``.

    Args:
        full_every: middle passes between two full ones (>= 1).
        middle_every: young passes between two middle ones (>= 1); None keeps the current
            one (CPython's default is 10). Fewer means shorter, more frequent middle passes.

    Returns:
        The number of objects frozen so far (``gc.get_freeze_count()``).
    """
    if full_every < 1:
        raise ValueError(f"full_every must be >= 1, not {full_every!r}")
    if middle_every is not None and middle_every < 1:
        raise ValueError(f"middle_every must be >= 1, not {middle_every!r}")
    young, middle, _ = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, middle if middle_every is None else middle_every, full_every)
    return gc.get_freeze_count()


class LoopShare:
    """The line of runs waiting for their turn on one event loop.

    A tick runs once per pass of the loop while runs are working: it notes the time, so a
    turn asked for within the slice is granted at once, and lets the first few waiting runs
    through (more when the last pass was short, fewer when it was long)."""

    __slots__ = ("_grant", "_loop", "_mark", "_ticking", "_waiting", "waited")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._mark = 0.0
        self._ticking = False
        self._grant = 1
        self.waited = 0
        """Turns that had to wait, since the loop started (a measure of how busy it was)."""

    @property
    def waiting(self) -> int:
        """Runs in line now."""
        return len(self._waiting)

    def turn(self) -> asyncio.Future[None] | None:
        """None to go on at once; else a future to await, done when this run's turn comes."""
        now = time.monotonic()
        if now - self._mark < _slice_s:
            return None  # also for a run let through this pass that asks again right away
        if not self._ticking:
            # The slice since the loop was last seen coming round is over, but nobody was
            # counting: the loop may just have been idle. Count from now, and tick at the
            # next pass (so a lone run ticks once a slice, not once a turn).
            self._ticking = True
            self._mark = now
            self._loop.call_soon(self._tick)
            return None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiting.append(waiter)
        self.waited += 1
        return waiter

    def _tick(self) -> None:
        now = time.monotonic()
        spent, self._mark = now - self._mark, now
        waiting = self._waiting
        if not waiting:
            self._grant = 1  # a new line starts small: its runs may be heavier
            if spent < _slice_s:
                self._ticking = False  # the loop has room: stop counting until asked again
            else:
                self._loop.call_soon(self._tick)
            return
        self._grant = self._next_grant(spent)
        let_through = 0
        while waiting and let_through < self._grant:
            waiter = waiting.popleft()
            if not waiter.done():  # a run cancelled in line is skipped
                waiter.set_result(None)
                let_through += 1
        self._loop.call_soon(self._tick)

    def _next_grant(self, spent: float) -> int:
        if spent < _slice_s / 2:
            return min(self._grant * 2, _MAX_GRANT)
        if spent > _slice_s:
            return max(1, self._grant // 2)
        return self._grant


_last: tuple[asyncio.AbstractEventLoop, LoopShare] | None = None
_shares: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopShare] = (
    weakref.WeakKeyDictionary()
)


def share() -> LoopShare:
    """The running loop's line (one per loop)."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0] is loop:
        return last[1]
    line = _shares.get(loop)
    if line is None:
        line = _shares[loop] = LoopShare(loop)
    _last = (loop, line)
    return line


def turn() -> asyncio.Future[None] | None:
    """Ask the running loop for a turn: None to go on at once, else a future to await.
    The cheap form for hot paths: ``if (waiter := turn()) is not None: await waiter``."""
    return share().turn()


async def wait_turn() -> None:
    """Wait for this run's turn on the running loop (at once when the loop is not busy)."""
    waiter = share().turn()
    if waiter is not None:
        await waiter
