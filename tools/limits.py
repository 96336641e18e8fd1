"""Process-wide limits shared by every dispatcher: executing calls and sync-tool threads.

Sync tools run on one pool of daemon threads (:func:`set_thread_pool_size`, default 32).
A thread cannot be interrupted: a sync tool that ignores ``ToolContext.cancelled`` keeps
its thread after its call timed out. Such a thread is *abandoned* and the pool starts a
replacement, up to :func:`set_max_abandoned_threads` (default 32) at a time; a call that
gets no thread before its deadline, or at once when every thread is abandoned, fails with
``pool_exhausted`` (see ``tools.dispatch``).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_PROCESS_LIMIT = 256
DEFAULT_THREAD_POOL_SIZE = 32
DEFAULT_MAX_ABANDONED_THREADS = 32


class Ticket:
    """A place in the queue of a :class:`ProcessLimiter`: what a waiting call costs.

    When the slot is granted, ``grant`` is scheduled on ``loop``; from then on the slot is
    the holder's, who gives it back with :meth:`ProcessLimiter.release`.
    """

    __slots__ = ("grant", "granted", "loop", "withdrawn")

    def __init__(self, loop: asyncio.AbstractEventLoop, grant: Callable[[], object]) -> None:
        self.loop = loop
        self.grant = grant
        self.granted = False
        self.withdrawn = False


class ProcessLimiter:
    """A counting limit that works across event loops and threads (unlike asyncio.Semaphore,
    which binds to the first loop that waits on it).

    Waiters are served in FIFO order. A waiter is either a task in :meth:`acquire` or a
    :class:`Ticket` from :meth:`enqueue`, which costs no task: a dispatcher starts a call's
    task only once its ticket is granted.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self._limit = limit
        self._active = 0
        self._lock = threading.Lock()
        self._waiters: deque[Ticket] = deque()

    @property
    def limit(self) -> int:
        """The maximum number of holders."""
        return self._limit

    @property
    def active(self) -> int:
        """How many slots are held now."""
        return self._active

    @property
    def waiting(self) -> int:
        """How many waiters are queued for a slot."""
        return len(self._waiters)

    def set_limit(self, limit: int) -> None:
        """Change the limit; raising it wakes waiters at once."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        with self._lock:
            self._limit = limit
            self._wake_locked()

    def try_acquire(self) -> bool:
        """Take a slot if one is free right now, without waiting."""
        with self._lock:
            if self._active < self._limit and not self._waiters:
                self._active += 1
                return True
            return False

    async def acquire(self) -> None:
        """Wait for a slot (FIFO); cancellation while waiting never leaks a slot."""
        with self._lock:
            if self._active < self._limit and not self._waiters:
                self._active += 1
                return
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            waiter = Ticket(loop, functools.partial(_resolve, future))
            self._waiters.append(waiter)
        try:
            await future
        except BaseException:
            with self._lock:
                if waiter.granted:
                    self._active -= 1
                    self._wake_locked()
                else:
                    self._waiters.remove(waiter)
            raise

    def enqueue(self, grant: Callable[[], object]) -> Ticket:
        """Queue for a slot behind the current waiters; ``grant`` is called on the running
        loop once the slot is the caller's (take a free slot with :meth:`try_acquire` first)."""
        ticket = Ticket(asyncio.get_running_loop(), grant)
        with self._lock:
            self._waiters.append(ticket)
            self._wake_locked()
        return ticket

    def withdraw(self, tickets: Iterable[Ticket]) -> None:
        """Leave the queue. A ticket granted already keeps its slot: its ``grant`` still runs
        and must release it."""
        with self._lock:
            removed = False
            for ticket in tickets:
                if not ticket.granted and not ticket.withdrawn:
                    ticket.withdrawn = removed = True
            if removed:  # one pass, however many tickets a cancelled batch held
                self._waiters = deque(t for t in self._waiters if not t.withdrawn)

    def release(self) -> None:
        """Give a slot back, handing it to the oldest waiter if any."""
        with self._lock:
            self._active -= 1
            self._wake_locked()

    def _wake_locked(self) -> None:
        if not self._waiters:
            return
        running = asyncio._get_running_loop()
        while self._waiters and self._active < self._limit:
            waiter = self._waiters.popleft()
            try:
                if waiter.loop is running:  # no self-pipe write on the common path
                    waiter.loop.call_soon(waiter.grant)
                else:
                    waiter.loop.call_soon_threadsafe(waiter.grant)
            except RuntimeError:  # its loop is closed: nobody will ever take this slot
                continue
            waiter.granted = True
            self._active += 1


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


process_limiter = ProcessLimiter(DEFAULT_PROCESS_LIMIT)


class PoolExhausted(RuntimeError):
    """No thread can take a sync call: every pool thread is stuck in an abandoned call and
    the cap on abandoned threads allows no replacement.

    Attributes:
        stats: the pool's counts when the call was refused.
    """

    def __init__(self, stats: PoolStats) -> None:
        super().__init__(
            f"all {stats.threads} tool threads are stuck in calls that timed out "
            f"(cap: {stats.max_workers} threads + {stats.max_abandoned} replacements)"
        )
        self.stats = stats


@dataclass(frozen=True)
class PoolStats:
    """Counts of a :class:`DaemonThreadPool` at one moment.

    Attributes:
        threads: live threads, abandoned ones included.
        busy: threads running a call, abandoned ones included.
        abandoned: threads still running a call whose caller gave up (timeout, cancel).
        queued: calls waiting for a thread.
        max_workers: threads that may run calls nobody gave up on.
        max_abandoned: abandoned threads the pool replaces with new ones.
    """

    threads: int
    busy: int
    abandoned: int
    queued: int
    max_workers: int
    max_abandoned: int

    def as_fields(self) -> dict[str, int]:
        """The counts as flat log fields."""
        return {
            "threads": self.threads,
            "busy": self.busy,
            "abandoned": self.abandoned,
            "queued": self.queued,
            "max_workers": self.max_workers,
            "max_abandoned": self.max_abandoned,
        }


class Abandon(enum.Enum):
    """What :meth:`DaemonThreadPool.abandon` found."""

    NOT_STARTED = "not_started"  # still queued: cancelled, it will never run
    ABANDONED = "abandoned"  # running: its thread is written off and may be replaced
    DONE = "done"  # already finished


_QUEUED, _RUNNING, _DONE, _CANCELLED = range(4)


class DaemonThreadPool(Executor):
    """A bounded pool of daemon threads for sync tools.

    Unlike ThreadPoolExecutor, whose threads are joined at interpreter exit, a sync tool
    stuck after its timeout cannot keep a draining worker process alive. A thread whose
    caller gave up (:meth:`abandon`) stops counting against ``max_workers``, so a new thread
    takes its place, up to ``max_abandoned`` replacements; when an abandoned call finally
    returns, its thread rejoins the pool or exits if the pool is full. Once every thread is
    abandoned and no replacement is allowed, :meth:`submit` raises :class:`PoolExhausted`.
    """

    def __init__(
        self,
        max_workers: int,
        name: str = "tools",
        *,
        max_abandoned: int = DEFAULT_MAX_ABANDONED_THREADS,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        if max_abandoned < 0:
            raise ValueError("max_abandoned must be >= 0")
        self._max_workers = max_workers
        self._max_abandoned = max_abandoned
        self._name = name
        self._queue: queue.SimpleQueue[_PoolCall[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._started = 0  # for thread names
        self._idle = 0
        self._busy = 0
        self._abandoned = 0
        self._queued = 0
        self._shutdown = False

    @property
    def max_abandoned(self) -> int:
        """Abandoned threads the pool replaces (see :func:`set_max_abandoned_threads`)."""
        return self._max_abandoned

    @max_abandoned.setter
    def max_abandoned(self, value: int) -> None:
        if value < 0:
            raise ValueError("max_abandoned must be >= 0")
        with self._lock:
            self._max_abandoned = value
            self._grow_locked()

    def stats(self) -> PoolStats:
        """The current counts."""
        with self._lock:
            return self._stats_locked()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule fn(*args, **kwargs) on a pool thread.

        Raises:
            PoolExhausted: every thread is stuck in an abandoned call and none may be added.
            RuntimeError: the pool was shut down.
        """
        item: _PoolCall[T] = _PoolCall(functools.partial(fn, *args, **kwargs))
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            if self._threads == self._abandoned and not self._may_add_locked():
                raise PoolExhausted(self._stats_locked())
            self._queued += 1
            self._queue.put(item)
            self._grow_locked()
        return item

    def abandon(self, future: Future[Any]) -> Abandon:
        """The caller gives up on the call behind ``future`` (from :meth:`submit`)."""
        if not isinstance(future, _PoolCall):
            return Abandon.DONE
        item = future
        with self._lock:
            if item.stage == _QUEUED:
                item.stage = _CANCELLED
                self._queued -= 1
                outcome = Abandon.NOT_STARTED
            elif item.stage == _RUNNING and not item.abandoned:
                item.abandoned = True
                self._abandoned += 1
                self._grow_locked()
                outcome = Abandon.ABANDONED
            else:
                outcome = Abandon.DONE
        if outcome is Abandon.NOT_STARTED:
            future.cancel()  # outside the lock: cancel() runs the future's callbacks
        return outcome

    def _may_add_locked(self) -> bool:
        serving = self._threads - self._abandoned
        return serving < self._max_workers and (
            self._threads < self._max_workers + self._max_abandoned
        )

    def _grow_locked(self) -> None:
        while self._queued > self._idle and not self._shutdown and self._may_add_locked():
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{self._started}", daemon=True
            )
            self._started += 1
            self._threads += 1
            self._idle += 1
            thread.start()

    def _stats_locked(self) -> PoolStats:
        return PoolStats(
            threads=self._threads,
            busy=self._busy,
            abandoned=self._abandoned,
            queued=self._queued,
            max_workers=self._max_workers,
            max_abandoned=self._max_abandoned,
        )

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if not self._take(item):
                continue
            item.run()
            if not self._release(item):
                return
            del item
        with self._lock:
            self._threads -= 1
            self._idle -= 1

    def _take(self, item: _PoolCall[Any]) -> bool:
        with self._lock:
            if item.stage == _CANCELLED:
                return False
            item.stage = _RUNNING
            self._queued -= 1
            self._idle -= 1
            self._busy += 1
            return True

    def _release(self, item: _PoolCall[Any]) -> bool:
        """Book a finished call; False when this thread must exit (it was replaced)."""
        with self._lock:
            item.stage = _DONE
            self._busy -= 1
            if item.abandoned:
                self._abandoned -= 1
                if self._threads - self._abandoned > self._max_workers:
                    self._threads -= 1
                    return False
            self._idle += 1
            return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; idle threads exit, busy ones after their current call."""
        with self._lock:
            self._shutdown = True
            for _ in range(self._threads):
                self._queue.put(None)
        if wait:
            # Daemon threads: nothing to join at exit; wait for the queue to drain.
            while True:
                with self._lock:
                    if self._threads == 0:
                        return
                threading.Event().wait(0.01)


class _PoolCall(Future[T]):
    """A call on the pool: its future, and what the pool needs to run and abandon it.

    One object, so the queue, the pool and the caller share it without reference cycles.
    """

    def __init__(self, call: Callable[[], T]) -> None:
        super().__init__()
        self.call: Callable[[], Any] = call
        self.stage = _QUEUED
        self.abandoned = False

    def run(self) -> None:
        if not self.set_running_or_notify_cancel():
            return
        try:
            result = self.call()
        except BaseException as exc:  # handed to the awaiting side, like ThreadPoolExecutor
            self.set_exception(exc)
        else:
            self.set_result(result)
        finally:
            self.call = _done  # drop the tool's arguments at once


def _done() -> None:
    """Placeholder call: a finished item drops the tool's arguments at once."""


_pool_lock = threading.Lock()
_pool: DaemonThreadPool | None = None
_pool_size = DEFAULT_THREAD_POOL_SIZE
_max_abandoned = DEFAULT_MAX_ABANDONED_THREADS


def set_process_limit(limit: int) -> None:
    """Set how many tool calls may execute at once in this process (default 256)."""
    process_limiter.set_limit(limit)


def set_thread_pool_size(max_workers: int) -> None:
    """Set the size of the thread pool running sync tools (default 32).

    Threads of the previous pool finish their current call and then exit.
    """
    global _pool, _pool_size
    if max_workers < 1:
        raise ValueError("max_workers must be >= 1")
    with _pool_lock:
        old, _pool, _pool_size = _pool, None, max_workers
    if old is not None:
        old.shutdown(wait=False)


def set_max_abandoned_threads(count: int) -> None:
    """Set how many stuck sync-tool threads the pool replaces with new ones (default 32).

    A sync tool that ignores its cancel flag keeps its thread after a timeout; the pool
    starts a replacement so other calls still run. Past ``count`` stuck threads no more are
    started, and once every thread is stuck, sync calls fail at once with a
    ``pool_exhausted`` error. 0 disables replacements.
    """
    global _max_abandoned
    if count < 0:
        raise ValueError("count must be >= 0")
    with _pool_lock:
        _max_abandoned = count
        pool = _pool
    if pool is not None:
        pool.max_abandoned = count


def thread_pool() -> DaemonThreadPool:
    """Return the shared pool for sync tools, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DaemonThreadPool(_pool_size, max_abandoned=_max_abandoned)
        return _pool
