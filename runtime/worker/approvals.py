"""Durable pauses for approval, decisions from outside, and the write ledger of the stores.

A run that pauses for a person (a tool with ``needs_approval``) makes its job
``awaiting_approval``: the queue stores the run's pending state (the calls, the outputs
already computed, the turn to resume) and no worker holds the job. Decisions come from
``python -m runtime approve JOB CALL`` / ``reject JOB CALL --reason ...``, from the worker's
HTTP endpoint ``POST /jobs/{job}/calls/{call}/approve`` (or ``/reject``, body
``{"reason": ..., "by": ...}``), or from :func:`decide`. Each is recorded (who, when, what)
and idempotent: the same decision again changes nothing, a different one for a decided call
is refused. The last decision queues the job again; a worker resumes the run: approved calls
run, rejected ones get ``rejected: <reason>``, and the round is submitted once.

A pause that reaches its ``expires_at`` (``worker.approval_expiry_s``, and never past the
Assistants run's ``expires_at - expiry_margin_s``) has its undecided calls rejected as timed
out (``by="approval_timeout"``) by the next worker that sweeps (:func:`expire_pauses`).

Nothing is lost or done twice when a worker dies: during the pause no worker is involved;
during the resumed round the outputs already computed are stored per call, and every
``write`` tool's execution is recorded in the store's ledger (:class:`StoreLedger`) before it
starts, so a successor never runs it again blindly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

from runtime.core.ledger import WriteKey, WriteRecord
from runtime.worker.models import DecisionRecord, JobRecord, JobState, Lease, PauseRecord

__all__ = [
    "ApprovalStore",
    "DecisionError",
    "DecisionOutcome",
    "StoreLedger",
    "decide",
    "expire_pauses",
    "timed_out",
]

#: ``recorded``: stored, other calls still wait; ``queued``: stored, and it was the last, so
#: the job is queued again; ``unchanged``: the same decision was recorded before.
DecisionOutcome = Literal["recorded", "queued", "unchanged"]

TIMED_OUT_BY = "approval_timeout"


class DecisionError(ValueError):
    """A decision the job cannot take: no such job, not paused, no such call, or a call
    decided otherwise before."""


@runtime_checkable
class ApprovalStore(Protocol):
    """What a queue backend stores for pauses and writes (memory, sqlite, Redis)."""

    async def pause(self, lease: Lease, pause: PauseRecord) -> bool:
        """Make the leased job ``awaiting_approval`` with ``pause`` (fenced; acknowledges the
        delivery); ``False`` when fenced off."""
        ...

    async def decide(self, job_id: str, call_id: str, decision: DecisionRecord) -> DecisionOutcome:
        """Record ``decision`` atomically (see :func:`check_decision`); the last one queues
        the job again.

        Raises:
            DecisionError: see :func:`check_decision`.
        """
        ...

    async def paused_before(self, when: float) -> list[str]:
        """Ids of jobs awaiting approval whose pause expires at or before ``when``."""
        ...

    async def write_lookup(self, key: str) -> str | None:
        """The write record stored under ``key`` (JSON), if any."""
        ...

    async def write_start(self, key: str, record: str) -> str | None:
        """Store ``record`` under ``key`` unless one exists; return the existing one."""
        ...

    async def write_finish(self, key: str, record: str) -> None:
        """Store the finished ``record`` under ``key``."""
        ...


def check_decision(
    record: JobRecord | None, call_id: str, decision: DecisionRecord
) -> tuple[DecisionOutcome, bool]:
    """Whether ``decision`` can be recorded on ``record``; and whether it is the last.

    Returns:
        ``("unchanged", False)`` for a decision recorded before, else ``("recorded",
        last)``.

    Raises:
        DecisionError: no such job, a different decision recorded before, a job not
            awaiting approval, or a call its pause does not hold.
    """
    if record is None:
        raise DecisionError("no such job")
    progress = record.progress
    earlier = progress.decisions.get(call_id)
    if earlier is not None:
        if earlier.same_as(decision):
            return "unchanged", False
        verdict = "approved" if earlier.approved else "rejected"
        raise DecisionError(f"call {call_id} was already {verdict} (by {earlier.by or 'someone'})")
    pause = progress.pause
    if record.state is not JobState.AWAITING_APPROVAL or pause is None:
        raise DecisionError(f"job {record.job_id} is not awaiting approval (it is {record.state})")
    if call_id not in pause.call_ids:
        raise DecisionError(
            f"no call {call_id} awaits approval in job {record.job_id} "
            f"(pending: {', '.join(pause.call_ids)})"
        )
    decided = {k for k in progress.decisions if k in pause.call_ids} | {call_id}
    return "recorded", decided >= set(pause.call_ids)


async def decide(
    queue: object, job_id: str, call_id: str, decision: DecisionRecord
) -> DecisionOutcome:
    """Record a decision on a paused job's call (the library call; the CLI and the HTTP
    endpoint use it).

    Args:
        queue: the job's queue (memory, sqlite or Redis).
        job_id: the job.
        call_id: the tool call.
        decision: ``DecisionRecord(approved=..., reason=..., by=...)``.

    Raises:
        DecisionError: see :func:`check_decision` (also: a rejection without a reason).
        TypeError: the queue keeps no pauses.
    """
    if not isinstance(queue, ApprovalStore):
        raise TypeError(f"{type(queue).__name__} keeps no pauses for approval")
    if not decision.approved and not (decision.reason or "").strip():
        raise DecisionError("a rejection needs a reason the model can read")
    return await queue.decide(job_id, call_id, decision)


def timed_out() -> DecisionRecord:
    """The rejection of a call whose pause expired."""
    return DecisionRecord(approved=False, reason="approval timed out", by=TIMED_OUT_BY)


async def expire_pauses(queue: object, now: float | None = None) -> list[str]:
    """Reject the undecided calls of every expired pause (queueing the job again).

    Returns:
        The jobs queued again.
    """
    if not isinstance(queue, ApprovalStore):
        return []
    expired: list[str] = []
    for job_id in await queue.paused_before(time.time() if now is None else now):
        record = await queue.get(job_id)  # type: ignore[attr-defined]
        if record is None or record.progress.pause is None:
            continue
        for call_id in record.progress.pause.call_ids:
            if call_id in record.progress.decisions:
                continue
            try:
                if await queue.decide(job_id, call_id, timed_out()) == "queued":
                    expired.append(job_id)
            except DecisionError:
                break  # decided meanwhile: someone else moved it on
    return expired


class StoreLedger:
    """A :class:`~runtime.core.ledger.WriteLedger` kept in a queue's store (it survives
    crashes with the jobs)."""

    def __init__(self, store: ApprovalStore) -> None:
        self._store = store

    async def lookup(self, key: WriteKey) -> WriteRecord | None:
        text = await self._store.write_lookup(key.as_text())
        return None if text is None else WriteRecord.from_json(_loads(text))

    async def record_start(self, key: WriteKey, call_id: str) -> WriteRecord | None:
        record = WriteRecord(call_id, time.time())
        existing = await self._store.write_start(key.as_text(), _dumps(record.to_json()))
        return None if existing is None else WriteRecord.from_json(_loads(existing))

    async def record_finish(self, key: WriteKey, output: str, is_error: bool) -> None:
        started = await self.lookup(key)
        call_id = started.call_id if started is not None else ""
        began = started.started_at if started is not None else time.time()
        record = WriteRecord(call_id, began, output, is_error, time.time())
        await self._store.write_finish(key.as_text(), _dumps(record.to_json()))


def _dumps(data: Mapping[str, object]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _loads(text: str) -> dict[str, object]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
