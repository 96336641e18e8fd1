"""The queue seam: one small interface, three backends (memory, sqlite, redis).

Every write a worker makes about a leased job (progress, result, release, dead-letter) is
fenced by the lease's ``attempt``: it only takes effect while the job's stored attempt counter
still equals it. A claim increments the counter, so after a successor claims a job the old
holder's writes are refused (``LeaseLost`` / ``False``) instead of overwriting newer state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from runtime.worker.models import Job, JobRecord, JobResult, Lease, QueueStats, ToolOutput

__all__ = [
    "ClaimsOnComplete",
    "JobQueue",
    "LeaseLost",
    "QueueError",
    "outputs_of",
    "wait_for_result",
]


def outputs_of(
    tool_output: ToolOutput | None, tool_outputs: Sequence[ToolOutput]
) -> list[ToolOutput]:
    """The tool outputs of one :meth:`JobQueue.save_progress` call, in order."""
    outputs = list(tool_outputs)
    if tool_output is not None:
        outputs.append(tool_output)
    return outputs


class QueueError(Exception):
    """The queue backend failed (connection lost, corrupt record, ...)."""


class LeaseLost(QueueError):
    """A fenced write was refused: another worker holds a newer lease on the job.

    Attributes:
        job_id: the job.
        attempt: the stale attempt the write carried.
    """

    def __init__(self, job_id: str, attempt: int) -> None:
        super().__init__(f"lease on job {job_id!r} attempt {attempt} was taken over")
        self.job_id = job_id
        self.attempt = attempt

    def __repr__(self) -> str:
        return f"LeaseLost(job_id={self.job_id!r}, attempt={self.attempt})"


@runtime_checkable
class JobQueue(Protocol):
    """Durable job queue with leases, fencing and dead-lettering."""

    async def submit(self, job: Job) -> bool:
        """Enqueue ``job``; return ``False`` (and change nothing) if its id already exists."""
        ...

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        """Lease up to ``count`` jobs: idle leases of dead workers first, then new jobs.

        Waits up to ``wait_s`` when nothing is available. Jobs past ``max_deliveries``, and
        records that cannot be read (:class:`~runtime.worker.models.MalformedRecord`: bad JSON,
        missing or invalid fields), are moved to the dead-letter store here, with the reason,
        instead of being returned; the other jobs of the claim are returned as usual. Fields
        of a job unknown to this version are ignored (logged as ``worker.job_unknown_fields``).
        """
        ...

    async def heartbeat(self, lease: Lease) -> bool:
        """Extend the lease; ``False`` means it was lost to another worker."""
        ...

    async def save_progress(
        self,
        lease: Lease,
        *,
        conversation_id: str | None = None,
        run_id: str | None = None,
        tool_output: ToolOutput | None = None,
        tool_outputs: Sequence[ToolOutput] = (),
    ) -> None:
        """Durably record run progress in one fenced write (``tool_output`` and every one of
        ``tool_outputs`` together); raises :class:`LeaseLost` when fenced off."""
        ...

    async def complete(self, lease: Lease, result: JobResult) -> bool:
        """Store the result, then acknowledge; ``False`` when fenced off (nothing written)."""
        ...

    async def release(
        self,
        lease: Lease,
        *,
        delay_s: float = 0.0,
        error: str | None = None,
        worker_cancelled: bool = False,
    ) -> bool:
        """Give the job back unacknowledged, claimable again after ``delay_s``.

        ``worker_cancelled`` records that this worker cancelled the job's run, so the next
        attempt starts a new run generation instead of resuming a cancelled run.
        """
        ...

    async def dead_letter(self, lease: Lease, error: str) -> bool:
        """Move the job to the dead-letter store and acknowledge it."""
        ...

    async def flag_run_cancelled(self, job_id: str, run_id: str) -> bool:
        """Record that a worker is cancelling ``run_id`` of the job (not fenced).

        Used by a worker that lost its lease just before its attempt is stopped (which cancels
        the run on the server): the successor, finding that run cancelled, then starts a new
        run generation instead of storing ``cancelled`` as the job's result. Only takes effect
        while ``run_id`` is still the job's current run.
        """
        ...

    async def new_run_generation(self, lease: Lease) -> Lease:
        """Forget the current run (it was cancelled by a drain); return the updated lease."""
        ...

    async def get(self, job_id: str) -> JobRecord | None:
        """The stored record of a job, or ``None``.

        A record that cannot be read comes back with ``job=None`` and the reason in
        ``last_error`` (the same for :meth:`recent` and :meth:`dead_letters`), never an error.
        """
        ...

    async def recent(self, limit: int = 20) -> list[JobRecord]:
        """The most recently submitted jobs, newest first."""
        ...

    async def dead_letters(self, limit: int = 100) -> list[JobRecord]:
        """Jobs in the dead-letter store, oldest first."""
        ...

    async def stats(self) -> QueueStats:
        """Counts for metrics and burst mode."""
        ...

    async def ping(self) -> None:
        """Raise :class:`QueueError` if the backend is unreachable."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class ClaimsOnComplete(Protocol):
    """A queue that can lease the next jobs in the operation that stores a result.

    The worker uses it for the slot a finished job frees: the result and the next claim go
    in one write (sqlite: one transaction) instead of two, and the claim happens only once
    the result is stored, so the worker never holds more jobs than it has slots.
    """

    async def complete_and_claim(
        self, lease: Lease, result: JobResult, consumer: str, count: int
    ) -> tuple[bool, list[Lease]]:
        """:meth:`JobQueue.complete`, then, only when the result was stored, a claim of up to
        ``count`` jobs that does not wait, together: both take effect or neither does (an
        error raises :class:`QueueError` with nothing written). Returns what ``complete``
        returns and the leases (none when fenced off)."""
        ...


async def wait_for_result(
    queue: JobQueue, job_id: str, *, timeout_s: float, poll_s: float = 0.05
) -> JobRecord | None:
    """Poll until the job is done or dead.

    Args:
        queue: the queue holding the job.
        job_id: the job.
        timeout_s: give up after this many seconds.
        poll_s: first polling interval; grows up to 0.5 s.

    Returns:
        The finished record, or ``None`` on timeout (or if the job does not exist).
    """
    deadline = time.monotonic() + timeout_s
    interval = poll_s
    while True:
        record = await queue.get(job_id)
        if record is not None and record.finished:
            return record
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 1.5, 0.5)
