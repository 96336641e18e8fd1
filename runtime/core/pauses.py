"""The pauses one runner handed out: kept until resumed, timed out, resumed once.

A paused run returns :class:`~runtime.core.approval.PendingApproval`. :class:`Pauses` keeps
it for a ``resume()`` that does not pass it back, watches its Assistants deadline (at
``expires_at - expiry_margin_s`` an undecided pause times out, see
:mod:`runtime.core.approval`), and remembers the outcome of every pause resumed here, so
the same decisions sent again get the same result instead of a second submission.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Generic, TypeVar

from runtime.core.approval import Decision, PendingApproval, PendingCall, timed_out
from runtime.core.backend import Backend, TurnRef
from runtime.core.policy import RunPolicy
from runtime.core.result import RunResult
from runtime.errors import ApprovalError
from runtime.logging import ModuleLogger

log = ModuleLogger("runtime.run")

RawT = TypeVar("RawT")

MAX_PAUSES = 1024  # pauses remembered in memory for resume() without the pending value

#: Resumes a pause that timed out with its timed-out decisions.
TimeOut = Callable[[PendingApproval], Coroutine[Any, Any, RunResult[RawT]]]


class Pauses(Generic[RawT]):
    """The pauses of one runner.

    Attributes:
        watch: time out pauses with a deadline in this process; off where pauses are kept
            elsewhere (the worker's queue sweeps them).
    """

    def __init__(
        self,
        backend: Backend[RawT],
        policy: RunPolicy,
        time_out: TimeOut[RawT],
        background: set[asyncio.Task[Any]],
    ) -> None:
        self.watch = True
        self._backend = backend
        self._policy = policy
        self._time_out = time_out
        self._background = background  # awaited by the runner's aclose()
        self._paused: dict[str, PendingApproval] = {}  # by turn id, until resumed
        self._watchdogs: dict[str, asyncio.Task[None]] = {}
        self._timeouts: dict[str, asyncio.Task[RunResult[RawT]]] = {}  # resumed by a watchdog
        # Pauses resumed here: their decisions, and the outcome once known.
        self._resumed: dict[str, tuple[dict[str, Decision], RunResult[RawT] | None]] = {}

    def get(self, turn_id: str) -> PendingApproval | None:
        """The pause returned for ``turn_id``, while it is not resumed."""
        return self._paused.get(turn_id)

    def known(self, turn_id: str) -> bool:
        """True when a resume of ``turn_id`` has an answer here without the server."""
        return turn_id in self._paused or turn_id in self._resumed or turn_id in self._timeouts

    async def resume(
        self,
        ref: TurnRef,
        pending: PendingApproval | None,
        decisions: Mapping[str, Decision],
        drive: Callable[[PendingApproval], Awaitable[RunResult[RawT]]],
    ) -> RunResult[RawT]:
        """Resume the pause of ``ref`` once: ``drive`` runs it on with ``decisions``; a pause
        resumed (or timed out) here before answers its outcome again."""
        timeout = self._timeouts.get(ref.id)
        if timeout is not None:
            return await asyncio.shield(timeout)  # the pause timed out: that is the outcome
        if ref.id in self._resumed:
            return self._resumed_again(ref, decisions)
        pending = await self._claim(ref, pending, decisions)
        self._resumed[ref.id] = (dict(pending.decided), None)
        try:
            result = await drive(pending)
        except BaseException:
            del self._resumed[ref.id]  # no outcome: the caller may try again
            raise
        if result.pending is not None:  # paused again (decisions for part of the calls)
            del self._resumed[ref.id]
            return result
        self._resumed[ref.id] = (dict(pending.decided), result)
        while len(self._resumed) > MAX_PAUSES:
            del self._resumed[next(iter(self._resumed))]
        return result

    def remember(self, pending: PendingApproval) -> None:
        """Keep the pause for resume() without it, and watch its deadline (Assistants)."""
        while len(self._paused) >= MAX_PAUSES:
            self._forget(next(iter(self._paused)))
        self._paused[pending.turn_id] = pending
        if pending.expires_at is not None and self.watch:
            watchdog = asyncio.ensure_future(self._watch(pending))
            self._watchdogs[pending.turn_id] = watchdog

    def close(self) -> None:
        """Stop watching deadlines; the pauses stay as they are."""
        for watchdog in self._watchdogs.values():
            watchdog.cancel()
        self._watchdogs.clear()

    def _resumed_again(self, ref: TurnRef, decisions: Mapping[str, Decision]) -> RunResult[RawT]:
        decided, result = self._resumed[ref.id]
        if result is None:
            raise ApprovalError(f"the pause of {ref.id} is being resumed")
        for call_id, decision in decisions.items():
            earlier = decided.get(call_id)
            if earlier is None or not earlier.same_as(decision):
                raise ApprovalError(f"the pause of {ref.id} was already decided")
        return result

    async def _claim(
        self, ref: TurnRef, pending: PendingApproval | None, decisions: Mapping[str, Decision]
    ) -> PendingApproval:
        """The pause to resume, with ``decisions`` checked into it (nothing sent yet)."""
        if ref.id in self._paused:
            pending = pending or self._paused[ref.id]
        else:  # another process's pause: it must still be waiting on the server
            waiting = await self._from_server(ref)
            pending = pending or waiting
            if not set(pending.call_ids) <= set(waiting.call_ids):
                raise ApprovalError(f"{ref.id} no longer waits for these calls: resumed already")
        pending = pending.with_decisions(decisions)  # raises before anything is claimed
        self._forget(ref.id)
        return pending

    async def _from_server(self, ref: TurnRef) -> PendingApproval:
        """Another process's pause, without its pending value: the calls the turn waits on."""
        turn = await self._backend.retrieve(ref)
        if turn.status != "requires_tools":
            raise ApprovalError(
                f"{ref.id} does not wait for tool outputs (it is {turn.status}): "
                "resumed already, or never paused"
            )
        calls = tuple(PendingCall(c.id, c.name, {}, c.arguments) for c in turn.tool_calls)
        return PendingApproval(self._backend.name, ref.id, ref.conversation, calls)

    def _forget(self, turn_id: str) -> None:
        watchdog = self._watchdogs.pop(turn_id, None)
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        self._paused.pop(turn_id, None)

    async def _watch(self, pending: PendingApproval) -> None:
        """At ``expires_at - expiry_margin_s`` an undecided pause times out: "reject" resumes
        it with timed-out rejections (the outcome a later resume() returns)."""
        assert pending.expires_at is not None
        wait = pending.expires_at - self._policy.expiry_margin_s - self._backend.server_now()
        await asyncio.sleep(max(wait, 0.0))
        if self._policy.approval_timeout != "reject" or pending.turn_id not in self._paused:
            return
        self._forget(pending.turn_id)
        log.warning("run.approval_timed_out", run_id=pending.turn_id, action="reject")
        pending = pending.with_decisions(timed_out(pending))
        task: asyncio.Task[RunResult[RawT]] = asyncio.ensure_future(self._time_out(pending))
        self._timeouts[pending.turn_id] = task
        self._background.add(task)
        task.add_done_callback(self._background.discard)
