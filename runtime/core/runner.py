"""The one run loop: prepare -> start -> follow -> tool round -> submit -> ... -> finish.

:class:`Runner` owns every policy and drives any :class:`~runtime.core.backend.Backend`
without asking which protocol it is. Each run gets a :class:`_RunState` and goes through
named steps:

* ``_prepare``: what must happen once before the first start (a thread for the input);
* ``_start``: start the turn under an idempotency key; after an ambiguous failure adopt
  the turn we started (``find``) before starting again; apply the busy-thread policy;
* ``_follow``: consume a stream; when it breaks, re-open it after the last sequence number
  where the protocol allows it, otherwise poll (backoff, the server's hint, bounded);
* ``_tool_round``: check the bounds and repeated calls, sort the calls (``_plan``: answered
  from a rejection or the write ledger, waiting for approval, runnable), run the runnable
  ones concurrently under the turn's deadline, then either pause (``_pause``: calls await a
  person; see :mod:`runtime.core.approval`) or submit all outputs in one request (never
  twice after an ambiguous failure);
* before every request that creates or continues a turn (start, submit, rerun) and before a
  tool round, the run's :class:`~runtime.core.limits.UsageLimits` are checked: a run that
  reached one is stopped like a bound (``stopped_by="usage_limit"``);
* ``_finish``: build the :class:`~runtime.core.result.RunResult`; texts of a turn whose
  stream broke come from the server's transcript, never from the partial stream.

Cancelling the task that awaits a run cancels its tools, cancels the turn on the server
(shielded, bounded) and re-raises ``CancelledError``. ``total_deadline_s`` bounds the whole
run on both protocols (status ``expired``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Generic, TypeVar

import structlog

from runtime import fairness
from runtime.core import tracing
from runtime.core.approval import (
    TIMED_OUT_REASON,
    Decision,
    PendingApproval,
    rejected_result,
    timeout_decision,
)
from runtime.core.backend import Backend, StartRequest, Turn, TurnRef, TurnStream, Usage
from runtime.core.hooks import EventHandler
from runtime.core.ledger import MemoryLedger, WriteKey, WriteLedger
from runtime.core.limits import UsageLimits
from runtime.core.output import OutputSpec, output_spec
from runtime.core.pauses import Pauses
from runtime.core.policy import RunPolicy
from runtime.core.result import OutT, RunResult, StopCause
from runtime.core.state import RunState
from runtime.core.triage import RoundContext, RoundPlan, copied, plan_round, signature
from runtime.errors import (
    APIStatusError,
    BadRequestError,
    ConnectError,
    HandlerError,
    NotFoundError,
    RateLimitError,
    RequestTimeout,
    RuntimeAPIError,
    ServerError,
    StreamError,
    ThreadBusyError,
)
from runtime.logging import ModuleLogger, redact
from runtime.protocol.stream import EventStream
from tools import ToolCall, ToolCallResult, ToolDispatcher, ToolRegistry

log = ModuleLogger("runtime.run")

RawT = TypeVar("RawT")

AMBIGUOUS_ERRORS = (ServerError, ConnectError, RequestTimeout, RateLimitError)
STREAM_LOSS = (StreamError, ConnectError, RequestTimeout)
RERUN_CODES = frozenset({"server_error", "rate_limit_exceeded"})
_CANCEL_POLL_S = 0.25


@dataclass(frozen=True)
class _Paused:
    """A tool round stopped for approval: the run returns ``awaiting_approval``."""

    turn: Turn[Any]


class _LimitReached(Exception):
    """A usage limit forbids the next request: the run stops (never escapes the loop)."""

    def __init__(self, turn: Turn[Any] | None) -> None:
        super().__init__("usage limit reached")
        self.turn = turn


class Runner(Generic[RawT]):
    """Drives runs of one backend with local tools.

    Args:
        backend: the protocol (``AssistantsBackend`` or ``ResponsesBackend``).
        registry: the tools the model may call.
        policy: retry, expiry, cancellation and bounds.
        handler: default callbacks for every run (a run may pass its own).
        ledger: where ``write`` tools' executions are recorded (default: in memory).

    Attributes:
        pauses: the pauses it returned (:class:`~runtime.core.pauses.Pauses`); set
            ``pauses.watch = False`` where pauses are timed out elsewhere (the worker's queue
            sweeps them).
        quiet_finish: log ``run.finished`` at DEBUG instead of INFO, where the caller writes
            a line of its own for every run (the worker's ``worker.job_finished``).
    """

    def __init__(
        self,
        backend: Backend[RawT],
        registry: ToolRegistry,
        policy: RunPolicy | None = None,
        handler: EventHandler | None = None,
        ledger: WriteLedger | None = None,
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.policy = policy or RunPolicy()
        self.handler = handler
        self.ledger: WriteLedger = ledger if ledger is not None else MemoryLedger()
        self._active: dict[str, RunState[RawT]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.pauses = Pauses(backend, self.policy, self._resume_timed_out, self._background)
        self.quiet_finish = False

    # --- public API -------------------------------------------------------------------------

    async def run(
        self,
        request: StartRequest,
        *,
        handler: EventHandler | None = None,
        idempotency_key: str | None = None,
        adopt_existing: bool = False,
        output_type: type[OutT] | None = None,
        usage_limits: UsageLimits | None = None,
        scope: str | None = None,
    ) -> RunResult[RawT, OutT]:
        """Start ``request`` and drive it to a terminal status (or a pause for approval).

        Args:
            request: what to run.
            handler: callbacks for this run (default: the runner's).
            idempotency_key: stored with the turn to find it again after an ambiguous
                failure (default: a fresh UUID).
            adopt_existing: first look for a turn of ours (same key) and drive it.
            output_type: a pydantic model, dataclass or TypedDict the answer must be; the
                result's ``output`` is the validated instance (see :mod:`runtime.core.output`).
            usage_limits: limits of this run (default: the policy's ``usage_limits``).
            scope: the scope of the run's write records (e.g. a job id; default: the
                conversation, else the first turn's id).
        """
        if (waiter := fairness.turn()) is not None:
            await waiter  # a thousand runs started at once take turns (runtime.fairness)
        spec = output_spec(output_type) if output_type is not None else None
        if spec is not None:
            request = replace(request, output=spec.schema)
        trace = tracing.start_run(self.backend, request)
        state = self._new_state(request, handler, idempotency_key, usage_limits, trace)
        state.scope = scope
        try:
            result = await self._guarded(state, self._run_new(state, adopt_existing))
            typed: RunResult[RawT, OutT] = (
                result  # type: ignore[assignment]  # OutT is None without output_type
                if spec is None
                else await self._validated(state, result, spec)
            )
        except BaseException as exc:
            if trace is not None:
                trace.failed(exc)
            raise
        if trace is not None:
            trace.finished(typed)
        return typed

    async def _validated(
        self, state: RunState[RawT], result: RunResult[RawT], spec: OutputSpec[OutT]
    ) -> RunResult[RawT, OutT]:
        """Validate the answer; a bad one goes back to the model with what was wrong, in the
        same conversation, at most ``output_retries`` times."""
        retries = 0
        while True:
            if not result.ok:
                return _with_output(result, None, f"the run ended {result.status}")
            value, problems = spec.validate(state.final_text())
            if problems is None:
                return _with_output(result, value, None)
            if retries >= self.policy.output_retries:
                log.warning("run.output_invalid", run_id=result.run_id, problems=problems)
                return _with_output(result, None, problems)
            retries += 1
            log.info("run.output_retry", run_id=result.run_id, attempt=retries)
            state.event("runtime.output_retry", attempt=retries)
            feedback = replace(
                state.request,
                input=({"role": "user", "content": spec.feedback(problems)},),
                previous=None if state.request.conversation else result.run_id,
            )
            state = self._new_state(feedback, state.handler, None, state.limits, state.trace)
            retry = await self._guarded(state, self._run_new(state, False))
            result = _combined(result, retry)

    async def resume(
        self,
        ref: TurnRef,
        request: StartRequest | None = None,
        *,
        handler: EventHandler | None = None,
        known_results: Iterable[ToolCallResult] = (),
        decisions: Mapping[str, Decision] | None = None,
        pending: PendingApproval | None = None,
        scope: str | None = None,
    ) -> RunResult[RawT]:
        """Adopt a turn that already exists and drive the run on from it.

        Args:
            ref: the turn (a run on its thread, or a response).
            request: how later turns are sent (model, tools, ...); default: the registry's
                tools and nothing else.
            handler: callbacks for this run.
            known_results: tool outputs computed earlier (e.g. before a crash); they are
                submitted again if still required, never re-executed.
            decisions: ``{call_id: approve() | reject(reason)}`` for a paused run.
            pending: the pause being resumed (default: the one this runner returned for
                ``ref``, else what the server says the turn waits for).
            scope: the scope of the run's write records (default: the pause's).

        Raises:
            ApprovalError: a decision for a call the pause does not hold, a changed
                decision, or a turn that no longer waits for tool outputs; nothing is sent.
        """
        if (waiter := fairness.turn()) is not None:
            await waiter
        if not (decisions or pending is not None or self.pauses.known(ref.id)):
            return await self._resume_from(ref, request, handler, known_results, None, scope)

        def drive(claimed: PendingApproval) -> Awaitable[RunResult[RawT]]:
            return self._resume_from(ref, request, handler, known_results, claimed, scope)

        return await self.pauses.resume(ref, pending, decisions or {}, drive)

    async def _resume_from(
        self,
        ref: TurnRef,
        request: StartRequest | None,
        handler: EventHandler | None,
        known_results: Iterable[ToolCallResult],
        pending: PendingApproval | None,
        scope: str | None = None,
    ) -> RunResult[RawT]:
        request = request or StartRequest()
        request = replace(request, conversation=ref.conversation or request.conversation)
        trace = tracing.start_run(self.backend, request)
        state = self._new_state(request, handler, None, trace=trace)
        state.scope = scope
        known = list(known_results)
        if pending is not None:
            known[:0] = pending.completed
            state.restore(pending)
        state.dispatcher.seed_cache(known)
        state.results.update((k.tool_call_id, k) for k in known)
        if trace is None:
            return await self._guarded(state, self._resume(state, ref))
        trace.event("runtime.resumed", **{"gen_ai.response.id": ref.id})
        try:
            result = await self._guarded(state, self._resume(state, ref))
        except BaseException as exc:
            trace.failed(exc)
            raise
        trace.finished(result)
        return result

    def pending(self, turn_id: str) -> PendingApproval | None:
        """The pause this runner returned for ``turn_id``, while it is not resumed."""
        return self.pauses.get(turn_id)

    def _resume_timed_out(self, pending: PendingApproval) -> Coroutine[Any, Any, RunResult[RawT]]:
        ref = TurnRef(pending.turn_id, pending.conversation)
        request = StartRequest(model=pending.model, instructions=pending.instructions)
        return self._resume_from(ref, request, None, (), pending)

    async def cancel(self, ref: TurnRef) -> Turn[RawT] | None:
        """Cancel a run from elsewhere: its local tools stop and its turn is cancelled.

        Args:
            ref: the run's turn (any turn id of a run driven here, or a turn elsewhere).

        Returns:
            The turn as the cancel answered it, or None when the server refused.
        """
        state = self._active.get(ref.id)
        if state is not None:
            state.reason = state.reason or "cancelled by request"
            state.stopped_by = state.stopped_by or "cancel"
            state.cancel_requested.set()
            if state.reader is not None and state.reader is not asyncio.current_task():
                state.reader.cancel()  # stop reading now; _consume keeps what arrived
            if state.batch is not None:
                state.batch.cancel()  # stop the tools now; _execute returns None
            ref = state.ref or ref
        return await self.backend.cancel(ref)

    def drives(self, turn_id: str) -> bool:
        """True while a run driven here has seen turn ``turn_id``."""
        return turn_id in self._active

    async def aclose(self) -> None:
        """Wait for background clean-ups (server-side cancels) to finish; pauses are left
        as they are (their timeouts no longer watched here)."""
        self.pauses.close()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # --- lifecycle --------------------------------------------------------------------------

    def _new_state(
        self,
        request: StartRequest,
        handler: EventHandler | None,
        key: str | None,
        limits: UsageLimits | None = None,
        trace: tracing.RunTrace | None = None,
    ) -> RunState[RawT]:
        policy = self.policy
        from_registry = request.tools is None and len(self.registry) > 0
        if from_registry:
            request = replace(request, tools=tuple(self.registry.definitions()))
        dispatcher = ToolDispatcher(
            self.registry,
            max_concurrency=policy.max_tool_concurrency,
            default_timeout_s=policy.tool_timeout_s,
            max_output_chars=policy.max_output_chars,
            log_payloads=policy.log_tool_payloads,
            thread_id=request.conversation,
            redact=redact,  # exception text can quote credentials: never send them upstream
            tracer=None if trace is None else tracing.ToolTracer(trace, self.registry),
        )
        total = policy.total_deadline_s
        return RunState(
            request=request,
            handler=handler if handler is not None else self.handler,
            dispatcher=dispatcher,
            key=key or uuid.uuid4().hex,
            deadline=None if total is None else time.monotonic() + total,
            tools_from_registry=from_registry,
            limits=limits if limits is not None else policy.usage_limits,
            trace=trace,
        )

    async def _guarded(
        self, state: RunState[RawT], body: Coroutine[Any, Any, RunResult[RawT]]
    ) -> RunResult[RawT]:
        """Run ``body`` under the total deadline; on cancellation or error, cancel the
        server turn (shielded, bounded), then re-raise."""
        remaining = None if state.deadline is None else state.deadline - time.monotonic()
        timer = asyncio.timeout(remaining)
        try:
            async with timer:
                return await body
        except _LimitReached as reached:
            return await self._over_limit(state, reached.turn)
        except TimeoutError as exc:
            if timer.expired():
                return await self._expire(state)
            await self._abort(state, exc)
            raise
        except BaseException as exc:
            await self._abort(state, exc)
            raise
        finally:
            for turn_id in state.seen_turns:
                self._active.pop(turn_id, None)
            structlog.contextvars.unbind_contextvars("run_id")
            await state.dispatcher.aclose()

    async def _abort(self, state: RunState[RawT], exc: BaseException) -> None:
        log.warning("run.aborting", run_id=_id(state.ref), error=type(exc).__name__)
        task = self._spawn(self._cancel_on_server(state))
        try:
            await asyncio.shield(task)
        except BaseException:  # cancelled again: the clean-up goes on in the background
            log.warning("run.abort_detached", run_id=_id(state.ref))

    async def _expire(self, state: RunState[RawT]) -> RunResult[RawT]:
        state.reason = f"total_deadline_s ({self.policy.total_deadline_s:g}) exceeded"
        state.stopped_by = "total_deadline"
        log.warning("run.deadline_exceeded", run_id=_id(state.ref))
        turn: Turn[RawT] | None = None
        try:
            async with asyncio.timeout(self.policy.cancel_wait_s):
                turn = await asyncio.shield(self._cancel_on_server(state))
        except (TimeoutError, RuntimeAPIError) as exc:
            log.warning("run.cancel_timeout", run_id=_id(state.ref), error=type(exc).__name__)
        return await self._finish(state, turn, stopped_as="expired")

    # --- usage limits -----------------------------------------------------------------------

    def _count_request(self, state: RunState[RawT], turn: Turn[RawT] | None) -> None:
        """Before a request that creates or continues a turn: check the limits, count it."""
        self._check_limits(state, turn)
        state.requests += 1

    def _check_limits(self, state: RunState[RawT], turn: Turn[RawT] | None) -> None:
        """Raise _LimitReached (to stop ``turn``) when the run already used what a limit
        allows for one more request."""
        limits = state.limits
        if limits is not None:
            cost, priced = state.cost(self.policy.prices)
            reason = limits.reached(
                requests=state.requests, usage=state.total_usage(), cost=cost, priced=priced
            )
            if reason is not None:
                state.reason = reason
                state.stopped_by = "usage_limit"
                raise _LimitReached(turn)

    async def _over_limit(self, state: RunState[RawT], turn: Turn[RawT] | None) -> RunResult[RawT]:
        log.warning("run.usage_limit_reached", run_id=_id(state.ref), reason=state.reason)
        state.event("runtime.usage_limit_reached", reason=state.reason)
        if turn is not None:
            turn = await self._stop(state, turn)
        return await self._finish(state, turn, stopped_as="cancelled")

    # --- start ------------------------------------------------------------------------------

    async def _run_new(self, state: RunState[RawT], adopt: bool) -> RunResult[RawT]:
        await self._prepare(state)
        stream = await self._start(state, adopt)
        reruns = 0
        while True:
            result = await self._drive(state, stream)
            if not self._should_rerun(result, reruns):
                return result
            reruns += 1
            log.warning("run.rerun", run_id=result.run_id, code=_code(result))
            state.event("runtime.rerun", **{"error.type": _code(result)})
            stream = await self._redo(state, reruns)

    async def _resume(self, state: RunState[RawT], ref: TurnRef) -> RunResult[RawT]:
        await self._track(state, ref)
        state.untrusted.add(ref.id)  # nothing of it was streamed here
        return await self._drive(state, None)

    async def _prepare(self, state: RunState[RawT]) -> None:
        """Once per run: the conversation the turns live in, stored before any turn exists."""
        for attempt in range(1, self.policy.create_attempts + 1):
            try:
                prepared = await self.backend.prepare(state.request)
                break
            except AMBIGUOUS_ERRORS as exc:
                # A stray empty thread costs nothing, unlike a second run.
                log.warning("run.prepare_ambiguous", attempt=attempt, error=type(exc).__name__)
                if attempt == self.policy.create_attempts:
                    raise
        conversation = prepared.conversation
        state.request = prepared
        if conversation is not None:
            state.dispatcher.thread_id = conversation
            structlog.contextvars.bind_contextvars(thread_id=conversation)
            if state.trace is not None:
                state.trace.conversation(conversation)
            handler = state.handler
            if handler is not None:
                await self._hook(handler.on_conversation, conversation, "on_conversation")

    async def _start(
        self, state: RunState[RawT], adopt: bool, *, counted: bool = False
    ) -> TurnStream[RawT] | None:
        """Start the turn and return its stream, or None when we adopted an existing one.
        ``counted``: the caller already counted the request against the usage limits."""
        if adopt and await self._adopt(state):
            return None
        if not counted:
            self._count_request(state, None)
        busy_deadline = time.monotonic() + self.policy.busy_wait_s
        ambiguous = 0  # busy-thread refusals are bounded by busy_wait_s, not by attempts
        state.last_submit = None
        while True:
            if (waiter := fairness.turn()) is not None:
                await waiter  # before the request is in flight: a cancel here sends nothing
            state.start_in_flight = True  # stays set if we are cancelled mid-request
            try:
                return await self._requested(
                    state,
                    "create",
                    self.backend.start(state.request, key=state.key, handler=state.handler),
                )
            except ThreadBusyError as exc:
                state.start_in_flight = False
                if await self._adopt(state):
                    return None
                await self._on_busy(state, exc, busy_deadline)
            except AMBIGUOUS_ERRORS as exc:
                state.start_in_flight = False
                ambiguous += 1
                log.warning("run.create_ambiguous", attempt=ambiguous, error=type(exc).__name__)
                if await self._adopt(state):
                    return None
                if ambiguous >= self.policy.create_attempts:
                    raise
            except RuntimeAPIError:
                state.start_in_flight = False  # a definite refusal: nothing was created
                raise

    async def _adopt(self, state: RunState[RawT]) -> bool:
        """Find the turn we started earlier (by idempotency key) and make it ours."""
        if not self.backend.can_find:
            return False
        ref = await self.backend.find(state.request, state.key)
        if ref is None:
            return False
        log.info("run.adopted", run_id=ref.id)
        state.event("runtime.adopted", **{"gen_ai.response.id": ref.id})
        await self._track(state, ref)
        return True

    async def _on_busy(self, state: RunState[RawT], exc: ThreadBusyError, deadline: float) -> None:
        action = self.policy.busy_thread
        other = exc.active_run_id
        log.info("run.thread_busy", action=action, active_run_id=other)
        if action == "fail" or other is None or time.monotonic() >= deadline:
            raise exc
        ref = TurnRef(other, state.request.conversation)
        if action == "cancel":
            await self.backend.cancel(ref)
        await self._wait_terminal(ref, deadline - time.monotonic())

    def _should_rerun(self, result: RunResult[RawT], reruns: int) -> bool:
        if not self.policy.rerun_on_server_error or reruns >= self.policy.max_reruns:
            return False
        return result.status == "failed" and _code(result) in RERUN_CODES

    async def _redo(self, state: RunState[RawT], reruns: int) -> TurnStream[RawT] | None:
        """Send again what produced a failed turn: the round (a new turn per round) or the
        run itself, under a new key."""
        self._count_request(state, None)  # the failed turn is over: nothing to cancel
        if self.backend.new_turn_per_round and state.last_submit is not None:
            previous, outputs = state.last_submit
            return await self._send_outputs(state, previous, outputs)
        state.key = f"{state.key}-rerun{reruns}"
        state.ref = None
        return await self._start(state, adopt=False, counted=True)

    # --- follow -----------------------------------------------------------------------------

    async def _drive(
        self, state: RunState[RawT], stream: TurnStream[RawT] | None
    ) -> RunResult[RawT]:
        """Follow streams and answer tool rounds until the run is terminal."""
        while True:
            turn = await self._follow(state, stream)
            if state.trace is not None and (turn.is_terminal or turn.status == "requires_tools"):
                state.trace.turn_stopped(turn)
            if turn.is_terminal:
                return await self._finish(state, turn)
            if state.cancel_requested.is_set():
                stopped = await self._stop(state, turn)
                return await self._finish(state, stopped, stopped_as="cancelled")
            if turn.status != "requires_tools":
                stream = None
                continue
            step = await self._tool_round(state, turn)
            if isinstance(step, _Paused):
                return await self._finish(state, step.turn, stopped_as="awaiting_approval")
            if isinstance(step, Turn):
                stopped_as = "expired" if state.stopped_by == "approval_timeout" else "cancelled"
                return await self._finish(state, step, stopped_as=stopped_as)
            stream = step

    async def _follow(self, state: RunState[RawT], stream: TurnStream[RawT] | None) -> Turn[RawT]:
        """Consume ``stream`` (or poll when there is none) until the turn stops."""
        if stream is None:
            return await self._poll(state)
        stream = await self._consume_recovering(state, stream)
        turn = stream.turn()
        if turn is not None:
            await self._absorb(state, turn, trusted=False)  # complete unless the stream broke
            return turn
        if state.cancel_requested.is_set() and stream.ref is not None:
            # We closed the stream ourselves: keep what arrived; the drive loop cancels.
            return Turn(ref=stream.ref, status="active", texts=stream.partial_texts())
        if stream.ref is None and not self.backend.can_find:
            return await self._follow(state, await self._send_blind_again(state))
        return await self._poll(state)

    async def _consume_recovering(
        self, state: RunState[RawT], stream: TurnStream[RawT]
    ) -> TurnStream[RawT]:
        """Read the stream to its end, re-opening it after a break while the protocol can."""
        attempts = 0
        while True:
            try:
                await self._consume(state, stream)
                return stream
            except STREAM_LOSS as exc:
                state.recoveries += 1
                log.warning(
                    "run.stream_lost",
                    run_id=_id(stream.ref or state.ref),
                    error=type(exc).__name__,
                    detail=exc.message,
                )
                state.event("runtime.stream_lost", **{"error.type": type(exc).__name__})
                await self._collect(state, stream)
                if stream.ref is not None:
                    state.untrusted.add(stream.ref.id)
                attempts += 1
                if attempts > self.policy.resume_attempts or state.cancel_requested.is_set():
                    return stream
                resumed = await self._reopen(state, stream)
                if resumed is None:
                    return stream
                log.info("run.stream_resumed", run_id=_id(stream.ref), after=stream.last_sequence)
                state.event("runtime.stream_resumed", after=stream.last_sequence)
                stream = resumed
            finally:
                await self._collect(state, stream)

    async def _reopen(
        self, state: RunState[RawT], stream: TurnStream[RawT]
    ) -> TurnStream[RawT] | None:
        try:
            resumed = await self.backend.resume(stream, handler=state.handler)
        except RuntimeAPIError as exc:
            log.warning("run.resume_refused", run_id=_id(stream.ref), error=type(exc).__name__)
            return None
        if resumed is not None and stream.ref is not None:
            state.untrusted.discard(stream.ref.id)  # the resumed stream carries the rest
        return resumed

    async def _consume(self, state: RunState[RawT], stream: TurnStream[RawT]) -> None:
        """Read the stream to its end, or until a cancel request (then close it).

        The stream is read in the run's own task (no helper tasks on the hot path):
        :meth:`cancel` interrupts the read by cancelling this task, which is told apart from
        a cancellation of the run by ``uncancel()``.
        """
        task = asyncio.current_task()
        state.reader = task

        async def named(ref: TurnRef) -> None:
            # Known as soon as the first event names it: cancel() and _abort() can reach it.
            if ref.id not in state.seen_turns:
                await self._track(state, ref)

        try:
            if isinstance(stream, EventStream):
                await stream.follow(named)  # no hop out of the stream per event
            else:
                tracked = False
                async for _ in stream:
                    if not tracked and (ref := stream.ref) is not None:
                        tracked = True
                        await named(ref)
        except asyncio.CancelledError:
            if not (state.cancel_requested.is_set() and task is not None and task.uncancel() == 0):
                raise
        finally:
            state.reader = None
            await stream.aclose()

    async def _send_blind_again(self, state: RunState[RawT]) -> TurnStream[RawT]:
        """The stream broke before the turn was named, and turns cannot be found: send the
        request again (bounded; the server may have started a turn nobody will follow)."""
        state.blind_restarts += 1
        if state.blind_restarts >= self.policy.create_attempts:
            raise StreamError(
                f"the stream broke before the turn's id was known, {state.blind_restarts} times"
            )
        if state.last_submit is not None:
            previous, outputs = state.last_submit
            self._count_request(state, None)  # the turn was never named: nothing to cancel
            return await self._send_outputs(state, previous, outputs)
        stream = await self._start(state, adopt=False)
        assert stream is not None  # nothing to adopt without find
        return stream

    async def _collect(self, state: RunState[RawT], stream: TurnStream[RawT]) -> None:
        """Keep what a stream produced so far: the turn's ref and its texts."""
        ref = stream.ref
        if ref is None:
            return
        if ref.id not in state.seen_turns:
            await self._track(state, ref)
        state.merge_texts(ref.id, stream.partial_texts())

    async def _absorb(self, state: RunState[RawT], turn: Turn[RawT], *, trusted: bool) -> None:
        """Keep what a stopped turn says: ref, texts, usage, deadline. ``trusted``: its texts
        are the server's own (a retrieved object), so they replace a broken stream's."""
        ref = turn.ref
        if ref.id not in state.seen_turns or state.ref != ref:
            await self._track(state, ref)
        if turn.texts:
            state.merge_texts(ref.id, turn.texts)
            if trusted:
                state.untrusted.discard(ref.id)
        if turn.usage is not None:
            state.usage[ref.id] = turn.usage
        if turn.model is not None:
            state.models[ref.id] = turn.model
        if turn.deadline is not None:
            state.turn_deadline = turn.deadline

    async def _track(self, state: RunState[RawT], ref: TurnRef) -> None:
        if state.ref is not None and state.ref.conversation and not ref.conversation:
            ref = TurnRef(ref.id, state.ref.conversation)
        state.ref = ref
        state.scope = state.scope or state.request.conversation or ref.conversation or ref.id
        state.dispatcher.run_id = ref.id
        self._active[ref.id] = state
        structlog.contextvars.bind_contextvars(run_id=ref.id)
        if ref.id in state.seen_turns:
            return
        state.seen_turns.add(ref.id)
        handler = state.handler
        if handler is not None:
            await self._hook(handler.on_turn, ref, "on_turn")

    # --- poll -------------------------------------------------------------------------------

    async def _poll(self, state: RunState[RawT]) -> Turn[RawT]:
        """Retrieve the turn until it requires tools or is terminal (backoff, bounded)."""
        if state.ref is None and not await self._adopt(state):
            raise StreamError(
                "the stream broke before the turn's id was known, and no "
                "turn with our idempotency key exists"
            )
        assert state.ref is not None
        ref = state.ref
        grace = self.policy.expiry_grace_s
        turn = await self._poll_until(
            ref,
            # Stopped, or past its expires_at plus the grace: then the server will not end it.
            lambda t: t.is_terminal or t.status == "requires_tools" or self._outlived(t, grace),
            interval=self.policy.poll_interval_s,
            timeout_s=self._poll_budget(state),
        )
        if not turn.is_terminal and turn.status != "requires_tools":
            # Past expires_at and its grace: the server will not end it; we do.
            state.reason = "the run outlived its expires_at; given up as expired"
            stopped = await self._stop(state, turn)
            await self._absorb(state, stopped, trusted=False)
            return replace(stopped, status="expired") if not stopped.is_terminal else stopped
        await self._absorb(state, turn, trusted=True)
        if not turn.texts:
            # The turn object holds no texts (a run): what it wrote since we last read a
            # stream is only in the transcript.
            state.untrusted.add(turn.ref.id)
        return turn

    def _outlived(self, turn: Turn[RawT], grace_s: float) -> bool:
        """The turn is still active past its expires_at plus ``grace_s`` (server clock)."""
        return turn.deadline is not None and self.backend.server_now() > turn.deadline + grace_s

    def _poll_budget(self, state: RunState[RawT]) -> float | None:
        """Seconds polling may last: until the turn's expiry plus its grace (None: unbounded
        here; the total deadline still applies)."""
        if state.turn_deadline is None:
            return None
        remaining = state.turn_deadline + self.policy.expiry_grace_s - self.backend.server_now()
        return max(remaining, 0.0)

    async def _wait_terminal(self, ref: TurnRef, timeout_s: float) -> Turn[RawT]:
        """Poll a turn until it is terminal, at most ``timeout_s`` (then return it as is)."""
        interval = min(self.policy.poll_interval_s, _CANCEL_POLL_S)
        return await self._poll_until(
            ref, lambda t: t.is_terminal, interval=interval, timeout_s=timeout_s
        )

    async def _poll_until(
        self,
        ref: TurnRef,
        done: Callable[[Turn[RawT]], bool],
        *,
        interval: float,
        timeout_s: float | None = None,
    ) -> Turn[RawT]:
        """Retrieve the turn until ``done(turn)`` or the timeout; backoff, honouring the
        server's polling hint."""
        deadline = None if timeout_s is None else time.monotonic() + max(timeout_s, 0.0)
        while True:
            try:
                turn = await self.backend.retrieve(ref)
            except NotFoundError as exc:
                raise StreamError(
                    f"{ref.id} cannot be retrieved to recover its broken stream "
                    "(was it created with store=false?)"
                ) from exc
            if done(turn) or (deadline is not None and time.monotonic() >= deadline):
                return turn
            wait = max(turn.poll_after_s, 0.01) if turn.poll_after_s else interval
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.01))
            await asyncio.sleep(wait)
            interval = min(interval * 1.5, self.policy.max_poll_interval_s)

    # --- tool round -------------------------------------------------------------------------

    async def _tool_round(
        self, state: RunState[RawT], turn: Turn[RawT]
    ) -> TurnStream[RawT] | Turn[RawT] | _Paused | None:
        """Answer the turn's calls: a stream to follow, a turn to finish with (stopped by a
        bound or a cancel), a pause for approval, or None to poll."""
        new = [c for c in turn.tool_calls if c.id not in state.results]
        fresh = [c for c in new if c.id not in state.counted]
        bound = self._exceeded_bound(state, len(fresh)) or self._repeated(state, fresh)
        if bound is not None:
            cause, state.reason = bound
            state.stopped_by = cause
            log.warning("run.bound_exceeded", run_id=turn.ref.id, reason=state.reason)
            return await self._stop(state, turn)
        if not turn.tool_calls:
            state.reason = "the turn required tools but listed no tool calls"
            log.warning("run.empty_tool_round", run_id=turn.ref.id)
            return await self._stop(state, turn)
        # The submit after this round would be refused: run no tool for nothing.
        self._check_limits(state, turn)
        state.count_round(turn, fresh)
        self._time_out_late(state, turn, new)
        plan = await self._plan(state, turn, new)
        expire = await self._approval_expired(state, turn, plan)
        if await self._execute(state, turn, plan) is None:
            return await self._stop(state, turn)
        if expire:
            return await self._let_expire(state, turn)
        if plan.waiting:
            return self._pause(state, turn, plan)
        results = [state.results[c.id] for c in turn.tool_calls]
        return await self._submit(state, turn, results)

    def _repeated(
        self, state: RunState[RawT], fresh: list[ToolCall]
    ) -> tuple[StopCause, str] | None:
        """Loop detection: the same tool with the same arguments requested
        ``max_repeated_calls`` times in this run."""
        limit = self.policy.max_repeated_calls
        signatures = [signature(call) for call in fresh]  # canonical JSON: once per call
        for key in signatures:
            state.repeats[key] += 1
        if limit is None:
            return None
        for call, key in zip(fresh, signatures, strict=True):
            if state.repeats[key] >= limit:
                reason = (
                    f"tool {call.name!r} was requested {limit} times with the same arguments "
                    f"(max_repeated_calls={limit}): the model is repeating itself"
                )
                return "repeated_call", reason
        return None

    def _exceeded_bound(
        self, state: RunState[RawT], new_calls: int
    ) -> tuple[StopCause, str] | None:
        policy = self.policy
        limits = state.limits
        if limits is not None:
            reason = limits.tool_calls_exceeded(state.calls_seen, new_calls)
            if reason is not None:
                return "usage_limit", reason
        if state.calls_seen + new_calls > policy.max_tool_calls:
            return "max_tool_calls", f"max_tool_calls ({policy.max_tool_calls}) exceeded"
        if state.rounds + 1 > policy.max_tool_rounds:
            return "max_tool_rounds", f"max_tool_rounds ({policy.max_tool_rounds}) exceeded"
        return None

    async def _execute(
        self, state: RunState[RawT], turn: Turn[RawT], plan: RoundPlan
    ) -> list[ToolCallResult] | None:
        """Run the plan's runnable calls under the turn's deadline; None when a cancel request
        interrupted them."""
        callbacks = _HandlerCallbacks(state.handler)
        state.writes.update(plan.writes)
        batch = asyncio.ensure_future(
            state.dispatcher.run_batch(
                plan.runnable,
                deadline=self._tool_deadline(state, turn),
                on_start=callbacks.started if callbacks.wants_start else None,
                on_finish=self._on_finish(state, callbacks),
            )
        )
        # cancel() and a failing tool callback stop the batch by cancelling it (no helper
        # tasks per round); a cancellation of the run itself is told apart by cancelling().
        state.batch = callbacks.batch = batch
        try:
            results = await batch
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            callbacks.raise_if_failed()  # the batch was stopped: no tool runs on after it
            if state.cancel_requested.is_set():
                return None
            raise
        finally:
            state.batch = callbacks.batch = None
        callbacks.raise_if_failed()
        state.results.update((r.tool_call_id, r) for r in results)
        for copy_id, first_id in plan.copies.items():
            state.results[copy_id] = copied(state.results[first_id], copy_id)
        return results

    # --- approvals and writes -----------------------------------------------------------

    async def _plan(
        self, state: RunState[RawT], turn: Turn[RawT], calls: list[ToolCall]
    ) -> RoundPlan:
        """Sort the round's calls; what is answered without running goes in at once."""
        context = RoundContext(
            registry=self.registry,
            ledger=self.ledger,
            scope=state.scope or turn.ref.id,
            decisions=state.decisions,
            run_id=turn.ref.id,
            thread_id=state.request.conversation or turn.ref.conversation,
        )
        plan = await plan_round(calls, context)
        await self._answered(state, plan.answered)
        return plan

    async def _answered(self, state: RunState[RawT], results: list[ToolCallResult]) -> None:
        state.dispatcher.seed_cache(results)
        state.results.update((r.tool_call_id, r) for r in results)
        handler = state.handler
        if handler is not None:
            for result in results:
                await self._hook(handler.on_tool_call_finished, result, "on_tool_call_finished")

    def _on_finish(
        self, state: RunState[RawT], callbacks: _HandlerCallbacks
    ) -> Callable[[ToolCallResult], Awaitable[None]] | None:
        """The dispatcher's per-call hook: record a write's output, then the handler's."""
        if not state.writes:
            return callbacks.finished if callbacks.wants_finish else None

        async def finished(result: ToolCallResult) -> None:
            key = state.writes.pop(result.tool_call_id, None)
            if key is not None:
                await self._record_finish(key, result)
            if callbacks.wants_finish:
                await callbacks.finished(result)

        return finished

    async def _record_finish(self, key: WriteKey, result: ToolCallResult) -> None:
        try:
            await self.ledger.record_finish(key, result.output, result.is_error)
        except Exception as exc:  # the write happened; only its record is missing
            log.warning("run.write_finish_not_recorded", tool=key.tool, error=type(exc).__name__)

    def _pause(self, state: RunState[RawT], turn: Turn[RawT], plan: RoundPlan) -> _Paused:
        """Stop the round for a person: what ran is kept with the pause."""
        ids = {c.id for c in turn.tool_calls}
        request = state.request
        pending = PendingApproval(
            protocol=self.backend.name,
            turn_id=turn.ref.id,
            conversation=request.conversation or turn.ref.conversation,
            calls=tuple(plan.waiting),
            decided={k: d for k, d in state.decisions.items() if k in ids},
            completed=tuple(r for k, r in state.results.items() if k in ids),
            expires_at=turn.deadline,
            scope=state.scope,
            rounds=state.rounds,
            calls_seen=state.calls_seen,
            repeats=dict(state.repeats),
            model=request.model,
            instructions=request.instructions,
        )
        state.pending = pending
        self.pauses.remember(pending)
        log.info("run.awaiting_approval", run_id=turn.ref.id, calls=len(plan.waiting))
        return _Paused(turn)

    def _past_margin(self, turn: Turn[RawT]) -> bool:
        deadline = turn.deadline
        margin = self.policy.expiry_margin_s
        return deadline is not None and self.backend.server_now() >= deadline - margin

    def _time_out_late(
        self, state: RunState[RawT], turn: Turn[RawT], calls: list[ToolCall]
    ) -> None:
        """Decisions on a pause that already reached ``expires_at - margin`` come too late:
        its calls are rejected as timed out, whatever was decided."""
        late = [c for c in calls if c.id in state.awaited]
        if not late or not self._past_margin(turn):
            return
        state.late = len(late)
        for call in late:
            state.decisions[call.id] = timeout_decision()

    async def _approval_expired(
        self, state: RunState[RawT], turn: Turn[RawT], plan: RoundPlan
    ) -> bool:
        """Past ``expires_at - margin`` with calls awaiting a person: "reject" turns them
        into timed-out rejections (and the round goes on); True for "expire"."""
        waiting = list(plan.waiting) if self._past_margin(turn) else []
        count = state.late + len(waiting)
        if not count:
            return False
        plan.waiting.clear()
        if self.policy.approval_timeout == "expire":
            state.reason = (
                f"{TIMED_OUT_REASON}: the run was left to expire (approval_timeout=expire)"
            )
            state.stopped_by = "approval_timeout"
            return True
        state.reason = f"{TIMED_OUT_REASON}: {count} call(s) rejected (approval_timeout=reject)"
        log.warning("run.approval_timed_out", run_id=turn.ref.id, action="reject", calls=count)
        for call in waiting:
            state.decisions[call.id] = timeout_decision()
        rejected = [
            rejected_result(c.call, TIMED_OUT_REASON, error_type="approval_timeout")
            for c in waiting
        ]
        await self._answered(state, rejected)
        return False

    async def _let_expire(self, state: RunState[RawT], turn: Turn[RawT]) -> Turn[RawT]:
        """approval_timeout = "expire": nothing is submitted; wait (bounded) for the server
        to expire the run."""
        log.warning("run.approval_timed_out", run_id=turn.ref.id, action="expire")
        assert turn.deadline is not None
        remaining = turn.deadline + self.policy.expiry_grace_s - self.backend.server_now()
        return await self._wait_terminal(turn.ref, max(remaining, 0.0))

    def _tool_deadline(self, state: RunState[RawT], turn: Turn[RawT]) -> float | None:
        """The earlier of ``expires_at - margin`` (server clock) and the total deadline minus
        a margin (capped at half the total), as a local monotonic time."""
        policy = self.policy
        candidates: list[float] = []
        if turn.deadline is not None:
            remaining = turn.deadline - policy.expiry_margin_s - self.backend.server_now()
            candidates.append(time.monotonic() + max(remaining, 0.0))
        if state.deadline is not None:
            margin = min(policy.expiry_margin_s, 0.5 * (policy.total_deadline_s or 0.0))
            candidates.append(state.deadline - margin)
        return min(candidates) if candidates else None

    async def _submit(
        self, state: RunState[RawT], turn: Turn[RawT], results: list[ToolCallResult]
    ) -> TurnStream[RawT] | None:
        """Submit all outputs in one request; after an ambiguous failure, never twice."""
        required = {r.tool_call_id for r in results}
        self._count_request(state, turn)  # once: a re-attempt sends the same request again
        for attempt in range(1, self.policy.submit_attempts + 1):
            try:
                return await self._send_outputs(state, turn, results)
            except BadRequestError as exc:
                log.warning("run.submit_rejected", run_id=turn.ref.id, error=exc.message)
                if _still_requires(await self.backend.retrieve(turn.ref), required):
                    # The server refuses these very outputs (not a turn that moved on, e.g.
                    # expired): sending them again, round after round, cannot help.
                    raise
                return None
            except AMBIGUOUS_ERRORS as exc:
                log.warning(
                    "run.submit_ambiguous",
                    run_id=turn.ref.id,
                    attempt=attempt,
                    error=type(exc).__name__,
                )
                current = await self.backend.retrieve(turn.ref)
                if not _still_requires(current, required):
                    return None
                if attempt == self.policy.submit_attempts:
                    raise
        return None

    async def _send_outputs(
        self, state: RunState[RawT], turn: Turn[RawT], results: list[ToolCallResult]
    ) -> TurnStream[RawT]:
        if (waiter := fairness.turn()) is not None:
            await waiter
        state.last_submit = (turn, results)
        if state.tools_from_registry:
            # A tool source may have changed its list since the last round (MCP
            # list_changed): the next request offers the registry as it is now. An unchanged
            # list keeps the request as it is (replace() rebuilds every field).
            tools = tuple(self.registry.definitions())
            if tools != state.request.tools:
                state.request = replace(state.request, tools=tools)
        return await self._requested(
            state,
            "submit",
            self.backend.submit(state.request, turn, results, handler=state.handler),
        )

    async def _requested(
        self, state: RunState[RawT], kind: str, send: Awaitable[TurnStream[RawT]]
    ) -> TurnStream[RawT]:
        """Await ``send``, a request creating or continuing a turn, under its span."""
        trace = state.trace
        if trace is None:
            return await send
        ref = state.ref
        prior = state.usage.get(ref.id) if ref is not None else None
        trace.request_started(kind, state.request, prior, _id(ref))
        try:
            return await send
        except BaseException as exc:
            trace.request_failed(exc)
            raise

    # --- cancel and finish ------------------------------------------------------------------

    async def _stop(self, state: RunState[RawT], turn: Turn[RawT]) -> Turn[RawT]:
        """Cancel the turn on the server and wait (bounded) for it to end. A refused cancel
        is checked once: a turn already being cancelled is waited for, one that cannot be
        cancelled (it is over, or a finished response) is left as it is."""
        if turn.is_terminal:
            return turn
        answer = await self._request_cancel(turn.ref)
        current = answer if answer is not None else await self.backend.retrieve(turn.ref)
        if current.is_terminal:
            return current
        if answer is None and current.status != "cancelling":
            return turn  # not cancellable here (a finished or foreground response): stop locally
        return await self._wait_terminal(turn.ref, self.policy.cancel_wait_s)

    async def _request_cancel(self, ref: TurnRef) -> Turn[RawT] | None:
        """Ask once (the client retries); a refusal or a failure answers None. A cancel that
        keeps failing must not lose the run's result, nor be tried again by ``_abort``."""
        try:
            answer = await self.backend.cancel(ref)
        except RuntimeAPIError as exc:
            log.warning("run.cancel_failed", run_id=ref.id, error=type(exc).__name__)
            return None
        if answer is None:
            log.info("run.cancel_refused", run_id=ref.id)
        return answer

    async def _cancel_on_server(self, state: RunState[RawT]) -> Turn[RawT] | None:
        """Best effort: cancel the run's current turn and wait (bounded) for it to end."""
        try:
            if state.ref is None and not await self._adopt(state):
                if state.start_in_flight and self.backend.can_find:
                    self._spawn(self._cancel_late_turn(state.request, state.key))
                return None
            assert state.ref is not None
            answer = await self._request_cancel(state.ref)
            if answer is None:
                return None
            turn = answer
            if not turn.is_terminal:
                turn = await self._wait_terminal(state.ref, self.policy.cancel_wait_s)
            log.info("run.cancelled_on_server", run_id=turn.ref.id, status=turn.status)
            return turn
        except RuntimeAPIError as exc:
            log.warning("run.cancel_failed", run_id=_id(state.ref), error=repr(exc))
            return None

    async def _cancel_late_turn(self, request: StartRequest, key: str) -> None:
        """A start request was cut off mid-flight: the server may create the turn a moment
        later. Watch for it (up to cancel_wait_s, in the background) and cancel it."""
        deadline = time.monotonic() + self.policy.cancel_wait_s
        interval = min(self.policy.poll_interval_s, _CANCEL_POLL_S)
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(interval)
                interval = min(interval * 1.5, self.policy.max_poll_interval_s)
                ref = await self.backend.find(request, key)
                if ref is not None:
                    turn = await self.backend.retrieve(ref)
                    if not turn.is_terminal:
                        await self.backend.cancel(ref)
                    log.info("run.late_run_cancelled", run_id=ref.id, status=turn.status)
                    return
        except RuntimeAPIError as exc:
            log.warning("run.cancel_failed", error=repr(exc))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[None]:
        """Start a clean-up task the runner holds until it ends (see :meth:`aclose`)."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _finish(
        self,
        state: RunState[RawT],
        turn: Turn[RawT] | None,
        *,
        stopped_as: str | None = None,
    ) -> RunResult[RawT]:
        """The result. ``stopped_as``: the runtime stopped the run (a cancel or a bound gives
        ``cancelled`` unless the run ended on its own first; the total deadline always gives
        ``expired``), and the texts are what arrived before the stop."""
        if turn is not None:
            if stopped_as is None:
                await self._absorb(state, turn, trusted=False)
            elif turn.usage is not None:
                state.usage[turn.ref.id] = turn.usage
            if turn.model is not None:
                state.models[turn.ref.id] = turn.model
        await self._reload_untrusted(state)
        final = _final_status(turn, stopped_as)
        text = "\n\n".join(t for texts in state.texts.values() for t in texts.values() if t)
        usage = state.total_usage() if state.usage else None
        cost, priced = state.cost(self.policy.prices)
        ref = turn.ref if turn is not None else state.ref
        (log.debug if self.quiet_finish else log.info)(
            "run.finished",
            run_id=_id(ref),
            status=final,
            rounds=state.rounds,
            tool_calls=len(state.results),
            recoveries=state.recoveries,
        )
        return RunResult(
            status=final,
            raw=turn.raw if turn is not None else None,
            text=text,
            tool_calls=list(state.results.values()),
            usage=usage,
            rounds=state.rounds,
            reason=state.reason,
            stopped_by=state.stopped_by,
            error=turn.error if turn is not None else None,
            incomplete_reason=turn.incomplete_reason if turn is not None else None,
            conversation_id=state.request.conversation or (ref.conversation if ref else None),
            run_id=_id(ref),
            recoveries=state.recoveries,
            requests=state.requests,
            cost=cost if priced and state.usage else None,
            pending=state.pending if final == "awaiting_approval" else None,
        )

    async def _reload_untrusted(self, state: RunState[RawT]) -> None:
        """Texts of turns whose streams broke (or were never streamed here): the server's."""
        conversation = state.request.conversation
        for turn_id in list(state.untrusted):
            ref = TurnRef(turn_id, conversation or (state.ref.conversation if state.ref else None))
            try:
                parts = await self.backend.transcript(ref)
            except APIStatusError as exc:
                log.warning("run.transcript_unavailable", run_id=turn_id, error=exc.message)
                continue
            state.texts[turn_id] = {p.id: p.text for p in parts}
        state.untrusted.clear()

    async def _hook(
        self, callback: Callable[[Any], Awaitable[None]], arg: object, name: str
    ) -> None:
        try:
            await callback(arg)
        except Exception as exc:
            raise HandlerError(f"EventHandler.{name} raised {exc!r}", callback=name) from exc


class _HandlerCallbacks:
    """Adapts EventHandler tool callbacks for the dispatcher, keeping their first failure.

    The dispatcher only logs a failing callback (a tool must not fail because a UI did), so
    a failing callback holds its call where it is (the tool of a failed
    ``on_tool_call_started`` never starts) and cancels :attr:`batch`: the runner then raises
    the failure as HandlerError.
    """

    def __init__(self, handler: EventHandler | None) -> None:
        self._handler = handler
        self._error: tuple[str, Exception] | None = None
        self.batch: asyncio.Future[list[ToolCallResult]] | None = None
        kind = type(handler) if handler is not None else EventHandler
        self.wants_start = kind.on_tool_call_started is not EventHandler.on_tool_call_started
        self.wants_finish = kind.on_tool_call_finished is not EventHandler.on_tool_call_finished

    async def started(self, call: ToolCall) -> None:
        assert self._handler is not None
        await self._call("on_tool_call_started", self._handler.on_tool_call_started, call)

    async def finished(self, result: ToolCallResult) -> None:
        assert self._handler is not None
        await self._call("on_tool_call_finished", self._handler.on_tool_call_finished, result)

    async def _call(
        self, name: str, callback: Callable[[Any], Awaitable[None]], arg: object
    ) -> None:
        try:
            await callback(arg)
        except Exception as exc:
            if self._error is None:
                self._error = (name, exc)
            if self.batch is not None:
                self.batch.cancel()
            await asyncio.get_running_loop().create_future()  # until the batch is stopped

    def raise_if_failed(self) -> None:
        if self._error is not None:
            name, exc = self._error
            raise HandlerError(f"EventHandler.{name} raised {exc!r}", callback=name) from exc


def _with_output(
    result: RunResult[RawT], output: OutT | None, error: str | None
) -> RunResult[RawT, OutT]:
    values = {f.name: getattr(result, f.name) for f in fields(result)}
    values.update(output=output, output_error=error)
    return RunResult(**values)


def _combined(first: RunResult[RawT], retry: RunResult[RawT]) -> RunResult[RawT]:
    """A run and its output retry as one result: the retry's outcome, both runs' work."""
    usage = (
        (first.usage or Usage()) + (retry.usage or Usage()) if first.usage or retry.usage else None
    )
    return replace(
        retry,
        text="\n\n".join(t for t in (first.text, retry.text) if t),
        tool_calls=[*first.tool_calls, *retry.tool_calls],
        usage=usage,
        rounds=first.rounds + retry.rounds,
        recoveries=first.recoveries + retry.recoveries,
        requests=first.requests + retry.requests,
        cost=None if first.cost is None or retry.cost is None else first.cost + retry.cost,
    )


def _final_status(turn: Turn[Any] | None, stopped_as: str | None) -> str:
    if stopped_as == "expired":
        return "expired"
    if turn is not None and turn.is_terminal and (stopped_as is None or turn.status != "cancelled"):
        return turn.status  # it ended on its own, maybe before our cancel took effect
    return stopped_as or "failed"


def _still_requires(turn: Turn[Any], required: set[str]) -> bool:
    if turn.status != "requires_tools":
        return False
    return {c.id for c in turn.tool_calls} == required


def _code(result: RunResult[Any]) -> str | None:
    return result.error.code if result.error is not None else None


def _id(ref: TurnRef | None) -> str | None:
    return ref.id if ref is not None else None
