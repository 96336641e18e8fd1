"""Process-wide limits shared by every dispatcher: executing calls and sync-tool threads."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_PROCESS_LIMIT = 256
DEFAULT_THREAD_POOL_SIZE = 32


class _Waiter:
    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False


class ProcessLimiter:
    """A counting limit that works across event loops and threads (unlike asyncio.Semaphore,
    which binds to the first loop that waits on it)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self._limit = limit
        self._active = 0
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    @property
    def limit(self) -> int:
        """The maximum number of holders."""
        return self._limit

    @property
    def active(self) -> int:
        """How many slots are held now."""
        return self._active

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
            waiter = _Waiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                if waiter.granted:
                    self._active -= 1
                    self._wake_locked()
                else:
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back, handing it to the oldest waiter if any."""
        with self._lock:
            self._active -= 1
            self._wake_locked()

    def _wake_locked(self) -> None:
        while self._waiters and self._active < self._limit:
            waiter = self._waiters.popleft()
            try:
                waiter.loop.call_soon_threadsafe(_resolve, waiter.future)
            except RuntimeError:  # its loop is closed: nobody will ever take this slot
                continue
            waiter.granted = True
            self._active += 1


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


process_limiter = ProcessLimiter(DEFAULT_PROCESS_LIMIT)


class DaemonThreadPool(Executor):
    """A bounded pool of daemon threads for sync tools.

    Unlike ThreadPoolExecutor, whose threads are joined at interpreter exit, a sync tool
    stuck after its timeout cannot keep a draining worker process alive.
    """

    def __init__(self, max_workers: int, name: str = "tools") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self._max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule fn(*args, **kwargs) on a pool thread."""
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._queue.put(_WorkItem(future, lambda: fn(*args, **kwargs)))
            self._grow()
        return future

    def _grow(self) -> None:
        if self._idle.acquire(timeout=0) or len(self._threads) >= self._max_workers:
            return
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            item.run()
            del item
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; threads exit after the calls already queued."""
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
            for _ in threads:
                self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()


class _WorkItem:
    __slots__ = ("call", "future")

    def __init__(self, future: Future[Any], call: Callable[[], Any]) -> None:
        self.future = future
        self.call = call

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.call()
        except BaseException as exc:  # handed to the awaiting side, like ThreadPoolExecutor
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


_pool_lock = threading.Lock()
_pool: DaemonThreadPool | None = None
_pool_size = DEFAULT_THREAD_POOL_SIZE


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


def thread_pool() -> DaemonThreadPool:
    """Return the shared pool for sync tools, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DaemonThreadPool(_pool_size)
        return _pool
