"""The state of one run while the runner drives it: counts, texts, usage, pause, trace."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from runtime.core import tracing
from runtime.core.approval import TIMED_OUT_BY, TIMED_OUT_REASON, Decision, PendingApproval
from runtime.core.backend import StartRequest, TextPart, Turn, TurnRef, Usage
from runtime.core.hooks import EventHandler
from runtime.core.ledger import WriteKey
from runtime.core.limits import ModelPrice, UsageLimits, price_for
from runtime.core.result import StopCause
from runtime.tracing import AttributeValue
from tools import ToolCall, ToolCallResult, ToolDispatcher

RawT = TypeVar("RawT")


@dataclass
class RunState(Generic[RawT]):
    """Everything one run accumulates while the runner drives it."""

    request: StartRequest
    handler: EventHandler | None
    dispatcher: ToolDispatcher
    key: str
    deadline: float | None  # monotonic: the total deadline
    ref: TurnRef | None = None
    turn_deadline: float | None = None  # server epoch: the turn's expires_at
    rounds: int = 0
    calls_seen: int = 0
    recoveries: int = 0
    start_in_flight: bool = False
    reason: str | None = None
    stopped_by: StopCause | None = None
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    untrusted: set[str] = field(default_factory=set)
    usage: dict[str, Usage] = field(default_factory=dict)
    results: dict[str, ToolCallResult] = field(default_factory=dict)
    seen_turns: set[str] = field(default_factory=set)
    last_submit: tuple[Turn[RawT], list[ToolCallResult]] | None = None
    blind_restarts: int = 0
    reader: asyncio.Task[object] | None = None  # the task reading a stream, for cancel()
    batch: asyncio.Future[list[ToolCallResult]] | None = None  # the tool batch, for cancel()
    tools_from_registry: bool = False  # re-read before each round (MCP tool lists change)
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    limits: UsageLimits | None = None
    requests: int = 0  # sent to create or continue a turn (the client's retries count once)
    models: dict[str, str] = field(default_factory=dict)  # by turn id, for the cost
    scope: str | None = None  # of the run's write records
    decisions: dict[str, Decision] = field(default_factory=dict)
    counted: set[str] = field(default_factory=set)  # call ids counted against the bounds
    repeats: Counter[str] = field(default_factory=Counter)  # by tool + arguments
    pending: PendingApproval | None = None  # the pause the run ends in
    awaited: set[str] = field(default_factory=set)  # calls of the pause being resumed
    late: int = 0  # of those, decided after expires_at - margin
    writes: dict[str, WriteKey] = field(default_factory=dict)  # started, by call id
    trace: tracing.RunTrace | None = None  # None: tracing is off

    def event(self, name: str, **attributes: AttributeValue | None) -> None:
        """A point in the run's trace (nothing when tracing is off)."""
        if self.trace is not None:
            self.trace.event(name, **attributes)

    def count_round(self, turn: Turn[RawT], fresh: list[ToolCall]) -> None:
        """Count the round and its calls not counted yet (a resumed pause counts nothing
        again)."""
        if not self.counted.intersection(c.id for c in turn.tool_calls):
            self.rounds += 1
        self.calls_seen += len(fresh)
        self.counted.update(c.id for c in fresh)

    def restore(self, pending: PendingApproval) -> None:
        """Carry a pause's counts and decisions into the run that resumes it."""
        self.decisions.update(pending.decided)
        self.scope = self.scope or pending.scope
        self.rounds = pending.rounds
        self.calls_seen = pending.calls_seen
        self.repeats.update(pending.repeats)
        self.counted.update(pending.call_ids)
        self.counted.update(r.tool_call_id for r in pending.completed)
        self.awaited.update(pending.call_ids)
        rejected = sum(1 for d in pending.decided.values() if d.by == TIMED_OUT_BY)
        if rejected:
            self.reason = (
                f"{TIMED_OUT_REASON}: {rejected} call(s) rejected (approval_timeout=reject)"
            )

    def merge_texts(self, turn_id: str, parts: Iterable[TextPart]) -> None:
        texts = self.texts.setdefault(turn_id, {})
        for part in parts:
            if not part.text and texts.get(part.id):
                # A server copy left empty (a message cut off by a cancel) never erases the
                # text that was streamed for it.
                continue
            texts[part.id] = part.text

    def final_text(self) -> str:
        """The last non-empty text of the run's last turn: the answer a structured output
        is."""
        if self.ref is None:
            return ""
        texts = [t for t in self.texts.get(self.ref.id, {}).values() if t]
        return texts[-1] if texts else ""

    def total_usage(self) -> Usage:
        """The run's usage so far: per turn, the latest report (cumulative per run on
        Assistants)."""
        return sum(self.usage.values(), Usage())

    def cost(self, prices: Mapping[str, ModelPrice]) -> tuple[float, bool]:
        """The run's cost so far in USD, and whether every turn that used tokens is priced."""
        cost = 0.0
        priced = True
        for turn_id, usage in self.usage.items():
            price = price_for(prices, self.models.get(turn_id))
            if price is None:
                priced = False
                continue
            cost += price.cost(usage)
        return cost, priced
