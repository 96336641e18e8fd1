"""Bounded, least-recently-used retention of the emulator's objects.

An emulator serving a long test session or a benchmark would otherwise keep every thread,
run, response and conversation forever. :class:`LruStore` keeps at most ``limit`` entries,
evicting the least recently used one that is not busy (an active run, a running response):
busy entries are never dropped, so the store may briefly exceed its limit under load.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, ValuesView
from itertools import islice
from typing import Generic, TypeVar

DEFAULT_RETAINED = 1000
V = TypeVar("V")


class LruStore(Generic[V]):
    """A str-keyed map with LRU eviction past ``limit`` (None: unbounded).

    Args:
        limit: the most entries kept.
        busy: entries it returns True for are never evicted.
        on_evict: called with each evicted ``(key, value)`` (to drop dependent objects).
    """

    def __init__(
        self,
        limit: int | None = DEFAULT_RETAINED,
        *,
        busy: Callable[[V], bool] | None = None,
        on_evict: Callable[[str, V], None] | None = None,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError("the retention limit must be at least 1")
        self.limit = limit
        self._busy = busy
        self._on_evict = on_evict
        self._items: OrderedDict[str, V] = OrderedDict()
        self.evicted = 0

    def __getitem__(self, key: str) -> V:
        value = self._items[key]
        self._items.move_to_end(key)
        return value

    def get(self, key: str) -> V | None:
        """The value (marking it used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def peek(self, key: str) -> V | None:
        """The value without marking it used, or None."""
        return self._items.get(key)

    def __setitem__(self, key: str, value: V) -> None:
        items = self._items
        known = key in items
        items[key] = value
        if known:
            items.move_to_end(key)  # a new key is already the most recent
        elif self.limit is not None and len(items) > self.limit:
            self._evict()

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def pop(self, key: str) -> V | None:
        """Remove and return a value (None if absent)."""
        return self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def values(self) -> ValuesView[V]:
        """The values, least recently used first."""
        return self._items.values()

    def _evict(self) -> None:
        if self.limit is None or len(self._items) <= self.limit:
            return
        excess = len(self._items) - self.limit
        busy = self._busy
        if excess == 1:  # the usual case: the oldest entry goes, unless it is busy
            key = next(iter(self._items))
            if busy is None or not busy(self._items[key]):
                self._drop(key)
                return
        idle = (key for key, value in self._items.items() if busy is None or not busy(value))
        # Taken before any is removed (the dict cannot change while it is walked); usually one.
        for key in list(islice(idle, excess)):
            self._drop(key)

    def _drop(self, key: str) -> None:
        value = self._items.pop(key)
        self.evicted += 1
        if self._on_evict is not None:
            self._on_evict(key, value)
