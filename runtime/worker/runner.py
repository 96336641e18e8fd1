"""Run one job through the run loop, persisting progress so a successor can resume it.

The seam between the worker loop and the engine is :class:`JobExecutor`: a callable taking a
:class:`JobContext` and returning a :class:`RunOutcome`. The worker loop never imports the
engine; :class:`RunExecutor` is the production executor, the same for both protocols, and
tests can drive the loop with a plain async function.

Job flow of :class:`RunExecutor`:

1. a job whose record has a ``run_id`` (a previous attempt died or drained) resumes that turn,
   passing the stored tool outputs as ``known_results`` so they are never executed again; a
   run a draining worker cancelled, or one the server no longer knows, starts a new run
   generation;
2. otherwise the run starts under the job's idempotency key (``adopt_existing`` after the
   first attempt, so a run created just before a crash is found and adopted);
3. the loop reports the references as it learns them, and each is stored before the next
   step needs it: the conversation (a new thread) before the run is created in it, every turn
   id (started, adopted, or the next response), every tool output as it finishes. On
   Assistants the run is found again by its idempotency key, so its id rides along with the
   next write (the first tool outputs, a pause, the result) instead of a write of its own.

A run that pauses for approval ends the attempt with an ``awaiting_approval`` outcome: the
worker stores the pause (:mod:`runtime.worker.approvals`) instead of a result. When the last
decision queues the job again, step 1 resumes the paused turn with the pause's pending state
and the recorded decisions; a turn that moved on meanwhile (the round was submitted before a
crash) is resumed as any other.

On Responses ``run_id`` holds the latest response of the run (it moves on with every tool
round); a job continues a Conversation (``conversation_id``) or a response
(``previous_run_id``); there is no idempotency key a response could be found by, so one whose
id was never stored is created again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from runtime import tracing
from runtime.core.approval import Decision, PendingApproval
from runtime.core.backend import TurnRef, Usage
from runtime.core.hooks import EventHandler
from runtime.logging import ModuleLogger
from runtime.worker.models import Lease, Progress, ToolOutput, UsageRecord
from runtime.worker.queue import JobQueue, LeaseLost, QueueError
from tools import ToolCallResult

if TYPE_CHECKING:
    from runtime.backends import BackendSession
    from runtime.core.result import RunResult

#: Run generations one job may start: a run cancelled behind its back is restarted, this often.
MAX_RUN_GENERATIONS = 3

__all__ = [
    "JobContext",
    "JobExecutor",
    "JobFailed",
    "RunExecutor",
    "RunOutcome",
    "executor_for",
    "idempotency_key",
]

log = ModuleLogger("runtime.worker")

ToolObserver = Callable[[ToolOutput], None]


class JobFailed(Exception):
    """The job cannot succeed (bad assistant id, rejected request): store an ``error`` result.

    Attributes:
        reason: readable cause, stored as the result's ``error``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"JobFailed(reason={self.reason!r})"


@dataclass(frozen=True)
class RunOutcome:
    """What an executor reports about the run of one job.

    Attributes:
        status: the run's terminal status.
        run_id: the run.
        conversation_id: its thread (Assistants) or Conversation (Responses).
        text: assistant text.
        tool_calls: every tool call of the run, including outputs from earlier attempts.
        usage: token usage if reported.
        error: readable reason for a status other than ``completed``.
        pending: what a run paused for approval waits for (``status="awaiting_approval"``).
        rounds: tool rounds of the run (this attempt's).
        recoveries: stream losses the run recovered from (this attempt's).
    """

    status: str
    run_id: str | None
    conversation_id: str | None
    text: str = ""
    tool_calls: tuple[ToolOutput, ...] = ()
    usage: UsageRecord | None = None
    error: str | None = None
    pending: PendingApproval | None = None
    rounds: int = 0
    recoveries: int = 0


@dataclass
class JobContext:
    """The executor's view of one leased job: the lease and fenced progress writes.

    Progress writes never raise: losing the lease (or the queue) is recorded here and acted on
    by the worker loop, because an exception inside a run callback would cancel the run on
    the server, which after a lost lease belongs to the successor.

    Attributes:
        queue: the queue holding the job.
        lease: the current lease (replaced when a new run generation starts).
        on_tool: observer of every tool output (metrics).
        lost: the lease was taken over by another worker.
        run_id: the run of this attempt, once known.
        defer_run_id: the run can be found again without its id (Assistants: by its
            idempotency key), so the id is not written on its own but with the next write of
            the attempt (the round's tool outputs, :meth:`flush` before a pause, the result).
            A tool output is thus never stored without the run it belongs to.
    """

    queue: JobQueue
    lease: Lease
    on_tool: ToolObserver | None = None
    lost: bool = False
    run_id: str | None = None
    conversation_id: str | None = None
    defer_run_id: bool = False
    _unsaved_run_id: str | None = None
    _saved_tools: set[str] = field(default_factory=set)
    _unsaved: list[ToolOutput] = field(default_factory=list)
    _tool_writes: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def save_conversation(self, conversation_id: str) -> None:
        """Store the conversation's id (fenced)."""
        self.conversation_id = conversation_id
        await self._save(conversation_id=conversation_id)

    async def save_run(self, run_id: str) -> None:
        """Store the run id the first time it is seen (fenced; see ``defer_run_id``)."""
        if self.run_id == run_id:
            return
        self.run_id = run_id
        structlog.contextvars.bind_contextvars(run_id=run_id)
        # DEBUG: the run id is on the job's every later line (and its result) anyway.
        log.debug("worker.run_recorded", run_id=run_id, deferred=self.defer_run_id)
        if self.defer_run_id:
            self._unsaved_run_id = run_id
            return
        await self._save(run_id=run_id)

    async def save_tool_output(self, output: ToolOutput) -> None:
        """Store a finished tool call's output (fenced) so it is never executed again.

        Returns once the output is stored. Outputs that finish while an earlier one is being
        written go in the next write together (one transaction for all of them), so a round's
        calls finishing at once cost about two writes instead of one each.
        """
        if self.on_tool is not None:
            self.on_tool(output)
        if output.id in self._saved_tools:
            return
        self._saved_tools.add(output.id)
        self._unsaved.append(output)
        async with self._tool_writes:
            # Empty when the writer before us (holding the lock) took our output along.
            batch, self._unsaved = self._unsaved, []
            if batch:
                await self._save(tool_outputs=batch, **self._take_unsaved_run())

    async def flush(self) -> None:
        """Write what is kept for the next write (a deferred run id) now."""
        unsaved = self._take_unsaved_run()
        if unsaved:
            await self._save(**unsaved)

    def _take_unsaved_run(self) -> dict[str, str]:
        run_id, self._unsaved_run_id = self._unsaved_run_id, None
        return {} if run_id is None else {"run_id": run_id}

    def mark_stored(self, tool_call_ids: Iterable[str]) -> None:
        """Outputs already in the job record (from earlier attempts): never stored again."""
        self._saved_tools.update(tool_call_ids)

    async def new_generation(self) -> None:
        """Forget a run cancelled by a draining worker; the next run gets a new key."""
        self.lease = await self.queue.new_run_generation(self.lease)
        self.run_id = None
        self._unsaved_run_id = None
        self._saved_tools.clear()
        self._unsaved.clear()

    async def _save(self, **fields: Any) -> None:
        try:
            await self.queue.save_progress(self.lease, **fields)
        except LeaseLost:
            self.lost = True
            log.warning("worker.lease_lost", job_id=self.lease.job.id, attempt=self.lease.attempt)
        except QueueError as exc:
            # Not fatal: the run carries the idempotency key, so a successor still finds it.
            log.warning("worker.progress_not_saved", error=str(exc), fields=sorted(fields))


class JobExecutor(Protocol):
    """Runs one job to a terminal outcome."""

    def __call__(self, ctx: JobContext) -> Awaitable[RunOutcome]:
        """Run the job of ``ctx.lease``; raise :class:`JobFailed` for a hopeless job."""
        ...


def idempotency_key(job_id: str, run_seq: int) -> str:
    """The run's idempotency key: the job id, suffixed after a drain restarted the run."""
    return job_id if run_seq == 0 else f"{job_id}~{run_seq}"


class _ProgressHandler(EventHandler):
    """Stores the conversation, each turn and each tool output as the loop reports them."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx

    async def on_conversation(self, conversation_id: str) -> None:
        await self._ctx.save_conversation(conversation_id)

    async def on_turn(self, ref: TurnRef) -> None:
        await self._ctx.save_run(ref.id)

    async def on_tool_call_finished(self, result: ToolCallResult) -> None:
        await self._ctx.save_tool_output(_to_output(result))


class RunExecutor:
    """The production :class:`JobExecutor`, over the run loop of either protocol.

    The job's messages are the run's input, its ``run_options`` extra request fields, its
    metadata (plus ``job_id``) the server objects' metadata. On Assistants the job needs its
    ``assistant_id``; ``conversation_id`` continues a thread (a Conversation on Responses) and,
    on Responses, ``previous_run_id`` continues after a response.

    Args:
        session: an open session (:func:`runtime.backends.create_backend`).
        permanent_errors: exception types that make a job hopeless (stored as an ``error``
            result instead of retried); API 4xx errors other than 408/409/429 by default.
    """

    def __init__(
        self,
        session: BackendSession,
        *,
        permanent_errors: tuple[type[BaseException], ...] | None = None,
    ) -> None:
        self._session = session
        self._permanent = permanent_errors if permanent_errors is not None else _permanent()

    async def __call__(self, ctx: JobContext) -> RunOutcome:
        """Resume the job's turn if it has one, else start its run; the run continues the
        trace the job was submitted in (its ``trace_context``)."""
        try:
            with tracing.continued(ctx.lease.job.trace_context):
                return await self._execute(ctx)
        except self._permanent as exc:
            if _is_transient(exc):
                raise
            raise JobFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _execute(self, ctx: JobContext) -> RunOutcome:
        self._check(ctx)
        # A turn the backend can find by its idempotency key need not be stored by id at once.
        ctx.defer_run_id = self._session.runner.backend.can_find
        progress = ctx.lease.progress
        ctx.conversation_id = progress.conversation_id or ctx.lease.job.conversation_id
        if progress.run_id is not None:
            result = await self._resume_if_found(ctx, TurnRef(progress.run_id, ctx.conversation_id))
            if result is not None and not await self._restart_needed(ctx, result):
                return _outcome(ctx, result)
            await ctx.new_generation()
        result = await self._run(ctx)
        while await self._restart_needed(ctx, result):
            await ctx.new_generation()
            result = await self._run(ctx)
        return _outcome(ctx, result)

    async def _restart_needed(self, ctx: JobContext, result: RunResult[Any]) -> bool:
        """A run cancelled by nobody who asked for this job's outcome (a draining worker, a
        previous attempt's clean-up of a run it could not see yet) is not the job's outcome:
        start a fresh run generation, at most MAX_RUN_GENERATIONS in all."""
        if result.status != "cancelled" or result.stopped_by is not None:
            return False  # our own bound or cancel, or not cancelled at all
        if ctx.lease.progress.run_seq + 1 >= MAX_RUN_GENERATIONS:
            return False
        reason = "cancelled_by_worker" if await _cancelled_by_worker(ctx) else "cancelled_elsewhere"
        log.info("worker.run_restarted", reason=reason, run_id=result.run_id)
        return True

    def _check(self, ctx: JobContext) -> None:
        protocol = self._session.protocol
        job = ctx.lease.job
        if job.protocol is not None and job.protocol != protocol:
            raise JobFailed(
                f"the job is for the {job.protocol} protocol; this worker runs {protocol}"
            )
        if protocol == "assistants" and job.assistant_id is None:
            raise JobFailed("the assistants protocol needs the job's assistant_id")
        if protocol == "responses":
            if not job.messages:
                raise JobFailed("a responses job needs messages: the input of its first request")
            if job.run_options.get("store") is False:
                # Tool rounds chain on previous_response_id and resuming retrieves by id.
                raise JobFailed("store=false: the worker needs stored responses")

    async def _resume_if_found(self, ctx: JobContext, ref: TurnRef) -> RunResult[Any] | None:
        from runtime.errors import NotFoundError

        try:
            # Ask first: a turn the server lost (deleted, or a server without persistence
            # restarted) starts a new run generation instead of failing the job.
            await self._session.runner.backend.retrieve(ref)
        except NotFoundError:
            log.warning("worker.run_restarted", reason="run_not_found", run_id=ref.id)
            return None
        from runtime.errors import ApprovalError

        progress = ctx.lease.progress
        known = [_to_result(o) for o in progress.tool_outputs.values()]
        ctx.run_id = ref.id
        ctx.mark_stored(progress.tool_outputs)
        structlog.contextvars.bind_contextvars(run_id=ref.id)
        log.info("worker.run_resumed", run_id=ref.id, known_results=len(known))
        pending, decisions = _pause_of(progress, ref.id)
        resume = functools.partial(
            self._session.resume,
            ref,
            handler=_ProgressHandler(ctx),
            known_results=known,
            scope=ctx.lease.job.id,
            **self._params(ctx),
        )
        if pending is None:
            return await resume()
        try:
            return await resume(pending=pending, decisions=decisions)
        except ApprovalError as exc:  # the round was submitted before a crash: go on from there
            log.info("worker.pause_already_resumed", run_id=ref.id, detail=str(exc))
            return await resume()

    async def _run(self, ctx: JobContext) -> RunResult[Any]:
        job = ctx.lease.job
        messages = [m.model_dump() for m in job.messages]
        if self._session.protocol == "assistants" and ctx.lease.progress.conversation_id:
            messages = []  # an earlier attempt put them on the thread it stored
        return await self._session.start(
            messages,
            handler=_ProgressHandler(ctx),
            idempotency_key=idempotency_key(job.id, ctx.lease.progress.run_seq),
            # Only an earlier attempt can have created a run under this key; the lookup costs
            # a request, so the first attempt skips it.
            adopt_existing=ctx.lease.attempt > 1 or ctx.lease.progress.run_seq > 0,
            scope=job.id,
            agent=job.assistant_id,
            conversation=ctx.conversation_id,
            previous=job.previous_run_id,
            **self._params(ctx),
        )

    @staticmethod
    def _params(ctx: JobContext) -> dict[str, Any]:
        job = ctx.lease.job
        return {**job.run_options, "metadata": {**job.metadata, "job_id": job.id}}


def executor_for(session: BackendSession) -> RunExecutor:
    """The executor of an open session (either protocol)."""
    return RunExecutor(session)


async def _cancelled_by_worker(ctx: JobContext) -> bool:
    # Re-read: a worker that lost its lease flags the run just before cancelling it,
    # possibly after this attempt was claimed.
    if ctx.lease.progress.worker_cancelled:
        return True
    record = await ctx.queue.get(ctx.lease.job.id)
    return record is not None and record.progress.worker_cancelled


def _pause_of(
    progress: Progress, turn_id: str
) -> tuple[PendingApproval | None, dict[str, Decision]]:
    """The job's pause and its recorded decisions, when the pause is on ``turn_id``."""
    pause = progress.pause
    if pause is None or pause.pending.get("turn_id") != turn_id:
        return None, {}
    decisions = {
        k: Decision(d.approved, d.reason, d.by, d.at)
        for k, d in progress.decisions.items()
        if k in pause.call_ids
    }
    return PendingApproval.from_json(pause.pending), decisions


def _outcome(ctx: JobContext, result: RunResult[Any]) -> RunOutcome:
    calls = dict(ctx.lease.progress.tool_outputs)
    calls.update((c.tool_call_id, _to_output(c)) for c in result.tool_calls)
    return RunOutcome(
        status=result.status,
        run_id=result.run_id or ctx.run_id,
        conversation_id=result.conversation_id or ctx.conversation_id,
        text=result.text,
        tool_calls=tuple(calls.values()),
        usage=_usage(result.usage),
        error=_error(result),
        pending=result.pending,
        rounds=result.rounds,
        recoveries=result.recoveries,
    )


def _to_output(result: ToolCallResult) -> ToolOutput:
    # Validated: pydantic's validation (compiled) costs half of model_construct (Python).
    return ToolOutput(
        id=result.tool_call_id,
        name=result.name,
        arguments=result.arguments,
        output=result.output,
        is_error=result.is_error,
        seconds=result.seconds,
    )


def _to_result(output: ToolOutput) -> ToolCallResult:
    return ToolCallResult(
        tool_call_id=output.id,
        name=output.name,
        arguments=output.arguments,
        output=output.output,
        is_error=output.is_error,
        seconds=output.seconds,
    )


def _usage(usage: Usage | None) -> UsageRecord | None:
    if usage is None:
        return None
    return UsageRecord(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )


def _error(result: RunResult[Any]) -> str | None:
    if result.status in ("completed", "awaiting_approval"):
        return None
    if result.reason:
        return result.reason
    if result.incomplete_reason:
        return f"incomplete: {result.incomplete_reason}"
    last = result.last_error
    if last is not None:
        return f"{getattr(last, 'code', 'error')}: {getattr(last, 'message', last)}"
    return f"run ended {result.status}"


def _permanent() -> tuple[type[BaseException], ...]:
    from runtime.errors import (
        AuthenticationError,
        BadRequestError,
        NotFoundError,
        PermissionDeniedError,
        UnprocessableEntityError,
    )

    return (
        AuthenticationError,
        BadRequestError,
        NotFoundError,
        PermissionDeniedError,
        UnprocessableEntityError,
    )


def _is_transient(exc: BaseException) -> bool:
    from runtime.errors import ThreadBusyError

    # A busy thread clears up when its other run ends: retry later, never give up the job.
    return isinstance(exc, ThreadBusyError)
