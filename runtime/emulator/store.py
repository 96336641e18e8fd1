"""In-memory state of the Assistants front end: threads, runs and the bounded store."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from runtime.emulator.frames import RunFrames, run_frames, run_json
from runtime.emulator.model import ToolExchange
from runtime.emulator.objects import Obj
from runtime.emulator.retention import DEFAULT_RETAINED, LruStore

ACTIVE = frozenset({"queued", "in_progress", "requires_action", "cancelling"})
TERMINAL = frozenset({"cancelled", "failed", "completed", "incomplete", "expired"})


@dataclass(eq=False, slots=True)
class ThreadState:
    """A thread with its messages and runs (dicts keep creation order)."""

    obj: Obj
    messages: dict[str, Obj] = field(default_factory=dict)
    runs: dict[str, RunState] = field(default_factory=dict)
    active_run: RunState | None = None


@dataclass(eq=False, slots=True)
class RunState:
    """A run: its wire object plus what the emulator needs to drive it."""

    obj: Obj
    thread: ThreadState
    deadline: float
    steps: dict[str, Obj] = field(default_factory=dict)
    exchanges: list[ToolExchange] = field(default_factory=list)
    pending_step: Obj | None = None
    pending_usage: tuple[int, int] = (0, 0)
    message: Obj | None = None
    streamed: list[str] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    expiry: asyncio.Task[None] | None = None
    # Its fixed fields' JSON: made with it from its assistant's defaults (no overrides), else
    # at its first event.
    frames: RunFrames | None = None

    @property
    def status(self) -> str:
        """Current run status."""
        status: str = self.obj["status"]
        return status

    def encoded(self) -> bytes:
        """The JSON of the run as it is now, its fixed fields encoded once a run (a bound
        method is what the engine hands a sink: cheaper to make than a ``partial``)."""
        frames = self.frames
        if frames is None:
            frames = self.frames = run_frames(self.obj)
        return run_json(self.obj, frames)


class Store:
    """Everything the Assistants front end holds in memory, each kind LRU-bounded.

    Args:
        limit: the most assistants, threads and runs kept (each); least recently used first
            out, never a thread or run that is still active (None: unbounded).
    """

    def __init__(self, limit: int | None = DEFAULT_RETAINED) -> None:
        self.limit = limit
        self.assistants: LruStore[Obj] = LruStore(limit)
        self.threads: LruStore[ThreadState] = LruStore(
            limit, busy=lambda t: t.active_run is not None, on_evict=self._drop_thread
        )
        self.runs: LruStore[RunState] = LruStore(
            limit, busy=lambda r: r.status in ACTIVE, on_evict=self._drop_run
        )

    def _drop_thread(self, thread_id: str, thread: ThreadState) -> None:
        for run_id in list(thread.runs):
            self.runs.pop(run_id)
        # A thread and its runs point at each other: unlinked, they are freed at once rather
        # than left to the cycle collector's full passes, whose cost grows with the store.
        thread.runs.clear()

    @staticmethod
    def _drop_run(run_id: str, run: RunState) -> None:
        run.thread.runs.pop(run_id, None)
