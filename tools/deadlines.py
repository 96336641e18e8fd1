"""Call timeouts on one loop timer: ``asyncio.timeout`` semantics, without a timer per call.

``asyncio.timeout`` schedules (and cancels) a timer handle for every call, which costs about
as much as the rest of the dispatcher's bookkeeping for a quick tool. The calls of a
dispatcher share :class:`Deadlines` instead: one timer armed for the earliest deadline; when
it fires, every call past its deadline is cancelled, and the timer is armed again for the next
one. The timer is dropped when no call is left running, so nothing outlives the calls; a
batch holds the timer (:meth:`Deadlines.hold`) while its calls run, so calls that end one
after the other do not drop and re-arm it each time.

A :class:`CallTimeout` behaves as ``asyncio.timeout(delay)`` does in the task that enters it:
the expiry cancels the task, and leaving the block turns that cancellation (and only that
one) into :class:`TimeoutError`; :meth:`CallTimeout.expired` tells it apart from a
``TimeoutError`` the tool raised itself.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from types import TracebackType


class CallTimeout:
    """The timeout of one call (a sync context manager, entered in the call's task)."""

    __slots__ = ("_cancelling", "_deadlines", "_expired", "_expiring", "_task", "active", "when")

    def __init__(self, deadlines: Deadlines, when: float) -> None:
        self._deadlines = deadlines
        self.when = when
        self.active = False
        self._expiring = False
        self._expired = False
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    def expired(self) -> bool:
        """True when the deadline passed while the block ran (as ``Timeout.expired``)."""
        return self._expired or self._expiring

    def __enter__(self) -> CallTimeout:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a call timeout is entered in a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.active = True
        self._deadlines.add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.active = False
        self._deadlines.left(self)
        if self._expiring:
            self._expiring = False
            self._expired = True
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def _expire(self) -> None:
        assert self._task is not None
        self._task.cancel()
        self._expiring = True


class Deadlines:
    """The running calls' deadlines (``loop.time()`` values) on one timer handle."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, CallTimeout]] = []
        self._order = itertools.count()
        self._running = 0
        self._handle: asyncio.Handle | None = None
        self._armed_for = float("inf")

    def timeout(self, delay: float | None) -> CallTimeout | None:
        """A timeout ``delay`` seconds from now (None: no timeout)."""
        if delay is None:
            return None
        return CallTimeout(self, asyncio.get_running_loop().time() + delay)

    def hold(self) -> None:
        """Keep the timer armed until the matching :meth:`release`, even with no call
        running (a batch holds it around its calls: one timer per batch, not per call)."""
        self._running += 1

    def release(self) -> None:
        """End a :meth:`hold`; the timer is dropped when no call nor hold is left."""
        self._running -= 1
        if self._running == 0:
            self._drop()

    def add(self, timeout: CallTimeout) -> None:
        self._running += 1
        heapq.heappush(self._heap, (timeout.when, next(self._order), timeout))
        if timeout.when < self._armed_for:
            self._arm(timeout.when)

    def left(self, timeout: CallTimeout) -> None:
        self._running -= 1
        if self._running == 0:
            self._drop()

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        self._armed_for = when
        if when <= loop.time():
            self._handle = loop.call_soon(self._fire)  # as asyncio.timeout(0) does
        else:
            self._handle = loop.call_at(when, self._fire)

    def _drop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_for = float("inf")
        self._heap.clear()

    def _fire(self) -> None:
        self._handle = None
        self._armed_for = float("inf")
        now = asyncio.get_running_loop().time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            timeout = heapq.heappop(heap)[2]
            if timeout.active and not timeout.expired():
                timeout._expire()
        while heap and not heap[0][2].active:
            heapq.heappop(heap)  # calls that ended before their deadline
        if heap:
            self._arm(heap[0][0])
