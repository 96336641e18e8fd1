"""Run one job through the orchestrator, persisting progress so a successor can resume it.

The seam between the worker loop and the orchestrator is :class:`JobExecutor`: a callable
taking a :class:`JobContext` and returning a :class:`RunOutcome`. The worker loop never
imports the orchestrator; :class:`OrchestratorExecutor` is the production executor and tests
can drive the loop with a plain async function.

Job flow of :class:`OrchestratorExecutor`:

1. a job whose record has a ``run_id`` (a previous attempt died or drained) resumes that run
   with ``Orchestrator.resume``, passing the stored tool outputs as ``known_results`` so they
   are never executed again; a run a draining worker cancelled starts a new run generation;
2. otherwise a new-thread job creates its thread first and stores ``thread_id``;
3. then ``Orchestrator.run(..., idempotency_key=..., adopt_existing=True)``: a run created
   just before a crash (``run_id`` not yet stored) is found by its key and adopted;
4. ``run_id`` is stored from the first run status event, every tool output as it finishes.

:class:`ResponsesExecutor` does the same over the Responses API (``protocol = "responses"``):
``run_id`` holds the latest response of the conversation (stored from its first stream event,
so it moves on with every tool round), tool outputs are stored as they finish, and a reclaimed
job continues with ``ResponsesOrchestrator.resume(run_id, known_results=...)``. There is no
idempotency key: a response whose id was never stored is created again (see the README).
:func:`executor_for` picks the executor of an open :class:`~runtime.backends.BackendSession`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from runtime import EventHandler
from runtime.worker.models import Lease, ToolOutput, UsageRecord
from runtime.worker.queue import JobQueue, LeaseLost, QueueError
from tools import ToolCallResult

if TYPE_CHECKING:
    from runtime import AssistantsClient, Orchestrator, RunResult
    from runtime.backends import BackendSession
    from runtime.responses.orchestrator import ResponsesOrchestrator

__all__ = [
    "JobContext",
    "JobExecutor",
    "JobFailed",
    "OrchestratorExecutor",
    "ResponsesExecutor",
    "RunOutcome",
    "executor_for",
    "idempotency_key",
]

DEFAULT_RESPONSES_MODEL = "gpt-4o"

log = structlog.get_logger("runtime.worker")

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
        thread_id: its thread.
        text: assistant text.
        tool_calls: every tool call of the run, including outputs from earlier attempts.
        usage: token usage if reported.
        error: readable reason for a status other than ``completed``.
    """

    status: str
    run_id: str | None
    thread_id: str | None
    text: str = ""
    tool_calls: tuple[ToolOutput, ...] = ()
    usage: UsageRecord | None = None
    error: str | None = None


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
    """

    queue: JobQueue
    lease: Lease
    on_tool: ToolObserver | None = None
    lost: bool = False
    run_id: str | None = None
    thread_id: str | None = None
    _saved_tools: set[str] = field(default_factory=set)

    async def save_thread(self, thread_id: str) -> None:
        """Store the thread id (fenced)."""
        self.thread_id = thread_id
        await self._save(thread_id=thread_id)

    async def save_run(self, run_id: str) -> None:
        """Store the run id the first time it is seen (fenced)."""
        if self.run_id == run_id:
            return
        self.run_id = run_id
        structlog.contextvars.bind_contextvars(run_id=run_id)
        await self._save(run_id=run_id)
        log.info("worker.run_recorded", run_id=run_id)

    async def save_tool_output(self, output: ToolOutput) -> None:
        """Store a finished tool call's output (fenced) so it is never executed again."""
        if self.on_tool is not None:
            self.on_tool(output)
        if output.id in self._saved_tools:
            return
        self._saved_tools.add(output.id)
        await self._save(tool_output=output)

    def mark_stored(self, tool_call_ids: Iterable[str]) -> None:
        """Outputs already in the job record (from earlier attempts): never stored again."""
        self._saved_tools.update(tool_call_ids)

    async def new_generation(self) -> None:
        """Forget a run cancelled by a draining worker; the next run gets a new key."""
        self.lease = await self.queue.new_run_generation(self.lease)
        self.run_id = None
        self._saved_tools.clear()

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
    """Stores run id and tool outputs as the orchestrator reports them."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx

    async def on_run_status(self, run: Any) -> None:
        await self._ctx.save_run(run.id)

    async def on_tool_call_finished(self, result: ToolCallResult) -> None:
        await self._ctx.save_tool_output(_to_output(result))


class OrchestratorExecutor:
    """The production :class:`JobExecutor` on the public orchestrator API.

    Args:
        client: the API client (creates new threads).
        orchestrator: drives runs and their tools.
        permanent_errors: exception types that make a job hopeless (stored as an ``error``
            result instead of retried); API 4xx errors other than 408/409/429 by default.
    """

    def __init__(
        self,
        client: AssistantsClient,
        orchestrator: Orchestrator,
        *,
        permanent_errors: tuple[type[BaseException], ...] | None = None,
    ) -> None:
        self._client = client
        self._orch = orchestrator
        self._permanent = permanent_errors if permanent_errors is not None else _permanent()

    async def __call__(self, ctx: JobContext) -> RunOutcome:
        """Resume the job's run if it has one, else create thread and run."""
        try:
            return await self._execute(ctx)
        except self._permanent as exc:
            if _is_transient(exc):
                raise
            raise JobFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _execute(self, ctx: JobContext) -> RunOutcome:
        _check_protocol(ctx, "assistants")
        if ctx.lease.job.assistant_id is None:
            raise JobFailed("the assistants protocol needs the job's assistant_id")
        progress = ctx.lease.progress
        ctx.thread_id = progress.thread_id or ctx.lease.job.thread_id
        if progress.run_id is not None and ctx.thread_id is not None:
            result = await self._resume_if_found(ctx, ctx.thread_id, progress.run_id)
            if result is not None:
                if not (result.status == "cancelled" and await _cancelled_by_worker(ctx)):
                    return self._outcome(ctx, result)
                log.info("worker.run_restarted", reason="cancelled_by_worker")
            await ctx.new_generation()
        return self._outcome(ctx, await self._run(ctx))

    async def _resume_if_found(
        self, ctx: JobContext, thread_id: str, run_id: str
    ) -> RunResult | None:
        from runtime.errors import NotFoundError

        try:
            return await self._resume(ctx, thread_id, run_id)
        except NotFoundError:
            # The server no longer knows the run (deleted, or a server without persistence
            # restarted): start a new run generation instead of failing the job.
            log.warning("worker.run_restarted", reason="run_not_found", run_id=run_id)
            return None

    async def _resume(self, ctx: JobContext, thread_id: str, run_id: str) -> RunResult:
        known = [_to_result(o) for o in ctx.lease.progress.tool_outputs.values()]
        ctx.run_id = run_id
        ctx.mark_stored(ctx.lease.progress.tool_outputs)
        structlog.contextvars.bind_contextvars(run_id=run_id)
        log.info("worker.run_resumed", run_id=run_id, known_results=len(known))
        return await self._orch.resume(
            thread_id, run_id, handler=_ProgressHandler(ctx), known_results=known
        )

    async def _run(self, ctx: JobContext) -> RunResult:
        job = ctx.lease.job
        if ctx.thread_id is None:
            thread = await self._client.create_thread(
                messages=[m.model_dump() for m in job.messages]
            )
            await ctx.save_thread(thread.id)
        assert ctx.thread_id is not None and job.assistant_id is not None
        return await self._orch.run(
            ctx.thread_id,
            job.assistant_id,
            handler=_ProgressHandler(ctx),
            idempotency_key=idempotency_key(job.id, ctx.lease.progress.run_seq),
            # Only an earlier attempt can have created a run under this key; the lookup costs
            # a request, so the first attempt skips it.
            adopt_existing=ctx.lease.attempt > 1 or ctx.lease.progress.run_seq > 0,
            metadata={**job.metadata, "job_id": job.id},
            **job.run_options,
        )

    def _outcome(self, ctx: JobContext, result: RunResult) -> RunOutcome:
        return _outcome(ctx, result)


class ResponsesExecutor:
    """The :class:`JobExecutor` of the Responses protocol.

    The job's messages are the ``input`` of the first request, its ``thread_id`` (if any) the
    ``previous_response_id``, its ``run_options`` extra request fields (``model`` defaults to
    ``model`` below) and its metadata, plus ``job_id``, the responses' metadata.

    Args:
        orchestrator: drives the conversations and their tools.
        model: model of a job whose ``run_options`` name none.
        permanent_errors: as for :class:`OrchestratorExecutor`.
    """

    def __init__(
        self,
        orchestrator: ResponsesOrchestrator,
        *,
        model: str = DEFAULT_RESPONSES_MODEL,
        permanent_errors: tuple[type[BaseException], ...] | None = None,
    ) -> None:
        self._orch = orchestrator
        self._model = model
        self._permanent = permanent_errors if permanent_errors is not None else _permanent()

    async def __call__(self, ctx: JobContext) -> RunOutcome:
        """Resume the job's latest response if it has one, else start the conversation."""
        try:
            return await self._execute(ctx)
        except self._permanent as exc:
            raise JobFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _execute(self, ctx: JobContext) -> RunOutcome:
        _check_protocol(ctx, "responses")
        if not ctx.lease.job.messages:
            raise JobFailed("a responses job needs messages: the input of its first request")
        if ctx.lease.job.run_options.get("store") is False:
            # Tool rounds chain on previous_response_id and resuming retrieves by id.
            raise JobFailed("store=false: the worker needs stored responses")
        response_id = ctx.lease.progress.run_id
        if response_id is not None:
            result = await self._resume_if_found(ctx, response_id)
            if result is not None:
                if not (result.status == "cancelled" and await _cancelled_by_worker(ctx)):
                    return _outcome(ctx, result)
                log.info("worker.run_restarted", reason="cancelled_by_worker")
            await ctx.new_generation()
        return _outcome(ctx, await self._run(ctx))

    async def _resume_if_found(self, ctx: JobContext, response_id: str) -> RunResult | None:
        from runtime.errors import NotFoundError

        try:
            # resume() reports a missing response as a broken stream; ask first so a response
            # the server lost (or never stored) restarts the conversation instead.
            await self._orch.client.retrieve(response_id)
        except NotFoundError:
            log.warning("worker.run_restarted", reason="run_not_found", run_id=response_id)
            return None
        known = [_to_result(o) for o in ctx.lease.progress.tool_outputs.values()]
        ctx.run_id = response_id
        ctx.mark_stored(ctx.lease.progress.tool_outputs)
        structlog.contextvars.bind_contextvars(run_id=response_id)
        log.info("worker.run_resumed", run_id=response_id, known_results=len(known))
        job = ctx.lease.job
        return await self._orch.resume(
            response_id,
            known,
            handler=_ProgressHandler(ctx),
            metadata=_metadata(job.id, job.metadata),
            **job.run_options,
        )

    async def _run(self, ctx: JobContext) -> RunResult:
        job = ctx.lease.job
        params: dict[str, Any] = {"model": self._model, **job.run_options}
        if job.thread_id is not None:
            params["previous_response_id"] = job.thread_id
        return await self._orch.run(
            [m.model_dump() for m in job.messages],
            handler=_ProgressHandler(ctx),
            metadata=_metadata(job.id, job.metadata),
            **params,
        )


def executor_for(
    backend: BackendSession, *, model: str = DEFAULT_RESPONSES_MODEL
) -> OrchestratorExecutor | ResponsesExecutor:
    """The executor of a backend's protocol.

    Args:
        backend: an open session (:func:`runtime.backends.create_backend`).
        model: default model of Responses jobs.

    Returns:
        A :class:`ResponsesExecutor` or an :class:`OrchestratorExecutor`.
    """
    from runtime.client import AssistantsClient
    from runtime.responses.orchestrator import ResponsesOrchestrator

    orch = backend.orchestrator
    if isinstance(orch, ResponsesOrchestrator):
        return ResponsesExecutor(orch, model=model)
    assert isinstance(backend.client, AssistantsClient)
    return OrchestratorExecutor(backend.client, orch)


def _check_protocol(ctx: JobContext, protocol: str) -> None:
    wanted = ctx.lease.job.protocol
    if wanted is not None and wanted != protocol:
        raise JobFailed(f"the job is for the {wanted} protocol; this worker runs {protocol}")


def _metadata(job_id: str, metadata: dict[str, str]) -> dict[str, str]:
    return {**metadata, "job_id": job_id}


async def _cancelled_by_worker(ctx: JobContext) -> bool:
    # Re-read: a worker that lost its lease flags the run just before cancelling it,
    # possibly after this attempt was claimed.
    if ctx.lease.progress.worker_cancelled:
        return True
    record = await ctx.queue.get(ctx.lease.job.id)
    return record is not None and record.progress.worker_cancelled


def _outcome(ctx: JobContext, result: RunResult) -> RunOutcome:
    calls = dict(ctx.lease.progress.tool_outputs)
    calls.update((c.tool_call_id, _to_output(c)) for c in result.tool_calls)
    return RunOutcome(
        status=result.status,
        run_id=result.run_id or ctx.run_id,
        thread_id=result.thread_id or ctx.thread_id,
        text=result.text,
        tool_calls=tuple(calls.values()),
        usage=_usage(result.usage),
        error=_error(result),
    )


def _to_output(result: ToolCallResult) -> ToolOutput:
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


def _usage(usage: Any) -> UsageRecord | None:
    if usage is None:
        return None
    return UsageRecord(
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        total_tokens=int(getattr(usage, "total_tokens", 0) or 0),
    )


def _error(result: RunResult) -> str | None:
    if result.status == "completed":
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
