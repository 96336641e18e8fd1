"""Process-wide limits shared by every dispatcher: executing calls and sync-tool threads."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

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

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
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


def thread_pool() -> ThreadPoolExecutor:
    """Return the shared pool for sync tools, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="tools")
        return _pool
