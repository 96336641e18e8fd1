"""Human approval of tool calls: decisions, and the pause a run waits in for them.

A tool registered with ``needs_approval=True`` (or a per-call check) never runs before a
person approved the call. A tool round with such calls pauses the run: the calls that need
no approval run at once, and the run returns ``status="awaiting_approval"`` with
:attr:`RunResult.pending <runtime.core.result.RunResult.pending>`, a
:class:`PendingApproval`. Resume it with decisions::

    result = await orch.run(...)
    if result.status == "awaiting_approval":
        for call in result.pending.calls:
            print(call.tool, call.arguments)
        result = await orch.resume(result.pending, decisions={
            result.pending.calls[0].id: approve(),
            result.pending.calls[1].id: reject("not today"),
        })

Approved calls run, rejected ones get an error output the model reads
(``{"error": {"type": "rejected", "message": "rejected: <reason>", ...}}``), and every output
of the round goes back in one submission. Decisions for only some calls run those and pause
again with the rest. A decision for a call the pause does not hold raises
:class:`~runtime.errors.ApprovalError`; the same decision twice is a no-op, a different one
for a call already decided raises.

:class:`PendingApproval` is plain data (:meth:`~PendingApproval.to_json` /
:meth:`~PendingApproval.from_json`): another process resumes it with its own orchestrator.
Resume a pause once: the runner that paused remembers it (a second resume with the same
decisions returns the same result), and an Assistants run that no longer waits for the
pause's calls is refused; a Responses response keeps its calls after they were answered, so
only the caller (or the worker's durable job state) can tell a pause resumed elsewhere.
A resumed run counts rounds, calls and repeated calls on from the pause; its usage limits
and ``total_deadline_s`` start afresh.

Deadlines: an Assistants run expires at its ``expires_at``. A pause that reaches
``expires_at - expiry_margin_s`` follows the policy's ``approval_timeout``: ``"reject"``
submits every undecided call as rejected (``approval_timeout``) so the run goes on,
``"expire"`` lets the run expire; the result's ``reason`` says which. A Responses pause lasts
as long as the server keeps the response.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from runtime.errors import ApprovalError
from tools import ToolCall, ToolCallResult
from tools.encoding import error_output

#: What a pause that reaches the Assistants run's expiry margin does.
ApprovalTimeout = Literal["reject", "expire"]

TIMED_OUT_REASON = "approval timed out"
TIMED_OUT_BY = "approval_timeout"


@dataclass(frozen=True)
class Decision:
    """A person's answer to one pending call.

    Attributes:
        approved: run the call (True) or not.
        reason: why it was rejected (sent to the model), or a note on the approval.
        by: who decided, when known.
        at: when (epoch seconds).
    """

    approved: bool
    reason: str | None = None
    by: str | None = None
    at: float = field(default_factory=time.time, compare=False)

    def same_as(self, other: Decision) -> bool:
        """True when ``other`` says the same (a repeated decision, not a change of mind)."""
        return self.approved == other.approved and self.reason == other.reason

    def to_json(self) -> dict[str, Any]:
        return {"approved": self.approved, "reason": self.reason, "by": self.by, "at": self.at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            approved=bool(data["approved"]),
            reason=data.get("reason"),
            by=data.get("by"),
            at=float(data.get("at") or time.time()),
        )


def timeout_decision() -> Decision:
    """The rejection a call gets when its pause reached the run's expiry margin."""
    return Decision(False, TIMED_OUT_REASON, TIMED_OUT_BY)


def approve(note: str | None = None, *, by: str | None = None) -> Decision:
    """Approve a pending call (``note``: kept with the decision, not sent to the model)."""
    return Decision(True, note, by)


def reject(reason: str, *, by: str | None = None) -> Decision:
    """Reject a pending call; the model reads ``rejected: <reason>`` as its output."""
    if not isinstance(reason, str) or not reason.strip():
        raise ApprovalError("a rejection needs a reason the model can read")
    return Decision(False, reason, by)


@dataclass(frozen=True)
class PendingCall:
    """A call waiting for a decision.

    Attributes:
        id: the ``tool_call_id``.
        tool: the tool's name.
        arguments: the validated arguments.
        raw_arguments: the JSON text the model sent.
    """

    id: str
    tool: str
    arguments: Mapping[str, Any]
    raw_arguments: str

    @property
    def call(self) -> ToolCall:
        return ToolCall(self.id, self.tool, self.raw_arguments)


@dataclass(frozen=True)
class PendingApproval:
    """A paused run: everything needed to resume it, in this process or another.

    Attributes:
        protocol: ``"assistants"`` or ``"responses"``.
        turn_id: the run (Assistants) or response (Responses) waiting for tool outputs.
        conversation: its thread or conversation, if any.
        calls: the calls awaiting a decision.
        decided: decisions already made for calls of this round.
        completed: outputs of this round already computed (sent with the rest on resume).
        expires_at: when the server expires the turn (Assistants ``expires_at``, server
            clock), None on Responses.
        paused_at: when the run paused (epoch seconds).
        scope: the scope of the run's write records (see :mod:`runtime.core.ledger`).
        rounds: tool rounds the run executed so far (bounds go on counting from here).
        calls_seen: tool calls the run saw so far.
        repeats: how often the run requested each ``tool + arguments`` (loop detection).
        model: the model of follow-up requests (Responses), when known.
        instructions: the instructions of follow-up requests (Responses), when known.
    """

    protocol: str
    turn_id: str
    conversation: str | None
    calls: tuple[PendingCall, ...]
    decided: Mapping[str, Decision] = field(default_factory=dict)
    completed: tuple[ToolCallResult, ...] = ()
    expires_at: float | None = None
    paused_at: float = field(default_factory=time.time)
    scope: str | None = None
    rounds: int = 0
    calls_seen: int = 0
    repeats: Mapping[str, int] = field(default_factory=dict)
    model: str | None = None
    instructions: str | None = None

    @property
    def call_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.calls)

    def checked(self, decisions: Mapping[str, Decision]) -> dict[str, Decision]:
        """Every decision known after ``decisions``: the earlier ones plus the new.

        Raises:
            ApprovalError: a decision for a call this pause does not hold, a value that is
                not a :class:`Decision`, or a different decision for a call already decided.
        """
        merged = dict(self.decided)
        pending = set(self.call_ids)
        for call_id, decision in decisions.items():
            if not isinstance(decision, Decision):
                raise ApprovalError(f"the decision for {call_id!r} must be approve() or reject()")
            earlier = merged.get(call_id)
            if earlier is not None:
                if not earlier.same_as(decision):
                    raise ApprovalError(f"call {call_id!r} was already decided")
                continue
            if call_id not in pending:
                known = ", ".join(sorted(pending)) or "none"
                raise ApprovalError(
                    f"no call {call_id!r} awaits approval in {self.turn_id} (pending: {known})"
                )
            merged[call_id] = decision
        return merged

    def with_decisions(self, decisions: Mapping[str, Decision]) -> PendingApproval:
        """This pause with ``decisions`` recorded (checked as :meth:`checked`)."""
        return replace(self, decided=self.checked(decisions))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (``json.dumps`` it, store it, hand it to another process)."""
        return {
            "protocol": self.protocol,
            "turn_id": self.turn_id,
            "conversation": self.conversation,
            "calls": [
                {
                    "id": c.id,
                    "tool": c.tool,
                    "arguments": dict(c.arguments),
                    "raw_arguments": c.raw_arguments,
                }
                for c in self.calls
            ],
            "decided": {k: d.to_json() for k, d in self.decided.items()},
            "completed": [result_to_json(r) for r in self.completed],
            "expires_at": self.expires_at,
            "paused_at": self.paused_at,
            "scope": self.scope,
            "rounds": self.rounds,
            "calls_seen": self.calls_seen,
            "repeats": dict(self.repeats),
            "model": self.model,
            "instructions": self.instructions,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PendingApproval:
        """The pause :meth:`to_json` described.

        Raises:
            ApprovalError: the data is not a pending approval.
        """
        try:
            return cls(
                protocol=str(data["protocol"]),
                turn_id=str(data["turn_id"]),
                conversation=data.get("conversation"),
                calls=tuple(
                    PendingCall(
                        str(c["id"]), str(c["tool"]), dict(c["arguments"]), str(c["raw_arguments"])
                    )
                    for c in data["calls"]
                ),
                decided={k: Decision.from_json(v) for k, v in data.get("decided", {}).items()},
                completed=tuple(result_from_json(r) for r in data.get("completed", ())),
                expires_at=data.get("expires_at"),
                paused_at=float(data.get("paused_at") or time.time()),
                scope=data.get("scope"),
                rounds=int(data.get("rounds", 0)),
                calls_seen=int(data.get("calls_seen", 0)),
                repeats={str(k): int(v) for k, v in data.get("repeats", {}).items()},
                model=data.get("model"),
                instructions=data.get("instructions"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ApprovalError(f"not a pending approval: {exc!r}") from exc


def rejected_result(call: ToolCall, reason: str, *, error_type: str = "rejected") -> ToolCallResult:
    """The output of a rejected call: an error the model reads as ``rejected: <reason>``."""
    message = f"rejected: {reason}"
    return ToolCallResult(
        tool_call_id=call.id,
        name=call.name,
        arguments=call.arguments,
        output=error_output(error_type, message, call.name),
        is_error=True,
        seconds=0.0,
        error_type=error_type,
    )


def rejection_of(call: ToolCall, decision: Decision) -> ToolCallResult:
    """The output of ``call`` rejected by ``decision`` (a person's, or a timeout's)."""
    kind = "approval_timeout" if decision.by == TIMED_OUT_BY else "rejected"
    return rejected_result(call, decision.reason or "no reason given", error_type=kind)


def timed_out(pending: PendingApproval) -> dict[str, Decision]:
    """Rejections of every undecided call of ``pending``: the approval timed out."""
    return {c.id: timeout_decision() for c in pending.calls if c.id not in pending.decided}


def result_to_json(result: ToolCallResult) -> dict[str, Any]:
    return {
        "tool_call_id": result.tool_call_id,
        "name": result.name,
        "arguments": result.arguments,
        "output": result.output,
        "is_error": result.is_error,
        "seconds": result.seconds,
        "error_type": result.error_type,
    }


def result_from_json(data: Mapping[str, Any]) -> ToolCallResult:
    return ToolCallResult(
        tool_call_id=str(data["tool_call_id"]),
        name=str(data["name"]),
        arguments=str(data["arguments"]),
        output=str(data["output"]),
        is_error=bool(data["is_error"]),
        seconds=float(data.get("seconds", 0.0)),
        error_type=data.get("error_type"),
    )


def undecided(pending: PendingApproval) -> Iterable[PendingCall]:
    return (c for c in pending.calls if c.id not in pending.decided)
