"""Execute one batch of tool calls: concurrency limits, deadlines, error capture, caching.

Every call ends in exactly one ``ToolCallResult``; nothing a tool or the model does crashes
the batch, the event loop or the process. Failed calls get a JSON error output::

    {"error": {"type": "<error_type>", "message": "...", "tool": "<name>"}}

plus ``"details": [{"loc", "msg", "type"}, ...]`` for ``invalid_arguments``. Error types:

* ``unknown_tool``, ``invalid_json``, ``invalid_arguments`` (also for an argument named
  like the injected ``ToolContext`` parameter, which the model may never set);
* ``tool_error`` (the tool raised ``ToolError``), ``tool_unavailable`` (it raised
  ``ToolUnavailableError``: the service behind it, e.g. an MCP server, is down or dropped
  the call), ``tool_exception`` (any other exception),
  ``invalid_output`` (the result cannot be encoded);
* ``tool_exit`` (the tool raised ``SystemExit``), ``interrupted`` (``KeyboardInterrupt``),
  ``loop_stop`` (the tool called ``loop.stop()``, which is refused: see
  ``tools.containment``);
* ``timeout``, ``cancelled``;
* ``pool_exhausted``: a sync tool got no thread before its deadline, or at once when every
  pool thread is stuck in a call that timed out (see ``tools.limits``); logged as the
  warning ``tools.pool_exhausted`` with the pool's counts.

``SystemExit`` and ``KeyboardInterrupt`` are contained where the dispatcher awaits the tool,
and in tasks the tool starts (``create_task``, ``gather``) by a task factory on the loop;
see ``tools.containment`` for that and for its limits. A ``KeyboardInterrupt`` that a
signal delivers while an async tool runs counts as that tool's. ``os._exit`` and crashes of
native code cannot be contained.

Logs (logger ``tools``; flat fields, ids and names only unless ``log_payloads``):

* ``tool.batch_started`` (at ``tool.started``'s level: DEBUG, INFO with ``log_payloads``),
  once per batch that starts calls: ``calls`` (how many),
  ``tools`` and ``tool_call_ids`` (lists, in call order), ``run_id``, ``thread_id``;
* ``tool.started`` (DEBUG; INFO with ``log_payloads``, then with ``arguments``), per call:
  ``tool``, ``tool_call_id``, ``run_id``, ``thread_id``;
* ``tool.finished`` (INFO; WARNING with the traceback for the error types that point at a
  bug or a hazard: ``tool_exception``, ``invalid_output``, ``tool_exit``, ``interrupted``,
  ``loop_stop``, ``internal_error``), per call: the same ids plus ``seconds``, ``outcome``
  (``ok`` / ``error``), ``error_type`` (None when ok), and ``output`` with ``log_payloads``;
* the warnings ``tools.pool_exhausted``, ``tools.thread_abandoned``, ``tool.callback_failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol

import structlog

from tools.calls import ToolCall, ToolCallResult
from tools.containment import (
    ContainedExit,
    LoopStopRefused,
    guard_loop,
    running_tool,
    start_task,
    task_starter,
)
from tools.context import ToolContext
from tools.deadlines import Deadlines
from tools.encoding import MIN_OUTPUT_CHARS, encode_output, error_output, truncate
from tools.errors import ArgumentIssue, ToolArgumentsError, ToolError, ToolUnavailableError
from tools.limits import (
    DEFAULT_MAX_ABANDONED_THREADS,
    DEFAULT_PROCESS_LIMIT,
    DEFAULT_THREAD_POOL_SIZE,
    Abandon,
    DaemonThreadPool,
    PoolExhausted,
    PoolStats,
    Ticket,
    process_limiter,
    set_max_abandoned_threads,
    set_process_limit,
    set_thread_pool_size,
    thread_pool,
)
from tools.redaction import mask_secrets
from tools.registry import Tool, ToolRegistry

__all__ = [
    "DEFAULT_MAX_ABANDONED_THREADS",
    "DEFAULT_PROCESS_LIMIT",
    "DEFAULT_THREAD_POOL_SIZE",
    "CallSpan",
    "CallTracer",
    "ToolDispatcher",
    "set_max_abandoned_threads",
    "set_process_limit",
    "set_thread_pool_size",
]

OnStart = Callable[[ToolCall], Awaitable[None]]
OnFinish = Callable[[ToolCallResult], Awaitable[None]]


class CallSpan(Protocol):
    """A span around one call, opened in the call's own task (so it is current there)."""

    def finish(self, result: ToolCallResult | None) -> None:
        """The call ended with ``result`` (None: it was cancelled)."""
        ...


#: Opens a :class:`CallSpan` for a call (``runtime.core.tracing.ToolTracer``).
CallTracer = Callable[[ToolCall], CallSpan]


class _Failure(Exception):
    """Internal: a call failed; carries what the error output needs."""

    def __init__(
        self,
        error_type: str,
        message: str,
        exception: BaseException | None = None,
        details: tuple[ArgumentIssue, ...] = (),
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.exception = exception
        self.details = details


class _Flight:
    """A call being executed or queued for a slot; batches asking for the same id share it.

    A call waiting for a slot (of its batch or of the process) is this object and at most
    a :class:`~tools.limits.Ticket`: its task is created only when it is admitted.
    """

    __slots__ = (
        "admitted",
        "batch",
        "call",
        "deferred",
        "holds_slot",
        "prepared",
        "started",
        "task",
        "ticket",
        "waiters",
        "withdrawn",
    )

    def __init__(
        self, call: ToolCall, batch: _Batch, prepared: tuple[Tool, Any] | _Failure
    ) -> None:
        self.call = call
        self.batch = batch
        self.started = time.monotonic()
        # What validation gave (tool, arguments), or the failure the task will report.
        self.prepared = prepared
        self.task: asyncio.Task[ToolCallResult] | None = None  # None: queued for a slot
        self.waiters = 0
        self.holds_slot = False  # a process slot (and a batch slot, if limited) is held
        self.ticket: Ticket | None = None
        self.deferred = False  # had to wait for a slot
        self.withdrawn = False  # left the queue (cancelled): it never starts
        self.admitted: asyncio.Future[None] | None = None  # for other batches awaiting it


class _Batch:
    """One run_batch call: its callbacks, deadline and the calls waiting for its slots."""

    __slots__ = (
        "deadline",
        "drained",
        "expiry",
        "free",
        "log_info",
        "log_started",
        "on_finish",
        "on_start",
        "pending",
        "queued",
        "waiting",
    )

    def __init__(
        self,
        free: int | None,
        deadline: float | None,
        on_start: OnStart | None,
        on_finish: OnFinish | None,
    ) -> None:
        self.free = free  # batch slots left (None: the batch fits max_concurrency)
        self.deadline = deadline
        self.on_start = on_start
        self.on_finish = on_finish
        self.pending: deque[_Flight] = deque()  # waiting for a batch slot
        self.queued: list[_Flight] = []  # every call of the batch that had to wait
        self.waiting = 0  # of those, how many have no task yet
        self.drained: asyncio.Future[None] | None = None  # set when no call waits
        self.expiry: asyncio.TimerHandle | None = None  # the deadline of waiting calls
        # The log levels, checked once per batch rather than at every call's event.
        self.log_info = True
        self.log_started = True


class ToolDispatcher:
    """Runs batches of tool calls against a registry; one instance per run.

    A ``tool_call_id`` executes at most once per dispatcher: later batches (and concurrent
    ones) get the cached or in-flight result.

    Args:
        registry: where tool names are looked up.
        max_concurrency: calls of one batch executing at once.
        default_timeout_s: per-call timeout for tools without their own (None: no timeout).
        max_output_chars: cap on each output, truncation marker included.
        log_payloads: log arguments and outputs (they may hold personal data).
        run_id: bound into logs and ToolContext.
        thread_id: bound into logs and ToolContext.
        redact: applied to every error message before it becomes an output (exception text
            can quote credentials), e.g. ``runtime.logging.redact``. The built-in masking of
            common key shapes (``tools.redaction.mask_secrets``) applies after it, and
            alone when None.
        tracer: opens a span around each call, in the call's task (None: no tracing).
    """

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        max_concurrency: int = 32,
        default_timeout_s: float | None = 60.0,
        max_output_chars: int = 32_768,
        log_payloads: bool = False,
        run_id: str | None = None,
        thread_id: str | None = None,
        redact: Callable[[str], str] | None = None,
        tracer: CallTracer | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if default_timeout_s is not None and not default_timeout_s > 0:
            raise ValueError("default_timeout_s must be > 0 or None")
        if max_output_chars < MIN_OUTPUT_CHARS:
            raise ValueError(f"max_output_chars must be >= {MIN_OUTPUT_CHARS}")
        self.registry = registry
        self.max_concurrency = max_concurrency
        self.default_timeout_s = default_timeout_s
        self.max_output_chars = max_output_chars
        self.log_payloads = log_payloads
        self.run_id = run_id
        self.thread_id = thread_id
        self.redact = redact
        self.tracer = tracer
        # Resolved once (not a lazy proxy per event): dispatchers are per run, and logging is
        # configured long before a run starts.
        self._log: Any = structlog.get_logger("tools").bind()
        self._info_enabled = _enabled(self._log, logging.INFO)
        # One line per call at INFO is tool.finished; tool.started and the batch's
        # tool.batch_started are DEBUG, or INFO when the arguments were asked for.
        started_level = logging.INFO if log_payloads else logging.DEBUG
        self._started_enabled = _enabled(self._log, started_level)
        self._log_started_at = self._log.info if log_payloads else self._log.debug
        self._cache: dict[str, ToolCallResult] = {}
        self._flights: dict[str, _Flight] = {}
        self._deadlines = Deadlines()  # the calls' timeouts, on one timer
        self._spawn: (
            Callable[[Coroutine[Any, Any, ToolCallResult]], asyncio.Task[ToolCallResult]] | None
        ) = None

    # -- public API -------------------------------------------------------------------------

    async def run_batch(
        self,
        calls: Sequence[ToolCall],
        *,
        deadline: float | None = None,
        on_start: OnStart | None = None,
        on_finish: OnFinish | None = None,
    ) -> list[ToolCallResult]:
        """Execute calls concurrently and return one result per call, in call order.

        Args:
            calls: the calls of one ``requires_action``.
            deadline: absolute ``time.monotonic()`` by which every call must be done; calls
                still running then get a ``timeout`` output.
            on_start: awaited when a call of this batch starts executing.
            on_finish: awaited with each result of this batch as it completes (not for cached
                results, nor when the batch is cancelled).

        Returns:
            The results, in the order of calls.

        Raises:
            asyncio.CancelledError: the batch was cancelled; its running calls are cancelled
                (async tools) or flagged (sync tools) and recorded as ``cancelled``.
        """
        loop = asyncio.get_running_loop()
        guard_loop(loop)
        launches = sum(1 for c in calls if c.id not in self._cache and c.id not in self._flights)
        free = self.max_concurrency if launches > self.max_concurrency else None
        batch = _Batch(free, deadline, on_start, on_finish)
        batch.log_info = self._info_enabled()
        batch.log_started = self._started_enabled()
        flights: list[_Flight] = []
        launched: list[ToolCall] = []
        self._spawn = task_starter(loop)  # no await in this loop: no other batch sees it
        try:
            for call in calls:
                if call.id in self._cache:
                    continue
                flight = self._flights.get(call.id)
                if flight is None:
                    flight = self._launch(call, batch)
                    launched.append(call)
                flight.waiters += 1
                flights.append(flight)
        finally:
            self._spawn = None
        if launched:
            self._log_batch_started(launched, batch)  # before any call runs: tasks start on await
        if flights:
            # The calls' timer stays armed until the batch ends: one timer per batch.
            self._deadlines.hold()
            try:
                await self._wait(flights, batch)
            finally:
                self._deadlines.release()
        for flight in flights:
            self._settle(flight)
        return [self._cache[call.id] for call in calls]

    def cached(self, tool_call_id: str) -> ToolCallResult | None:
        """Return the result already computed for tool_call_id, if any."""
        result = self._cache.get(tool_call_id)
        if result is None:
            flight = self._flights.get(tool_call_id)
            if flight is not None and flight.task is not None and flight.task.done():
                result = self._settle(flight)
        return result

    @property
    def in_flight(self) -> int:
        """How many calls are executing (or finished but not yet collected)."""
        return len(self._flights)

    def seed_cache(self, results: Iterable[ToolCallResult]) -> None:
        """Record results computed earlier (e.g. before a crash) so they are not re-executed."""
        for result in results:
            self._cache[result.tool_call_id] = result

    async def aclose(self) -> None:
        """Cancel calls still in flight and wait for them to settle."""
        flights = list(self._flights.values())
        self._withdraw([flight for flight in flights if flight.task is None])
        tasks = [flight.task for flight in flights if flight.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for flight in flights:
            self._settle(flight)

    # -- batch plumbing ---------------------------------------------------------------------

    def _launch(self, call: ToolCall, batch: _Batch) -> _Flight:
        flight = _Flight(call, batch, self._prepare(call, batch.deadline))
        self._flights[call.id] = flight
        if isinstance(flight.prepared, _Failure):
            self._start(flight)  # fails at once: takes no slot
        elif batch.free is not None and batch.free == 0:
            batch.pending.append(flight)
            self._deferred(flight)
        else:
            self._admit(flight)
        return flight

    def _prepare(self, call: ToolCall, deadline: float | None) -> tuple[Tool, Any] | _Failure:
        """Look the tool up and validate the arguments, before the call waits for a slot."""
        tool = self.registry.get(call.name)
        if tool is None:
            return _Failure("unknown_tool", self._unknown_message(call.name))
        try:
            validated = tool.schema.validate(call.arguments)
            if tool.schema.var_keyword and tool.schema.context_param is not None:
                _refuse_reserved(tool, validated)
        except ToolArgumentsError as exc:
            return _Failure(exc.error_type, str(exc), exc, exc.details)
        except _Failure as failure:
            return failure
        except Exception as exc:
            return _Failure("internal_error", f"dispatcher error: {exc!r}", exc)
        if deadline is not None and deadline <= time.monotonic():
            return _Failure("timeout", "the batch deadline passed before the call started")
        return tool, validated

    def _admit(self, flight: _Flight) -> None:
        """Take a batch slot (already free) and a process slot, or queue for the latter."""
        batch = flight.batch
        if batch.free is not None:
            batch.free -= 1
        if process_limiter.try_acquire():
            flight.holds_slot = True
            self._start(flight)
            return
        if not flight.deferred:
            self._deferred(flight)
        flight.ticket = process_limiter.enqueue(functools.partial(self._granted, flight))

    def _deferred(self, flight: _Flight) -> None:
        flight.deferred = True
        batch = flight.batch
        batch.queued.append(flight)
        batch.waiting += 1
        if batch.deadline is not None and batch.expiry is None:
            delay = max(0.0, batch.deadline - time.monotonic())
            loop = asyncio.get_running_loop()
            batch.expiry = loop.call_later(delay, self._expire_queued, batch)

    def _granted(self, flight: _Flight) -> None:
        """A loop callback: the process slot is the flight's now."""
        flight.holds_slot = True
        if flight.withdrawn or flight.task is not None:
            self._release(flight)  # cancelled or timed out meanwhile
        else:
            self._start(flight)

    def _start(self, flight: _Flight) -> None:
        # Settled lazily (by run_batch, cached() or aclose()) rather than by a done callback:
        # one loop callback less per call.
        run = self._run_untraced if self.tracer is None else self._run_traced
        spawn = self._spawn  # set while run_batch starts its calls; None in loop callbacks
        if spawn is not None:
            flight.task = spawn(run(flight))
        else:
            flight.task = start_task(asyncio.get_running_loop(), run(flight))
        if flight.deferred:
            self._left_queue(flight)

    def _left_queue(self, flight: _Flight) -> None:
        """A deferred call got its task or was withdrawn."""
        flight.ticket = None
        if flight.admitted is not None and not flight.admitted.done():
            flight.admitted.set_result(None)
        batch = flight.batch
        batch.waiting -= 1
        if batch.waiting > 0:
            return
        batch.queued.clear()
        if batch.expiry is not None:
            batch.expiry.cancel()
            batch.expiry = None
        if batch.drained is not None and not batch.drained.done():
            batch.drained.set_result(None)

    def _release(self, flight: _Flight) -> None:
        """Give the flight's slots back and admit the next call waiting for them."""
        if not flight.holds_slot:
            return
        flight.holds_slot = False
        process_limiter.release()
        batch = flight.batch
        if batch.free is None:
            return
        batch.free += 1
        while batch.pending and batch.free > 0:
            waiting = batch.pending.popleft()
            if not waiting.withdrawn and waiting.task is None:
                self._admit(waiting)

    def _expire_queued(self, batch: _Batch) -> None:
        """The batch deadline passed: its calls still waiting for a slot time out."""
        batch.expiry = None
        expired = [f for f in batch.queued if f.task is None and not f.withdrawn]
        process_limiter.withdraw(f.ticket for f in expired if f.ticket is not None)
        for flight in expired:
            flight.prepared = _Failure(
                "timeout", "the batch deadline passed while the call waited for a slot"
            )
            self._start(flight)  # a granted ticket's slot is released by _granted

    def _withdraw(self, flights: list[_Flight]) -> None:
        """Queued calls that will never start (their batch was cancelled)."""
        process_limiter.withdraw(f.ticket for f in flights if f.ticket is not None)
        for flight in flights:
            if flight.withdrawn:
                continue
            flight.withdrawn = True
            if flight.deferred:
                self._left_queue(flight)

    async def _wait(self, flights: list[_Flight], batch: _Batch) -> None:
        try:
            if any(f.task is None for f in flights):
                await self._admitted(flights, batch)
            tasks = {flight.task for flight in flights if flight.task is not None}
            if tasks:  # none when aclose() withdrew every queued call
                await asyncio.wait(tasks)
        except asyncio.CancelledError:
            orphans = self._abandon(flights)
            if orphans:
                # Reap what we cancelled so the caller sees a consistent state.
                await asyncio.wait(orphans)
            for flight in flights:
                if flight.withdrawn if flight.task is None else flight.task.done():
                    self._settle(flight)
            raise
        for flight in flights:
            flight.waiters -= 1

    async def _admitted(self, flights: list[_Flight], batch: _Batch) -> None:
        """Wait until every call of ``flights`` has its task (was admitted or timed out)."""
        loop = asyncio.get_running_loop()
        if batch.waiting:
            batch.drained = loop.create_future()
            await batch.drained
        for flight in flights:  # queued by another batch
            if flight.task is None and not flight.withdrawn:
                if flight.admitted is None:
                    flight.admitted = loop.create_future()
                await flight.admitted

    def _abandon(self, flights: list[_Flight]) -> set[asyncio.Task[ToolCallResult]]:
        orphans: set[asyncio.Task[ToolCallResult]] = set()
        never_started: list[_Flight] = []
        for flight in flights:
            flight.waiters -= 1
            if flight.waiters > 0:
                continue
            if flight.task is None:
                never_started.append(flight)
            elif not flight.task.done():
                flight.task.cancel()
                orphans.add(flight.task)
        if never_started:
            self._withdraw(never_started)
        return orphans

    def _settle(self, flight: _Flight) -> ToolCallResult:
        """Turn a finished flight into its cached result (idempotent)."""
        call = flight.call
        existing = self._cache.get(call.id)
        if existing is not None:
            self._flights.pop(call.id, None)
            return existing
        task = flight.task
        if task is not None and not task.done():
            raise RuntimeError("a flight is settled before its task is done")
        self._release(flight)  # a task cancelled before its first step kept its slot
        if task is None or task.cancelled():
            failure = _Failure("cancelled", f"the call of tool {call.name!r} was cancelled")
            result = self._failed(call, failure, flight.started)
            self._log_finished(result, flight.batch)
        elif (exc := task.exception()) is not None:
            failure = _Failure("internal_error", f"dispatcher error: {exc!r}", exc)
            result = self._failed(call, failure, flight.started)
            self._log_finished(result, flight.batch)
        else:
            result = task.result()
        self._cache[call.id] = result
        self._flights.pop(call.id, None)
        return result

    # -- one call ---------------------------------------------------------------------------

    async def _run_traced(self, flight: _Flight) -> ToolCallResult:
        assert self.tracer is not None  # _start picks _run_untraced without a tracer
        span = self.tracer(flight.call)  # in the call's task, so the span is current there
        result: ToolCallResult | None = None
        try:
            result = await self._run_untraced(flight)
            return result
        finally:
            span.finish(result)

    async def _run_untraced(self, flight: _Flight) -> ToolCallResult:
        call, batch, started = flight.call, flight.batch, flight.started
        if batch.log_started:
            self._log_started(call)
        try:
            # The call's steps inline, not in a helper coroutine: one layer less per call.
            prepared = flight.prepared
            if isinstance(prepared, _Failure):
                raise prepared
            tool, validated = prepared
            try:
                if batch.deadline is not None and batch.deadline <= time.monotonic():
                    raise _Failure(
                        "timeout", "the batch deadline passed while the call waited for a slot"
                    )
                if batch.on_start is not None:
                    await self._callback(batch.on_start, call, call)
                value = await self._execute(tool, call, validated, batch.deadline)
            finally:
                self._release(flight)
            if type(value) is str and len(value) <= self.max_output_chars:
                output = value  # the common case, without the encoder's two calls
            else:
                output = self._encode(value)
            result = ToolCallResult(
                tool_call_id=call.id,
                name=call.name,
                arguments=call.arguments,
                output=output,
                is_error=False,
                seconds=time.monotonic() - started,
            )
        except _Failure as failure:
            result = self._failed(call, failure, started)
        # Recorded before on_finish runs, so a cancellation during the callback keeps it.
        self._cache[call.id] = result
        self._log_finished(result, batch)
        if batch.on_finish is not None:
            await self._callback(batch.on_finish, result, call)
        return result

    async def _execute(
        self, tool: Tool, call: ToolCall, validated: Any, batch_deadline: float | None
    ) -> Any:
        timeout_s = tool.timeout_s if tool.timeout_s is not None else self.default_timeout_s
        if timeout_s is not None and math.isinf(timeout_s):
            timeout_s = None
        now = time.monotonic()
        deadline, by_tool = _earliest(now, timeout_s, batch_deadline)
        context = self._context(tool, call, deadline) if tool.schema.context_param else None
        args, kwargs = tool.schema.call_args(validated, context)
        timer = self._deadlines.timeout(None if deadline is None else deadline - now)
        thread = None if tool.is_async else _ThreadCall(thread_pool())
        token = running_tool.set(tool.name)
        try:
            with timer if timer is not None else _UNTIMED:
                # The tool awaited here, not through a helper coroutine: one layer less.
                if thread is None:
                    value = await tool.fn(*args, **kwargs)
                else:
                    run = functools.partial(
                        contextvars.copy_context().run, tool.fn, *args, **kwargs
                    )
                    value = await thread.run(run)
                if type(value) not in _PLAIN_RESULTS and inspect.isawaitable(value):
                    value = await value  # a sync wrapper around a coroutine function
                return value
        except TimeoutError as exc:
            _flag(context)
            self._log_abandoned(call, thread)
            if timer is None or not timer.expired():
                raise _Failure("tool_exception", _describe(exc), exc) from None
            if thread is not None and thread.outcome is Abandon.NOT_STARTED:
                raise self._no_thread(call, thread.pool.stats(), exc) from None
            if by_tool:
                message = f"tool {tool.name!r} did not finish within its timeout of {timeout_s:g} s"
            else:
                message = f"the batch deadline passed before tool {tool.name!r} finished"
            raise _Failure("timeout", message, exc) from None
        except asyncio.CancelledError as exc:
            _flag(context)
            self._log_abandoned(call, thread)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise _Failure("cancelled", f"tool {tool.name!r} was cancelled", exc) from None
        except ToolUnavailableError as exc:
            raise _Failure("tool_unavailable", str(exc) or type(exc).__name__, exc) from None
        except ToolError as exc:
            raise _Failure("tool_error", str(exc) or type(exc).__name__, exc) from None
        except PoolExhausted as exc:
            raise self._no_thread(call, exc.stats, exc) from None
        except Exception as exc:
            raise _Failure("tool_exception", _describe(exc), exc) from None
        except GeneratorExit:  # this coroutine is being closed: let it close
            _flag(context)
            raise
        except BaseException as exc:  # SystemExit & co: contained, never the host's end
            _flag(context)
            raise _exit_failure(tool, exc) from None
        finally:
            # Closed by garbage collection, the coroutine runs outside its task's context,
            # where the token is meaningless; otherwise on_finish must not run as the tool.
            try:  # noqa: SIM105 - hot path: suppress() builds an object per call
                running_tool.reset(token)
            except ValueError:
                pass

    def _no_thread(self, call: ToolCall, stats: PoolStats, exc: BaseException) -> _Failure:
        self._log.warning(
            "tools.pool_exhausted",
            tool=call.name,
            tool_call_id=call.id,
            run_id=self.run_id,
            thread_id=self.thread_id,
            fail_fast=isinstance(exc, PoolExhausted),
            **stats.as_fields(),
        )
        if isinstance(exc, PoolExhausted):
            reason = f"no thread can run tool {call.name!r}: {exc}"
        else:
            stuck = f", {stats.abandoned} stuck in calls that timed out" if stats.abandoned else ""
            reason = (
                f"no thread was free to run tool {call.name!r} before its deadline "
                f"({stats.busy} of {stats.threads} tool threads busy{stuck})"
            )
        return _Failure("pool_exhausted", f"{reason}; the tool did not run", exc)

    def _log_abandoned(self, call: ToolCall, thread: _ThreadCall | None) -> None:
        if thread is None or thread.outcome is not Abandon.ABANDONED:
            return
        self._log.warning(
            "tools.thread_abandoned",
            tool=call.name,
            tool_call_id=call.id,
            run_id=self.run_id,
            thread_id=self.thread_id,
            **thread.pool.stats().as_fields(),
        )

    def _encode(self, value: Any) -> str:
        try:
            text = encode_output(value)
        except Exception as exc:
            raise _Failure("invalid_output", f"the result cannot be encoded: {exc}", exc) from None
        return truncate(text, self.max_output_chars)

    def _context(self, tool: Tool, call: ToolCall, deadline: float | None) -> ToolContext:
        return ToolContext(
            tool_call_id=call.id,
            tool_name=tool.name,
            run_id=self.run_id,
            thread_id=self.thread_id,
            deadline=deadline,
            log=self._log,
        )

    async def _callback(
        self, hook: Callable[[Any], Awaitable[None]], arg: Any, call: ToolCall
    ) -> None:
        try:
            await hook(arg)
        except Exception as exc:
            self._log.warning(
                "tool.callback_failed",
                tool=call.name,
                tool_call_id=call.id,
                run_id=self.run_id,
                error=_describe(exc),
            )

    def _failed(self, call: ToolCall, failure: _Failure, started: float) -> ToolCallResult:
        redact = self._redact
        message = redact(failure.message)
        details = tuple(
            ArgumentIssue(redact(d.loc), redact(d.msg), d.type) for d in failure.details
        )
        output = error_output(
            failure.error_type,
            message,
            call.name,
            details=details,
            max_chars=self.max_output_chars,
        )
        return ToolCallResult(
            tool_call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            output=output,
            is_error=True,
            seconds=time.monotonic() - started,
            error_type=failure.error_type,
            exception=failure.exception,
        )

    def _redact(self, text: str) -> str:
        if self.redact is not None:
            text = self.redact(text)
        return mask_secrets(text)

    def _unknown_message(self, name: str) -> str:
        known = ", ".join(self.registry.names()) or "none"
        return f"no tool named {name!r}; available tools: {known}"

    # -- logs -------------------------------------------------------------------------------

    def _log_batch_started(self, calls: list[ToolCall], batch: _Batch) -> None:
        # At tool.started's level (DEBUG unless payloads are logged): at INFO each call's
        # tool.finished line says what ran.
        if not batch.log_started:
            return
        self._log_started_at(
            "tool.batch_started",
            calls=len(calls),
            tools=[call.name for call in calls],
            tool_call_ids=[call.id for call in calls],
            run_id=self.run_id,
            thread_id=self.thread_id,
        )

    def _log_started(self, call: ToolCall) -> None:
        # Called only when the batch's log_started is on (the caller checks: no frame a call).
        extra = {"arguments": call.arguments} if self.log_payloads else {}
        # The fields as keyword arguments, not a dict unpacked: one dict less per event.
        self._log_started_at(
            "tool.started",
            tool=call.name,
            tool_call_id=call.id,
            run_id=self.run_id,
            thread_id=self.thread_id,
            **extra,
        )

    def _log_finished(self, result: ToolCallResult, batch: _Batch) -> None:
        warn = result.error_type in _WARNING_ERRORS
        if not warn and not batch.log_info:
            return
        extra: dict[str, Any] = {"output": result.output} if self.log_payloads else {}
        if warn:
            extra["exc_info"] = result.exception
        (self._log.warning if warn else self._log.info)(
            "tool.finished",
            tool=result.name,
            tool_call_id=result.tool_call_id,
            run_id=self.run_id,
            thread_id=self.thread_id,
            seconds=round(result.seconds, 6),
            outcome="error" if result.is_error else "ok",
            error_type=result.error_type,
            **extra,
        )


# A call without a deadline runs under this (reusable) no-op in place of a timer.
_UNTIMED = contextlib.nullcontext()

# Results that are never awaitable: they skip isawaitable's ABC check.
_PLAIN_RESULTS = frozenset({str, int, float, bool, dict, list, tuple, type(None)})


def _earliest(
    now: float, timeout_s: float | None, batch_deadline: float | None
) -> tuple[float | None, bool]:
    """Return the call's deadline and whether the tool's own timeout is what sets it."""
    tool_deadline = None if timeout_s is None else now + timeout_s
    if tool_deadline is None:
        return batch_deadline, False
    if batch_deadline is None or tool_deadline <= batch_deadline:
        return tool_deadline, True
    return batch_deadline, False


def _flag(context: ToolContext | None) -> None:
    if context is not None:
        context.cancelled.set()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# Failures logged at warning level, with the exception: they point at a bug or a hazard.
_WARNING_ERRORS = frozenset(
    {"tool_exception", "internal_error", "invalid_output", "tool_exit", "interrupted", "loop_stop"}
)


def _enabled(log: Any, level: int) -> Callable[[], bool]:
    """A cheap check whether ``log`` would emit at ``level``, so filtered events cost no dict.

    structlog's filtering loggers have ``is_enabled_for``, its stdlib wrapper
    ``isEnabledFor``; for other wrappers, assume enabled.
    """
    check = getattr(log, "is_enabled_for", None) or getattr(log, "isEnabledFor", None)
    if check is None:
        return _always
    return functools.partial(check, level)


def _always() -> bool:
    return True


def _refuse_reserved(tool: Tool, validated: Any) -> None:
    """A ``**kwargs`` tool's extra arguments must not replace the injected ToolContext."""
    extra = validated.model_extra
    name = tool.schema.context_param
    if extra and name in extra:
        message = f"argument {name!r} is reserved by tool {tool.name!r} and cannot be set"
        issue = ArgumentIssue(name or "", message, "reserved_parameter")
        raise _Failure("invalid_arguments", message, details=(issue,))


def _exit_failure(tool: Tool, exc: BaseException) -> _Failure:
    if isinstance(exc, LoopStopRefused):
        return _Failure("loop_stop", f"{exc}; the tool's call was ended", exc)
    where = ""
    if isinstance(exc, ContainedExit):
        exc, where = exc.original, " in a task it started"
    if isinstance(exc, SystemExit):
        return _Failure(
            "tool_exit",
            f"tool {tool.name!r} raised SystemExit({exc.code!r}){where}; the process keeps running",
            exc,
        )
    if isinstance(exc, KeyboardInterrupt):
        return _Failure("interrupted", f"tool {tool.name!r} raised KeyboardInterrupt{where}", exc)
    return _Failure("tool_exception", _describe(exc), exc)


class _ThreadCall:
    """One sync call on the pool; on timeout or cancellation its thread is given up on."""

    __slots__ = ("outcome", "pool")

    def __init__(self, pool: DaemonThreadPool) -> None:
        self.pool = pool
        self.outcome: Abandon | None = None

    async def run(self, fn: Callable[[], Any]) -> Any:
        future = self.pool.submit(fn)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self.outcome = self.pool.abandon(future)
            raise
