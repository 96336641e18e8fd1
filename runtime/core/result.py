"""RunResult: what one run produced, whatever its terminal status, on either protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal

from typing_extensions import TypeVar

from runtime.core.approval import PendingApproval
from runtime.core.backend import TurnError, Usage
from runtime.errors import RunFailedError
from tools import ToolCallResult

RawT = TypeVar("RawT")
OutT = TypeVar("OutT", default=None)

#: Why the runtime (not the server) ended a run.
StopCause = Literal[
    "max_tool_rounds",
    "max_tool_calls",
    "cancel",
    "total_deadline",
    "usage_limit",
    "repeated_call",
    "approval_timeout",
]


@dataclass(frozen=True)
class RunResult(Generic[RawT, OutT]):
    """The outcome of a run, the same shape on both protocols.

    ``failed``, ``expired``, ``incomplete`` and ``cancelled`` are results, not exceptions; call
    :meth:`raise_for_status` to turn them into :class:`~runtime.errors.RunFailedError`.
    ``awaiting_approval`` is a pause, not an end: :attr:`pending` says what waits for a
    person (see :mod:`runtime.core.approval`).

    Attributes:
        status: the terminal status, or ``awaiting_approval``.
        raw: the final protocol object: a ``Run`` (Assistants) or a ``Response`` (Responses).
        text: all assistant text the run produced, as the server holds it.
        tool_calls: every tool call executed locally, in order.
        usage: token usage of the whole run, when the server reported it.
        rounds: how many tool rounds were executed.
        reason: why the runtime ended the run, when it did (readable).
        stopped_by: which bound or request ended it, when the runtime did (``max_tool_rounds``,
            ``max_tool_calls``, ``cancel``, ``total_deadline``, ``usage_limit``,
            ``repeated_call``, ``approval_timeout``): a bound is never mistaken for a
            person's cancel.
        error: the server's error of a failed run.
        incomplete_reason: why the run ended ``incomplete``.
        conversation_id: the thread (Assistants) or conversation (Responses), if any.
        run_id: the run's (or final response's) id.
        recoveries: stream losses recovered by resuming or polling.
        requests: requests sent to create or continue a turn (see
            :class:`~runtime.core.limits.UsageLimits`).
        cost: the run's cost in USD from the policy's price table (None when a model it
            used has no price, or no usage was reported).
        output: the answer validated into the run's ``output_type`` (None without one, or
            when it did not validate).
        output_error: why the answer did not validate, after the retries the policy allows.
        pending: what a paused run (``awaiting_approval``) waits for; resume with it.
    """

    status: str
    raw: RawT | None = None
    text: str = ""
    tool_calls: list[ToolCallResult] = field(default_factory=list)
    usage: Usage | None = None
    rounds: int = 0
    reason: str | None = None
    stopped_by: StopCause | None = None
    error: TurnError | None = None
    incomplete_reason: str | None = None
    conversation_id: str | None = None
    run_id: str | None = None
    recoveries: int = 0
    requests: int = 0
    cost: float | None = None
    output: OutT | None = None
    output_error: str | None = None
    pending: PendingApproval | None = None

    @property
    def ok(self) -> bool:
        """True when the run completed."""
        return self.status == "completed"

    @property
    def run(self) -> RawT | None:
        """The final protocol object (the Assistants name; see :attr:`raw`)."""
        return self.raw

    @property
    def response(self) -> RawT | None:
        """The final protocol object (the Responses name; see :attr:`raw`)."""
        return self.raw

    @property
    def thread_id(self) -> str | None:
        """The Assistants name of :attr:`conversation_id`."""
        return self.conversation_id

    @property
    def last_error(self) -> TurnError | None:
        """Alias of :attr:`error`."""
        return self.error

    def raise_for_status(self) -> RunResult[RawT, OutT]:
        """Return self when completed (or paused for approval), else raise RunFailedError."""
        if self.ok or self.pending is not None:
            return self
        detail = self.reason or self.incomplete_reason or (self.error.message if self.error else "")
        raise RunFailedError(
            f"run {self.run_id} ended {self.status}" + (f": {detail}" if detail else ""),
            status=self.status,
            run_id=self.run_id,
            result=self,
        )
