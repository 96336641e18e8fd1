"""The worker loop: claim jobs for free slots, run them, heartbeat, store results, drain.

Guarantees:

* a job is acknowledged (``complete``/``dead_letter``) only after its result is stored, and
  both happen in one fenced queue operation;
* the loop never claims more jobs than it has free slots; a finished job's slot is refilled
  by the write that stores its result when the queue offers it
  (:class:`~runtime.worker.queue.ClaimsOnComplete`): one operation instead of two, the claim
  only once the result is stored;
* ``drain()`` (SIGTERM/SIGINT) stops claiming, lets in-flight jobs finish within the grace
  period, then cancels the rest: the orchestrator cancels their runs on the server and the
  jobs are released unacknowledged (flagged ``worker_cancelled``) for another worker;
* a job whose attempt raised is released for a retry after ``retry_delay_s``, and moved to the
  dead-letter store once it has used ``max_deliveries`` deliveries;
* a lease taken over by another worker (heartbeat refused) stops the local attempt and
  writes nothing more;
* storing a result is retried with backoff for as long as the job's lease lives (heartbeats
  go on meanwhile), so a queue outage shorter than the lease neither gives the job up nor
  makes a successor redo it; the attempt stops only when the lease is lost (the queue fences
  it off) or has lapsed without a heartbeat reaching the queue (the next owner resumes);
* no error of the queue (a transient outage, a record it cannot read) ends the loop: claims
  and heartbeats log it and go on, with backoff;
* a run paused for approval makes its job ``awaiting_approval`` (a fenced write that also
  acknowledges the delivery; see :mod:`runtime.worker.approvals`); each heartbeat round also
  rejects the undecided calls of expired pauses, which queues their jobs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
from dataclasses import dataclass

import structlog

from runtime.logging import ModuleLogger
from runtime.worker.approvals import ApprovalStore, expire_pauses
from runtime.worker.metrics import WorkerMetrics
from runtime.worker.models import JobResult, JobTimings, Lease, PauseRecord, ToolOutput
from runtime.worker.queue import ClaimsOnComplete, JobQueue, LeaseLost, QueueError
from runtime.worker.runner import JobContext, JobExecutor, JobFailed, RunOutcome

__all__ = ["Worker", "WorkerOptions"]

log = ModuleLogger("runtime.worker")

_STORE_FIRST_DELAY_S = 0.1
_STORE_MAX_DELAY_S = 2.0


@dataclass(frozen=True)
class WorkerOptions:
    """Knobs of the worker loop (see ``config/worker.toml`` for each).

    Attributes:
        consumer: this worker's name in the queue.
        concurrency: jobs at once.
        grace_period_s: drain: how long in-flight jobs may still finish.
        heartbeat_s: lease heartbeat interval.
        lease_s: the queue's lease; bounds how long a result store is retried without a
            heartbeat reaching the queue.
        claim_wait_s: longest blocking wait of one claim.
        retry_delay_s: delay before a failed attempt's job is offered again.
        max_deliveries: deliveries after which a failing job is dead-lettered.
        burst: return once the queue has no unfinished job.
        cancel_wait_s: how long a cancelled run may take to stop (the run policy's wait for
            the server to confirm the cancel); a job still running after it plus 5 s is
            cancelled again, then abandoned to its lease.
        approval_expiry_s: how long a job may wait for approval before its undecided calls
            are rejected (never past an Assistants run's ``expires_at - expiry_margin_s``).
        expiry_margin_s: the run policy's margin before a run's ``expires_at``.
    """

    consumer: str
    concurrency: int = 4
    grace_period_s: float = 30.0
    heartbeat_s: float = 10.0
    lease_s: float = 30.0
    claim_wait_s: float = 1.0
    retry_delay_s: float = 2.0
    max_deliveries: int = 5
    burst: bool = False
    cancel_wait_s: float = 10.0
    approval_expiry_s: float = 86_400.0
    expiry_margin_s: float = 10.0


@dataclass
class _InFlight:
    ctx: JobContext
    task: asyncio.Task[None]
    # time.monotonic() of the claim or of the last heartbeat the queue accepted.
    lease_confirmed: float
    drained: bool = False
    # The run is over and its result is being stored: a lost lease must not flag the run as
    # cancelled (the successor then adopts the finished run instead of starting a new one).
    storing: bool = False


class Worker:
    """Processes jobs from a queue with bounded concurrency until drained.

    Args:
        queue: where jobs come from and results go.
        executor: runs one job (see :class:`~runtime.worker.runner.RunExecutor`).
        options: loop settings.
        metrics: Prometheus series to update (a fresh set by default).
    """

    def __init__(
        self,
        queue: JobQueue,
        executor: JobExecutor,
        options: WorkerOptions,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.queue = queue
        self.options = options
        self.metrics = metrics or WorkerMetrics()
        self._executor = executor
        # Keyed by (job id, attempt): after a stall this worker may reclaim a job whose older
        # attempt it still runs; the older one is then fenced off by its next heartbeat.
        self._in_flight: dict[tuple[str, int], _InFlight] = {}
        # Read when scraped, not set at every job's start and end.
        self.metrics.in_flight.set_function(self._in_flight.__len__)
        self._draining = asyncio.Event()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._wake = asyncio.Event()
        self._processed = 0
        # A finished job's slot is refilled by the write that stores its result.
        self._claimer = queue if isinstance(queue, ClaimsOnComplete) else None
        # The context jobs start in: the claim loop's, never a finished job's (its run id
        # and trace are bound in its own).
        self._job_context: contextvars.Context | None = None

    @property
    def draining(self) -> bool:
        """Whether :meth:`drain` was called."""
        return self._draining.is_set()

    @property
    def in_flight(self) -> int:
        """Jobs running now."""
        return len(self._in_flight)

    @property
    def processed(self) -> int:
        """Jobs this worker finished (result stored or dead-lettered)."""
        return self._processed

    def drain(self) -> None:
        """Stop taking jobs; :meth:`run` then finishes in-flight jobs and returns.

        A second call (a second SIGTERM/SIGINT) ends the grace period at once.
        """
        if self._draining.is_set():
            log.warning("worker.drain_hurried", in_flight=self.in_flight)
            self._hurry.set()
        else:
            log.info("worker.draining", in_flight=self.in_flight)
            self.metrics.draining.set(1)
        self._draining.set()
        self._wake.set()

    async def run(self) -> None:
        """Process jobs until drained (or, in burst mode, until the queue is empty)."""
        log.info("worker.started", consumer=self.options.consumer, **_opts(self.options))
        self._stopping.clear()
        self._job_context = contextvars.copy_context()
        heartbeats = asyncio.create_task(self._heartbeat_loop(), name="worker-heartbeats")
        try:
            await self._claim_loop()
            await self._finish_in_flight()
        finally:
            # Only reached with jobs left on an error or outside cancellation: stop them.
            await self._cancel_in_flight()
            # Heartbeats stop on their own rather than by cancellation: a cancel landing inside
            # a client library's own timeout handling can be swallowed and hang the shutdown.
            self._stopping.set()
            await asyncio.wait([heartbeats], timeout=5.0)
            await _stop_tasks([heartbeats], patience_s=2.0)
        log.info("worker.stopped", processed=self._processed)

    # -- claiming -------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = 0.1
        while not self.draining:
            free = self.options.concurrency - len(self._in_flight)
            if free <= 0:
                await self._wait_wake()
                continue
            try:
                leases = await self.queue.claim(
                    self.options.consumer, free, self.options.claim_wait_s
                )
            except Exception as exc:
                # QueueError is the expected kind; anything else is a bug met on one claim,
                # and still no reason to stop serving every other job.
                if isinstance(exc, QueueError):
                    log.warning("worker.claim_failed", error=str(exc), retry_in_s=backoff)
                else:
                    log.error("worker.claim_crashed", error=repr(exc), retry_in_s=backoff)
                await self._sleep_unless_draining(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if self.draining:
                await self._give_back(leases)
                return
            for lease in leases:
                self._start(lease)
            if self.options.burst and not leases and await self._queue_empty():
                log.info("worker.burst_done")
                return

    async def _queue_empty(self) -> bool:
        if self._in_flight:
            return False
        try:
            return (await self.queue.stats()).unfinished == 0
        except Exception as exc:
            log.warning("worker.stats_failed", error=str(exc) or repr(exc))
            return False

    async def _give_back(self, leases: list[Lease]) -> None:
        for lease in leases:
            try:
                await self.queue.release(lease, error="claimed while draining")
            except Exception as exc:  # the lease lapses on its own: nothing is lost
                log.warning("worker.release_failed", job_id=lease.job.id, error=str(exc))

    async def _wait_wake(self) -> None:
        self._wake.clear()
        if self.draining or len(self._in_flight) < self.options.concurrency:
            return
        await self._wake.wait()

    async def _sleep_unless_draining(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._draining.wait(), timeout=seconds)

    # -- one job --------------------------------------------------------------------------

    def _start(self, lease: Lease) -> None:
        ctx = JobContext(queue=self.queue, lease=lease, on_tool=self._observe_tool)
        key = (lease.job.id, lease.attempt)
        context = None if self._job_context is None else self._job_context.copy()
        task = asyncio.create_task(
            self._process(ctx), name=f"job-{lease.job.id}-{lease.attempt}", context=context
        )
        self._in_flight[key] = _InFlight(ctx=ctx, task=task, lease_confirmed=time.monotonic())
        task.add_done_callback(functools.partial(self._reap, key))
        if lease.attempt > 1:
            self.metrics.retries.labels(reason="redelivered").inc()

    def _reap(self, key: tuple[str, int], _task: asyncio.Task[None]) -> None:
        entry = self._in_flight.pop(key, None)
        self._wake.set()
        if entry is not None and not entry.task.cancelled() and entry.task.exception():
            log.error("worker.job_crashed", job_id=key[0], error=repr(entry.task.exception()))

    async def _process(self, ctx: JobContext) -> None:
        lease = ctx.lease
        with structlog.contextvars.bound_contextvars(job_id=lease.job.id, attempt=lease.attempt):
            # A first delivery's start adds nothing to its worker.job_finished (which has the
            # seconds); a redelivery or a resumed run is worth a line of its own.
            if lease.attempt > 1 or lease.progress.run_id is not None:
                log.info("worker.job_started", run_id=lease.progress.run_id)
            else:
                log.debug("worker.job_started", run_id=None)
            started = time.time()
            try:
                outcome = await self._executor(ctx)
            except asyncio.CancelledError:
                await asyncio.shield(self._after_cancel(ctx))
                raise
            except JobFailed as exc:
                outcome = RunOutcome(
                    status="error",
                    run_id=ctx.run_id,
                    conversation_id=ctx.conversation_id,
                    error=exc.reason,
                )
            except LeaseLost:
                ctx.lost = True
                log.warning("worker.job_abandoned", reason="lease_lost")
                return
            except Exception as exc:
                await self._retry_or_bury(ctx, exc)
                return
            if outcome.pending is not None:
                await self._pause(ctx, outcome)
                return
            await self._store(ctx, outcome, started)

    async def _pause(self, ctx: JobContext, outcome: RunOutcome) -> None:
        """Store the run's pause as the job's state: no worker holds it until decided."""
        pending = outcome.pending
        assert pending is not None
        expires_at = time.time() + self.options.approval_expiry_s
        if pending.expires_at is not None:
            expires_at = min(expires_at, pending.expires_at - self.options.expiry_margin_s)
        pause = PauseRecord(
            pending=pending.to_json(), call_ids=pending.call_ids, expires_at=expires_at
        )
        if ctx.lost or not isinstance(self.queue, ApprovalStore):
            log.warning("worker.pause_discarded", reason="lease_lost" if ctx.lost else "queue")
            return
        await ctx.flush()  # the decisions resume the paused run by its id
        if ctx.lost:
            log.warning("worker.pause_discarded", reason="lease_lost")
            return
        try:
            paused = await self.queue.pause(ctx.lease, pause)
        except QueueError as exc:  # the lease lapses; the successor finds the turn waiting
            log.warning("worker.pause_not_saved", error=str(exc))
            return
        if paused:
            self.metrics.count_run("awaiting_approval")
            log.info(
                "worker.job_paused",
                run_id=outcome.run_id,
                calls=list(pending.call_ids),
                expires_at=round(expires_at, 3),
            )

    async def _store(self, ctx: JobContext, outcome: RunOutcome, started: float) -> None:
        if ctx.lost:
            log.warning("worker.result_discarded", reason="lease_lost", status=outcome.status)
            return
        result = _result(ctx.lease, outcome, started)
        entry = self._in_flight.get((ctx.lease.job.id, ctx.lease.attempt))
        if entry is not None:
            entry.storing = True
        stored, successors = await self._complete_within_lease(ctx, entry, result)
        if stored is None:
            return  # unacknowledged: the next owner adopts the finished run and stores it
        if not stored:
            log.warning("worker.result_discarded", reason="lease_lost", status=outcome.status)
            return
        self._processed += 1
        self.metrics.count_run(result.status)
        self.metrics.job_duration.observe(result.timings.run_seconds)
        log.info(
            "worker.job_finished",
            status=result.status,
            run_id=result.run_id,
            seconds=round(result.timings.run_seconds, 3),
            tool_calls=len(result.tool_calls),
            rounds=outcome.rounds,
            recoveries=outcome.recoveries,
        )
        if successors:
            await self._hand_slot_on(ctx.lease, successors)

    async def _hand_slot_on(self, lease: Lease, successors: list[Lease]) -> None:
        """Start the jobs claimed with this job's result in its slot (given back when
        draining)."""
        if self.draining:
            await self._give_back(successors)
            return
        # Nothing awaits after this: the job leaves the in-flight set before its successor
        # enters, so the set never holds more jobs than slots.
        self._in_flight.pop((lease.job.id, lease.attempt), None)
        for successor in successors:
            self._start(successor)

    async def _complete_within_lease(
        self, ctx: JobContext, entry: _InFlight | None, result: JobResult
    ) -> tuple[bool | None, list[Lease]]:
        """Store the result, retrying queue errors while the lease lives; the first try
        also claims the job that takes this one's slot, when the queue can do both at once.

        Returns:
            ``True`` stored, ``False`` fenced off (another worker owns the job), ``None`` given
            up: no heartbeat reached the queue for a whole lease; and the jobs claimed.
        """
        delay = _STORE_FIRST_DELAY_S
        store_attempt = 0
        while True:
            store_attempt += 1
            try:
                if store_attempt == 1 and self._claimer is not None and not self.draining:
                    consumer = self.options.consumer
                    return await self._claimer.complete_and_claim(ctx.lease, result, consumer, 1)
                return await self.queue.complete(ctx.lease, result), []
            except QueueError as exc:
                error = str(exc)
            if ctx.lost:
                return False, []
            confirmed = entry.lease_confirmed if entry is not None else time.monotonic()
            lease_left = confirmed + self.options.lease_s - time.monotonic()
            if lease_left <= 0:
                log.error(
                    "worker.store_abandoned",
                    reason="lease_lapsed",
                    error=error,
                    store_attempt=store_attempt,
                )
                return None, []
            wait = min(delay, lease_left)
            log.warning(
                "worker.store_failed",
                error=error,
                store_attempt=store_attempt,
                retry_in_s=round(wait, 3),
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, _STORE_MAX_DELAY_S)

    async def _retry_or_bury(self, ctx: JobContext, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        lease = ctx.lease
        try:
            if lease.attempt >= self.options.max_deliveries:
                if await self.queue.dead_letter(lease, error):
                    self._processed += 1
                    self.metrics.dead_letters.inc()
                    self.metrics.count_run("dead")
                    log.error("worker.job_dead", error=error, attempts=lease.attempt)
                return
            delay = self.options.retry_delay_s * lease.attempt
            if await self.queue.release(lease, delay_s=delay, error=error):
                self.metrics.retries.labels(reason="error").inc()
                log.warning("worker.job_retry", error=error, retry_in_s=delay)
        except QueueError as qexc:
            log.error("worker.release_failed", error=str(qexc), job_error=error)

    async def _after_cancel(self, ctx: JobContext) -> None:
        entry = self._in_flight.get((ctx.lease.job.id, ctx.lease.attempt))
        if ctx.lost or entry is None or not entry.drained:
            return
        # A run that already ended (the result was being stored) was not cancelled.
        cancelled_run = ctx.run_id is not None and not entry.storing
        try:
            # The next attempt then retrieves the cancelled run instead of searching for it.
            await ctx.flush()
            released = await self.queue.release(
                ctx.lease, error="worker drained", worker_cancelled=cancelled_run
            )
        except QueueError as exc:
            log.warning("worker.release_failed", error=str(exc))
            return
        if released:
            self.metrics.retries.labels(reason="drain").inc()
            log.warning("worker.job_released", reason="drain", run_id=ctx.run_id)

    def _observe_tool(self, output: ToolOutput) -> None:
        self.metrics.observe_tool_call(
            output.name, is_error=output.is_error, seconds=output.seconds
        )

    # -- heartbeats and shutdown ------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.options.heartbeat_s)
            for (job_id, _attempt), entry in list(self._in_flight.items()):
                # A job being given back (drain) is no longer ours to keep alive.
                if not (entry.drained or entry.task.done() or self._stopping.is_set()):
                    try:
                        await self._heartbeat(job_id, entry)
                    except Exception as exc:  # never let one job end every job's heartbeats
                        log.error("worker.heartbeat_crashed", job_id=job_id, error=repr(exc))
            await self._expire_pauses()

    async def _expire_pauses(self) -> None:
        try:
            expired = await expire_pauses(self.queue)
        except Exception as exc:  # a queue outage: the next round tries again
            log.warning("worker.pause_sweep_failed", error=str(exc) or repr(exc))
            return
        for job_id in expired:
            log.warning("worker.pause_expired", job_id=job_id)

    async def _heartbeat(self, job_id: str, entry: _InFlight) -> None:
        sent = time.monotonic()
        try:
            alive = await self.queue.heartbeat(entry.ctx.lease)
        except Exception as exc:  # QueueError, or a bug: neither may stop the heartbeats
            log.warning("worker.heartbeat_failed", job_id=job_id, error=str(exc) or repr(exc))
            return
        if alive:
            entry.lease_confirmed = sent
            return
        if entry.storing and not entry.task.done():
            # The run is over: nothing to cancel on the server, and the successor must adopt
            # the finished run, so the run is not flagged. The store loop sees `lost`.
            entry.ctx.lost = True
            log.warning("worker.lease_lost", job_id=job_id, attempt=entry.ctx.lease.attempt)
            return
        if not entry.task.done():
            # Another worker owns the job now: stop here and write nothing more. Stopping
            # cancels our run on the server, so flag it first: the successor then starts a new
            # run instead of taking "cancelled" for the job's result.
            entry.ctx.lost = True
            log.warning("worker.lease_lost", job_id=job_id, attempt=entry.ctx.lease.attempt)
            if entry.ctx.run_id is not None:
                with contextlib.suppress(QueueError):
                    await self.queue.flag_run_cancelled(job_id, entry.ctx.run_id)
            entry.task.cancel()

    async def _finish_in_flight(self) -> None:
        if not self._in_flight:
            return
        tasks = [entry.task for entry in self._in_flight.values()]
        log.info("worker.drain_waiting", in_flight=len(tasks), grace_s=self.options.grace_period_s)
        # Waiting on wrappers: cancelling them at the end never cancels the jobs themselves.
        finished = asyncio.ensure_future(asyncio.wait(tasks))
        hurried = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait(
            [finished, hurried],
            timeout=self.options.grace_period_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        for waiter in (finished, hurried):
            waiter.cancel()
        await asyncio.gather(finished, hurried, return_exceptions=True)
        pending = [t for t in tasks if not t.done()]
        if pending:
            log.warning("worker.drain_cancelling", jobs=len(pending))
        await self._cancel_in_flight()

    async def _cancel_in_flight(self) -> None:
        """Cancel running jobs (their runs are cancelled on the server) and give them back."""
        entries = [e for e in self._in_flight.values() if not e.task.done()]
        for entry in entries:
            entry.drained = True
        await _stop_tasks([e.task for e in entries], patience_s=self.options.cancel_wait_s + 5.0)


async def _stop_tasks(tasks: list[asyncio.Task[None]], *, patience_s: float) -> None:
    """Cancel tasks and wait for them, bounded: cancel again once, then give up loudly."""
    pending = {t for t in tasks if not t.done()}
    for round_ in (1, 2):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=patience_s if round_ == 1 else 2.0)
    if pending:
        log.error("worker.tasks_stuck", tasks=sorted(t.get_name() for t in pending))


def _result(lease: Lease, outcome: RunOutcome, started: float) -> JobResult:
    finished = time.time()
    submitted = lease.submitted_at or started
    return JobResult(
        job_id=lease.job.id,
        run_id=outcome.run_id,
        conversation_id=outcome.conversation_id,
        status=outcome.status,
        text=outcome.text,
        tool_calls=outcome.tool_calls,
        usage=outcome.usage,
        error=outcome.error,
        # Validated: cheaper than model_construct, which pydantic runs in Python.
        timings=JobTimings(
            submitted_at=submitted,
            started_at=started,
            finished_at=finished,
            run_seconds=max(0.0, finished - started),
            total_seconds=max(0.0, finished - submitted),
        ),
        attempts=lease.attempt,
    )


def _opts(options: WorkerOptions) -> dict[str, object]:
    return {
        "concurrency": options.concurrency,
        "grace_period_s": options.grace_period_s,
        "burst": options.burst,
    }
