"""In-process queue backend: for a worker embedded in a service (submit, then await the result).

Nothing survives the process, but leases, fencing, retries and dead-lettering behave exactly as
in the durable backends, so a service can swap backends by configuration. Lease and retry
deadlines run on the monotonic clock: a wall-clock step never expires a live lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from runtime.worker.approvals import DecisionOutcome, check_decision
from runtime.worker.models import (
    DecisionRecord,
    Job,
    JobRecord,
    JobResult,
    JobState,
    Lease,
    PauseRecord,
    Progress,
    QueueStats,
    ToolOutput,
)
from runtime.worker.queue import LeaseLost, outputs_of, wait_for_result

__all__ = ["MemoryQueue"]


@dataclass
class _Entry:
    job: Job
    seq: int
    submitted_at: float
    state: JobState = JobState.QUEUED
    attempt: int = 0
    owner: str | None = None
    # Deadlines on time.monotonic(); the timestamps shown in records are wall-clock.
    available_at: float = 0.0
    lease_until: float = 0.0
    updated_at: float = 0.0
    last_error: str | None = None
    result: JobResult | None = None
    conversation_id: str | None = None
    run_id: str | None = None
    run_seq: int = 0
    worker_cancelled: bool = False
    tool_outputs: dict[str, ToolOutput] = field(default_factory=dict)
    pause: PauseRecord | None = None
    decisions: dict[str, DecisionRecord] = field(default_factory=dict)
    pauses: int = 0

    def progress(self) -> Progress:
        return Progress(
            conversation_id=self.conversation_id,
            run_id=self.run_id,
            run_seq=self.run_seq,
            worker_cancelled=self.worker_cancelled,
            tool_outputs=dict(self.tool_outputs),
            pause=self.pause,
            decisions=dict(self.decisions),
        )

    def record(self) -> JobRecord:
        return JobRecord(
            job_id=self.job.id,
            job=self.job,
            state=self.state,
            attempt=self.attempt,
            owner=self.owner,
            progress=self.progress(),
            submitted_at=self.submitted_at,
            updated_at=self.updated_at,
            last_error=self.last_error,
            result=self.result,
        )


class MemoryQueue:
    """A :class:`~runtime.worker.queue.JobQueue` kept in this process's memory.

    Args:
        lease_s: a lease not extended by a heartbeat for this long is claimable by others.
        max_deliveries: deliveries after which a job goes to the dead-letter list.
    """

    def __init__(self, *, lease_s: float = 30.0, max_deliveries: int = 5) -> None:
        self._lease_s = lease_s
        self._max_deliveries = max_deliveries
        self._entries: dict[str, _Entry] = {}
        self._dead: list[str] = []
        self._seq = 0
        self._changed = asyncio.Condition()
        self._writes: dict[str, str] = {}

    async def submit(self, job: Job) -> bool:
        """Enqueue ``job`` unless its id exists."""
        if job.id in self._entries:
            return False
        now = time.time()
        self._seq += 1
        self._entries[job.id] = _Entry(
            job=job,
            seq=self._seq,
            submitted_at=now,
            available_at=time.monotonic(),
            updated_at=now,
        )
        await self._notify()
        return True

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        """Lease up to ``count`` claimable jobs, waiting up to ``wait_s`` for one."""
        deadline = time.monotonic() + wait_s
        while True:
            leases = self._claim_now(consumer, count)
            remaining = deadline - time.monotonic()
            if leases or count <= 0 or remaining <= 0:
                return leases
            async with self._changed:
                # Wake on submit/release, or re-check soon for expiring leases and delays.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.05))

    def _claim_now(self, consumer: str, count: int) -> list[Lease]:
        now, mono = time.time(), time.monotonic()
        leases: list[Lease] = []
        for entry in sorted(self._entries.values(), key=lambda e: e.seq):
            if len(leases) >= count:
                break
            if not self._claimable(entry, mono):
                continue
            entry.attempt += 1
            entry.updated_at = now
            if entry.attempt - entry.pauses > self._max_deliveries:  # a resume is no redelivery
                self._bury(entry, f"delivered {entry.attempt - 1} times without a result")
                continue
            entry.state = JobState.RUNNING
            entry.owner = consumer
            entry.lease_until = mono + self._lease_s
            leases.append(
                Lease(
                    job=entry.job,
                    attempt=entry.attempt,
                    consumer=consumer,
                    progress=entry.progress(),
                    submitted_at=entry.submitted_at,
                    claimed_at=now,
                )
            )
        return leases

    @staticmethod
    def _claimable(entry: _Entry, now: float) -> bool:
        if entry.state is JobState.QUEUED:
            return entry.available_at <= now
        return entry.state is JobState.RUNNING and entry.lease_until <= now

    def _bury(self, entry: _Entry, error: str) -> None:
        entry.state = JobState.DEAD
        entry.last_error = error
        entry.updated_at = time.time()
        self._dead.append(entry.job.id)

    def _fenced(self, lease: Lease) -> _Entry | None:
        entry = self._entries.get(lease.job.id)
        if entry is None or entry.attempt != lease.attempt or entry.state is not JobState.RUNNING:
            return None
        return entry

    async def heartbeat(self, lease: Lease) -> bool:
        """Extend the lease while it is still ours."""
        entry = self._fenced(lease)
        if entry is None:
            return False
        entry.lease_until = time.monotonic() + self._lease_s
        return True

    async def save_progress(
        self,
        lease: Lease,
        *,
        conversation_id: str | None = None,
        run_id: str | None = None,
        tool_output: ToolOutput | None = None,
        tool_outputs: Sequence[ToolOutput] = (),
    ) -> None:
        """Record progress or raise :class:`LeaseLost`."""
        entry = self._fenced(lease)
        if entry is None:
            raise LeaseLost(lease.job.id, lease.attempt)
        if conversation_id is not None:
            entry.conversation_id = conversation_id
        if run_id is not None:
            entry.run_id = run_id
        for output in outputs_of(tool_output, tool_outputs):
            entry.tool_outputs[output.id] = output
        entry.updated_at = time.time()

    async def complete(self, lease: Lease, result: JobResult) -> bool:
        """Store the result and finish the job."""
        entry = self._fenced(lease)
        if entry is None:
            return False
        entry.result = result
        entry.state = JobState.DONE
        entry.updated_at = time.time()
        return True

    async def complete_and_claim(
        self, lease: Lease, result: JobResult, consumer: str, count: int
    ) -> tuple[bool, list[Lease]]:
        """Store the result and finish the job, then (only then) lease up to ``count`` jobs."""
        if not await self.complete(lease, result):
            return False, []
        return True, self._claim_now(consumer, count)

    async def release(
        self,
        lease: Lease,
        *,
        delay_s: float = 0.0,
        error: str | None = None,
        worker_cancelled: bool = False,
    ) -> bool:
        """Put the job back, claimable after ``delay_s``."""
        entry = self._fenced(lease)
        if entry is None:
            return False
        entry.state = JobState.QUEUED
        entry.available_at = time.monotonic() + delay_s
        entry.updated_at = time.time()
        entry.last_error = error if error is not None else entry.last_error
        entry.worker_cancelled = entry.worker_cancelled or worker_cancelled
        await self._notify()
        return True

    async def dead_letter(self, lease: Lease, error: str) -> bool:
        """Move the job to the dead-letter list."""
        entry = self._fenced(lease)
        if entry is None:
            return False
        self._bury(entry, error)
        return True

    async def flag_run_cancelled(self, job_id: str, run_id: str) -> bool:
        """Mark the job's current run as cancelled by a worker."""
        entry = self._entries.get(job_id)
        if entry is None or entry.run_id != run_id:
            return False
        entry.worker_cancelled = True
        return True

    async def new_run_generation(self, lease: Lease) -> Lease:
        """Forget a drain-cancelled run so the next run gets a fresh idempotency key."""
        entry = self._fenced(lease)
        if entry is None:
            raise LeaseLost(lease.job.id, lease.attempt)
        entry.run_id = None
        entry.run_seq += 1
        entry.worker_cancelled = False
        entry.tool_outputs.clear()
        return lease.model_copy(update={"progress": entry.progress()})

    # -- pauses and writes (runtime.worker.approvals.ApprovalStore) -------------------------

    async def pause(self, lease: Lease, pause: PauseRecord) -> bool:
        """Make the job ``awaiting_approval`` (fenced)."""
        entry = self._fenced(lease)
        if entry is None:
            return False
        entry.state = JobState.AWAITING_APPROVAL
        entry.pauses += 1
        entry.pause = pause
        entry.decisions = {}
        entry.owner = None
        entry.updated_at = time.time()
        return True

    async def decide(self, job_id: str, call_id: str, decision: DecisionRecord) -> DecisionOutcome:
        """Record a decision; the last one queues the job."""
        entry = self._entries.get(job_id)
        outcome, last = check_decision(entry.record() if entry else None, call_id, decision)
        if outcome == "unchanged" or entry is None:
            return outcome
        entry.decisions[call_id] = decision
        entry.updated_at = time.time()
        if not last:
            return "recorded"
        entry.state = JobState.QUEUED
        entry.available_at = time.monotonic()
        await self._notify()
        return "queued"

    async def paused_before(self, when: float) -> list[str]:
        """Paused jobs whose pause expires by ``when``."""
        return [
            e.job.id
            for e in self._entries.values()
            if e.state is JobState.AWAITING_APPROVAL and e.pause and e.pause.expires_at <= when
        ]

    async def write_lookup(self, key: str) -> str | None:
        """The write record under ``key``."""
        return self._writes.get(key)

    async def write_start(self, key: str, record: str) -> str | None:
        """Store ``record`` unless one exists (then return it)."""
        existing = self._writes.get(key)
        if existing is None:
            self._writes[key] = record
        return existing

    async def write_finish(self, key: str, record: str) -> None:
        """Store the finished record."""
        self._writes[key] = record

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or ``None``."""
        entry = self._entries.get(job_id)
        return entry.record() if entry else None

    async def recent(self, limit: int = 20) -> list[JobRecord]:
        """Newest jobs first."""
        entries = sorted(self._entries.values(), key=lambda e: e.seq, reverse=True)
        return [e.record() for e in entries[:limit]]

    async def dead_letters(self, limit: int = 100) -> list[JobRecord]:
        """Dead jobs, oldest first."""
        return [self._entries[job_id].record() for job_id in self._dead[:limit]]

    async def stats(self) -> QueueStats:
        """Counts by state and the age of the oldest waiting job."""
        now = time.time()
        queued = [e for e in self._entries.values() if e.state is JobState.QUEUED]
        running = sum(1 for e in self._entries.values() if e.state is JobState.RUNNING)
        paused = sum(1 for e in self._entries.values() if e.state is JobState.AWAITING_APPROVAL)
        oldest = min((e.submitted_at for e in queued), default=now)
        return QueueStats(
            queued=len(queued),
            running=running,
            awaiting_approval=paused,
            dead=len(self._dead),
            oldest_queued_age_s=max(0.0, now - oldest),
        )

    async def ping(self) -> None:
        """Always reachable."""

    async def aclose(self) -> None:
        """Nothing to release."""

    async def result(self, job_id: str, timeout_s: float) -> JobRecord | None:
        """Wait for the job to finish (the embedded "submit and await" path)."""
        return await wait_for_result(self, job_id, timeout_s=timeout_s, poll_s=0.01)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
