"""The run loop: start -> stream -> requires_action -> execute tools -> submit -> ... -> result.

One :class:`Orchestrator` serves many concurrent runs. Each run gets a :class:`_RunState`
(its ids, its tool dispatcher, the text it produced) and goes through named steps:

* ``_start``: create the run (idempotency key in metadata; adopt our run after an ambiguous
  failure; apply the busy-thread policy),
* ``_follow``: consume a stream; if it breaks, recover by polling the run,
* ``_act``: run every requested tool call concurrently under the expiry deadline and submit
  all outputs in one request (never twice after an ambiguous failure),
* ``_finish``: build the :class:`RunResult`.

Cancelling the task that awaits a run cancels its tools, cancels the run on the server
(shielded, bounded) and re-raises ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from runtime.client import AssistantsClient
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
from runtime.handler import EventHandler
from runtime.logging import redact
from runtime.policy import IDEMPOTENCY_METADATA_KEY, RunPolicy
from runtime.protocol.models import Message, Run, Thread
from runtime.result import RunResult
from runtime.stream import RunStream
from tools import ToolCall, ToolCallResult, ToolDispatcher, ToolRegistry

log = structlog.get_logger("runtime.orchestrator")

AMBIGUOUS_ERRORS = (ServerError, ConnectError, RequestTimeout, RateLimitError)
RERUN_CODES = frozenset({"server_error", "rate_limit_exceeded"})


@dataclass
class _RunState:
    """Everything one run accumulates while the orchestrator drives it."""

    thread_id: str
    handler: EventHandler | None
    dispatcher: ToolDispatcher
    idempotency_key: str
    run_id: str | None = None
    rounds: int = 0
    calls_seen: int = 0
    recoveries: int = 0
    create_in_flight: bool = False
    stream_lost: bool = False
    reason: str | None = None
    messages: dict[str, Message] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    results: dict[str, ToolCallResult] = field(default_factory=dict)
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)


class Orchestrator:
    """Drives assistant runs with local tools.

    Args:
        client: the API client (its retries handle transport failures).
        registry: the tools the model may call.
        policy: retry, expiry, cancellation and bounds.
        handler: default callbacks for every run (a run may pass its own).
    """

    def __init__(
        self,
        client: AssistantsClient,
        registry: ToolRegistry,
        policy: RunPolicy | None = None,
        handler: EventHandler | None = None,
    ) -> None:
        self.client = client
        self.registry = registry
        self.policy = policy or RunPolicy()
        self.handler = handler
        self._active: dict[str, _RunState] = {}
        self._background: set[asyncio.Task[None]] = set()

    # --- public API -----------------------------------------------------------------------

    async def run(
        self,
        thread_id: str,
        assistant_id: str,
        *,
        handler: EventHandler | None = None,
        idempotency_key: str | None = None,
        adopt_existing: bool = False,
        raise_on_failure: bool = False,
        **run_params: Any,
    ) -> RunResult:
        """Create a run on ``thread_id`` and drive it to a terminal status.

        Args:
            thread_id: the thread to run on.
            assistant_id: the assistant to run.
            handler: callbacks for this run (default: the orchestrator's).
            idempotency_key: stored in the run's metadata to find it again after an
                ambiguous failure (default: a fresh UUID).
            adopt_existing: first look for a run of ours (same key) and resume it.
            raise_on_failure: raise RunFailedError unless the run completed.
            **run_params: passed through to the API (instructions, tools, metadata, ...);
                ``tools`` defaults to the registry's definitions.

        Returns:
            The RunResult, whatever the terminal status.
        """
        state = self._new_state(thread_id, handler, idempotency_key)
        result = await self._guarded(
            state, self._run_new(state, assistant_id, adopt_existing, run_params)
        )
        return result.raise_for_status() if raise_on_failure else result

    async def create_thread_and_run(
        self,
        assistant_id: str,
        *,
        messages: Sequence[Mapping[str, Any]] = (),
        thread: Mapping[str, Any] | None = None,
        handler: EventHandler | None = None,
        idempotency_key: str | None = None,
        raise_on_failure: bool = False,
        **run_params: Any,
    ) -> RunResult:
        """Create a thread with ``messages`` and run ``assistant_id`` on it.

        The thread is created first, then the run: a run created on a known thread can be
        found again after an ambiguous failure, so a retry never makes a second run.
        """
        thread_params = dict(thread or {})
        all_messages = list(thread_params.pop("messages", [])) + list(messages)
        created = await self._create_thread(all_messages, thread_params)
        return await self.run(
            created.id,
            assistant_id,
            handler=handler,
            idempotency_key=idempotency_key,
            raise_on_failure=raise_on_failure,
            **run_params,
        )

    async def _create_thread(
        self, messages: list[Mapping[str, Any]], params: dict[str, Any]
    ) -> Thread:
        """Create the thread, retrying ambiguous failures: a stray empty thread costs nothing,
        unlike a second run."""
        for attempt in range(1, self.policy.create_attempts + 1):
            try:
                return await self.client.create_thread(messages=messages, **params)
            except AMBIGUOUS_ERRORS as exc:
                log.warning(
                    "run.thread_create_ambiguous", attempt=attempt, error=type(exc).__name__
                )
                if attempt == self.policy.create_attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def resume(
        self,
        thread_id: str,
        run_id: str,
        *,
        handler: EventHandler | None = None,
        known_results: Iterable[ToolCallResult] = (),
        raise_on_failure: bool = False,
    ) -> RunResult:
        """Adopt a run that already exists and drive it to a terminal status.

        Args:
            thread_id: the run's thread.
            run_id: the run.
            handler: callbacks for this run.
            known_results: tool outputs computed earlier (e.g. before a crash); they are
                submitted again if still required, never re-executed.
            raise_on_failure: raise RunFailedError unless the run completed.
        """
        state = self._new_state(thread_id, handler, None)
        self._track(state, run_id)
        state.dispatcher.seed_cache(known_results)
        for known in known_results:
            state.results[known.tool_call_id] = known
        result = await self._guarded(state, self._drive(state, None))
        return result.raise_for_status() if raise_on_failure else result

    async def cancel(self, run_id: str, *, thread_id: str | None = None) -> Run | None:
        """Cancel a run from elsewhere: its local tools stop and the server run is cancelled.

        Args:
            run_id: the run to cancel.
            thread_id: its thread (needed when the run is not driven by this orchestrator).

        Returns:
            The run as the cancel request answered it, or None if it had already ended.
        """
        state = self._active.get(run_id)
        if state is not None:
            state.reason = state.reason or "cancelled by request"
            state.cancel_requested.set()
            thread_id = state.thread_id
        if thread_id is None:
            raise ValueError(f"thread_id is needed to cancel run {run_id} not driven here")
        return await self._request_cancel(thread_id, run_id)

    async def aclose(self) -> None:
        """Wait for background clean-ups (server-side cancels) to finish."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # --- run lifecycle --------------------------------------------------------------------

    def _new_state(
        self, thread_id: str, handler: EventHandler | None, key: str | None
    ) -> _RunState:
        policy = self.policy
        dispatcher = ToolDispatcher(
            self.registry,
            max_concurrency=policy.max_tool_concurrency,
            default_timeout_s=policy.tool_timeout_s,
            max_output_chars=policy.max_output_chars,
            log_payloads=policy.log_tool_payloads,
            thread_id=thread_id,
            redact=redact,  # exception text can quote credentials: never send them upstream
        )
        return _RunState(
            thread_id=thread_id,
            handler=handler if handler is not None else self.handler,
            dispatcher=dispatcher,
            idempotency_key=key or uuid.uuid4().hex,
        )

    async def _guarded(self, state: _RunState, body: Any) -> RunResult:
        """Run ``body``; on cancellation or error, cancel the server run, then re-raise."""
        with structlog.contextvars.bound_contextvars(thread_id=state.thread_id):
            try:
                result: RunResult = await body
                return result
            except BaseException as exc:
                await self._abort(state, exc)
                raise
            finally:
                if state.run_id is not None:
                    self._active.pop(state.run_id, None)
                structlog.contextvars.unbind_contextvars("run_id")
                await state.dispatcher.aclose()

    async def _abort(self, state: _RunState, exc: BaseException) -> None:
        """Cancel the server run after a local failure or cancellation (shielded, bounded)."""
        log.warning("run.aborting", run_id=state.run_id, error=type(exc).__name__)
        task = self._spawn(self._cancel_server_run(state))
        try:
            await asyncio.shield(task)
        except BaseException:  # cancelled again: the clean-up goes on in the background
            log.warning("run.abort_detached", run_id=state.run_id)

    async def _run_new(
        self, state: _RunState, assistant_id: str, adopt: bool, params: dict[str, Any]
    ) -> RunResult:
        reruns = 0
        while True:
            stream = await self._start(state, assistant_id, adopt, params)
            result = await self._drive(state, stream)
            if not self._should_rerun(result, reruns):
                return result
            reruns += 1
            log.warning("run.rerun", run_id=state.run_id, code=result.last_error.code)
            state.idempotency_key = f"{state.idempotency_key}-rerun{reruns}"
            state.run_id = None
            adopt = False

    def _should_rerun(self, result: RunResult, reruns: int) -> bool:
        if not self.policy.rerun_on_server_error or reruns >= self.policy.max_reruns:
            return False
        error = result.last_error
        return result.status == "failed" and getattr(error, "code", None) in RERUN_CODES

    # --- start ----------------------------------------------------------------------------

    async def _start(
        self, state: _RunState, assistant_id: str, adopt: bool, params: dict[str, Any]
    ) -> RunStream | None:
        """Create the run and return its stream, or None when we adopted an existing run."""
        if adopt and await self._adopt(state):
            return None
        body = self._run_body(state, params)
        busy_deadline = time.monotonic() + self.policy.busy_wait_s
        ambiguous = 0  # busy-thread refusals are bounded by busy_wait_s, not by attempts
        while True:
            state.create_in_flight = True  # stays set if we are cancelled mid-request
            try:
                return await self.client.create_run(
                    state.thread_id, assistant_id, stream=True, handler=state.handler, **body
                )
            except ThreadBusyError as exc:
                state.create_in_flight = False
                if await self._adopt(state):
                    return None
                await self._on_busy_thread(state, exc, busy_deadline)
            except AMBIGUOUS_ERRORS as exc:
                state.create_in_flight = False
                ambiguous += 1
                log.warning("run.create_ambiguous", attempt=ambiguous, error=type(exc).__name__)
                if await self._adopt(state):
                    return None
                if ambiguous >= self.policy.create_attempts:
                    raise
            except RuntimeAPIError:
                state.create_in_flight = False  # a definite refusal: no run was created
                raise

    def _run_body(self, state: _RunState, params: dict[str, Any]) -> dict[str, Any]:
        body = dict(params)
        metadata = dict(body.get("metadata") or {})
        metadata[IDEMPOTENCY_METADATA_KEY] = state.idempotency_key
        body["metadata"] = metadata
        if "tools" not in body and len(self.registry):
            body["tools"] = self.registry.definitions()
        return body

    async def _adopt(self, state: _RunState) -> bool:
        """Find the run we created earlier (by idempotency key) and make it ours."""
        run = await self._find_own_run(state.thread_id, state.idempotency_key)
        if run is None:
            return False
        log.info("run.adopted", run_id=run.id, status=run.status)
        self._track(state, run.id)
        return True

    async def _find_own_run(self, thread_id: str, key: str) -> Run | None:
        runs = await self.client.list_runs(thread_id, limit=20, order="desc").first_page()
        for run in runs:
            if (run.metadata or {}).get(IDEMPOTENCY_METADATA_KEY) == key:
                return run
        return None

    async def _on_busy_thread(
        self, state: _RunState, exc: ThreadBusyError, deadline: float
    ) -> None:
        action = self.policy.busy_thread
        other = exc.active_run_id
        log.info("run.thread_busy", action=action, active_run_id=other)
        if action == "fail" or other is None or time.monotonic() >= deadline:
            raise exc
        if action == "cancel":
            await self._request_cancel(state.thread_id, other)
        await self._wait_terminal(state.thread_id, other, deadline - time.monotonic())

    # --- drive ----------------------------------------------------------------------------

    async def _drive(self, state: _RunState, stream: RunStream | None) -> RunResult:
        """Follow streams and answer required actions until the run is terminal."""
        while True:
            run = await self._follow(state, stream)
            if run.is_terminal:
                return await self._finish(state, run)
            if state.cancel_requested.is_set():
                run = await self._wait_terminal(state.thread_id, run.id, self.policy.cancel_wait_s)
                return await self._finish(state, run)
            stream = await self._act(state, run) if run.status == "requires_action" else None

    async def _follow(self, state: _RunState, stream: RunStream | None) -> Run:
        """Consume ``stream`` (or poll when there is none) until the run stops."""
        if stream is None:
            return await self._poll(state)
        try:
            await stream.until_done()
        except (StreamError, ConnectError, RequestTimeout) as exc:
            state.recoveries += 1
            state.stream_lost = True
            log.warning(
                "run.stream_lost",
                run_id=stream.run_id or state.run_id,
                error=type(exc).__name__,
                detail=exc.message,
            )
        finally:
            self._collect(state, stream)
        run = stream.run
        if run is not None and stream.stopped and run.status in _event_status(stream):
            return run
        if stream.errors:
            log.warning("run.stream_error_event", run_id=state.run_id, code=stream.errors[-1].code)
        return await self._poll(state)

    def _collect(self, state: _RunState, stream: RunStream) -> None:
        """Keep what the stream produced: run id, messages and their text."""
        if stream.run is not None and state.run_id is None:
            self._track(state, stream.run.id)
        for snapshot in stream.messages.values():
            if snapshot.message is not None:
                state.messages[snapshot.id] = snapshot.message
            state.texts[snapshot.id] = snapshot.text

    def _track(self, state: _RunState, run_id: str) -> None:
        state.run_id = run_id
        state.dispatcher.run_id = run_id
        self._active[run_id] = state
        structlog.contextvars.bind_contextvars(run_id=run_id)

    async def _poll(self, state: _RunState) -> Run:
        """Retrieve the run until it requires action or is terminal (backoff, poll hint)."""
        if state.run_id is None and not await self._adopt(state):
            raise StreamError(
                "the run's stream broke before the run id was known, and no "
                "run with our idempotency key exists"
            )
        assert state.run_id is not None
        return await self._poll_until(
            state.thread_id,
            state.run_id,
            lambda run: run.is_terminal or run.status == "requires_action",
            interval=self.policy.poll_interval_s,
        )

    async def _wait_terminal(self, thread_id: str, run_id: str, timeout_s: float) -> Run:
        """Poll a run until it is terminal, at most ``timeout_s`` (then return it as is)."""
        interval = min(self.policy.poll_interval_s, 0.25)
        return await self._poll_until(
            thread_id, run_id, lambda run: run.is_terminal, interval=interval, timeout_s=timeout_s
        )

    async def _poll_until(
        self,
        thread_id: str,
        run_id: str,
        done: Callable[[Run], bool],
        *,
        interval: float,
        timeout_s: float | None = None,
    ) -> Run:
        """Retrieve the run until ``done(run)`` or the timeout; backoff, honouring the server's
        ``openai-poll-after-ms`` hint."""
        deadline = None if timeout_s is None else time.monotonic() + max(timeout_s, 0.0)
        while True:
            run = await self.client.retrieve_run(thread_id, run_id)
            if done(run) or (deadline is not None and time.monotonic() >= deadline):
                return run
            wait = self._poll_wait(run, interval)
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.01))
            await asyncio.sleep(wait)
            interval = min(interval * 1.5, self.policy.max_poll_interval_s)

    def _poll_wait(self, run: Run, interval: float) -> float:
        meta = run.response_meta
        if meta is not None and meta.poll_after_ms is not None:
            return max(meta.poll_after_ms / 1000.0, 0.01)
        return interval

    # --- act ------------------------------------------------------------------------------

    async def _act(self, state: _RunState, run: Run) -> RunStream | None:
        """Execute the required tool calls and submit all outputs; None means poll next."""
        state.rounds += 1
        calls = [
            ToolCall(c.id, c.function.name, c.function.arguments) for c in run.required_tool_calls
        ]
        state.calls_seen += len({c.id for c in calls} - set(state.results))
        bound = self._exceeded_bound(state)
        if bound is not None:
            state.reason = bound
            log.warning("run.bound_exceeded", run_id=run.id, reason=bound)
            await self._request_cancel(state.thread_id, run.id)
            return None
        results = await self._execute(state, run, calls)
        if results is None:
            return None
        return await self._submit(state, run, results)

    def _exceeded_bound(self, state: _RunState) -> str | None:
        if state.rounds > self.policy.max_tool_rounds:
            return f"max_tool_rounds ({self.policy.max_tool_rounds}) exceeded"
        if state.calls_seen > self.policy.max_tool_calls:
            return f"max_tool_calls ({self.policy.max_tool_calls}) exceeded"
        return None

    async def _execute(
        self, state: _RunState, run: Run, calls: list[ToolCall]
    ) -> list[ToolCallResult] | None:
        """Run the batch under the expiry deadline; None when a cancel request interrupted it."""
        callbacks = _HandlerCallbacks(state.handler)
        batch = asyncio.ensure_future(
            state.dispatcher.run_batch(
                calls,
                deadline=self._tool_deadline(run),
                on_start=callbacks.started if state.handler else None,
                on_finish=callbacks.finished if state.handler else None,
            )
        )
        cancel_wait = asyncio.ensure_future(state.cancel_requested.wait())
        try:
            await asyncio.wait({batch, cancel_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (batch, cancel_wait):
                if not task.done():
                    task.cancel()
            await asyncio.gather(batch, cancel_wait, return_exceptions=True)
        if batch.cancelled() and state.cancel_requested.is_set():
            return None
        results = batch.result()  # re-raises the batch's own failure
        callbacks.raise_if_failed()
        for result in results:
            state.results[result.tool_call_id] = result
        return results

    def _tool_deadline(self, run: Run) -> float | None:
        """``expires_at - margin`` on the server's clock, as a local monotonic time."""
        if run.expires_at is None:
            return None
        remaining = run.expires_at - self.policy.expiry_margin_s - self.client.server_now()
        return time.monotonic() + max(remaining, 0.0)

    async def _submit(
        self, state: _RunState, run: Run, results: list[ToolCallResult]
    ) -> RunStream | None:
        """Submit all outputs in one request; after an ambiguous failure, never twice."""
        outputs = [{"tool_call_id": r.tool_call_id, "output": r.output} for r in results]
        required = {r.tool_call_id for r in results}
        for attempt in range(1, self.policy.submit_attempts + 1):
            try:
                return await self.client.submit_tool_outputs(
                    state.thread_id, run.id, outputs, stream=True, handler=state.handler
                )
            except BadRequestError as exc:
                log.warning("run.submit_rejected", run_id=run.id, error=exc.message)
                return None
            except AMBIGUOUS_ERRORS as exc:
                log.warning(
                    "run.submit_ambiguous", run_id=run.id, attempt=attempt, error=type(exc).__name__
                )
                current = await self.client.retrieve_run(state.thread_id, run.id)
                if not _still_requires(current, required):
                    return None
                if attempt == self.policy.submit_attempts:
                    raise
        return None

    # --- cancel and finish ----------------------------------------------------------------

    async def _request_cancel(self, thread_id: str, run_id: str) -> Run | None:
        try:
            return await self.client.cancel_run(thread_id, run_id)
        except (BadRequestError, NotFoundError) as exc:
            log.info("run.cancel_refused", run_id=run_id, error=exc.message)
            return None

    async def _cancel_server_run(self, state: _RunState) -> None:
        """Best effort: cancel the server run of ``state`` and wait (bounded) for it."""
        try:
            if state.run_id is None and not await self._adopt(state):
                if state.create_in_flight:
                    self._spawn(self._cancel_late_run(state.thread_id, state.idempotency_key))
                return
            assert state.run_id is not None
            await self._request_cancel(state.thread_id, state.run_id)
            run = await self._wait_terminal(
                state.thread_id, state.run_id, self.policy.cancel_wait_s
            )
            log.info("run.cancelled_on_server", run_id=run.id, status=run.status)
        except RuntimeAPIError as exc:
            log.warning("run.cancel_failed", run_id=state.run_id, error=repr(exc))

    async def _cancel_late_run(self, thread_id: str, key: str) -> None:
        """A create request was cut off mid-flight: the server may create the run a moment
        later. Watch for it (up to cancel_wait_s, in the background) and cancel it."""
        deadline = time.monotonic() + self.policy.cancel_wait_s
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(min(self.policy.poll_interval_s, 0.25))
                run = await self._find_own_run(thread_id, key)
                if run is not None:
                    if not run.is_terminal:
                        await self._request_cancel(thread_id, run.id)
                    log.info("run.late_run_cancelled", run_id=run.id, status=run.status)
                    return
        except RuntimeAPIError as exc:
            log.warning("run.cancel_failed", error=repr(exc))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Start a clean-up task the orchestrator holds until it ends (see :meth:`aclose`)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _finish(self, state: _RunState, run: Run) -> RunResult:
        if state.stream_lost or not state.texts:
            await self._load_messages(state, run)
        ordered = sorted(state.messages.values(), key=lambda m: m.created_at or 0)
        text_ids = [m.id for m in ordered] + [i for i in state.texts if i not in state.messages]
        text = "\n\n".join(t for t in (state.texts.get(i, "") for i in text_ids) if t)
        log.info(
            "run.finished",
            run_id=run.id,
            status=run.status,
            rounds=state.rounds,
            tool_calls=len(state.results),
            recoveries=state.recoveries,
        )
        return RunResult(
            status=run.status,
            run=run,
            text=text,
            messages=ordered,
            tool_calls=list(state.results.values()),
            usage=run.usage,
            rounds=state.rounds,
            reason=state.reason,
            thread_id=state.thread_id,
            run_id=run.id,
            recoveries=state.recoveries,
        )

    async def _load_messages(self, state: _RunState, run: Run) -> None:
        """Read the run's messages from the server (after a lost stream)."""
        try:
            pager = self.client.list_messages(state.thread_id, run_id=run.id, order="asc")
            async for message in pager:
                if message.role == "assistant":
                    state.messages[message.id] = message
                    state.texts[message.id] = message.text
        except APIStatusError as exc:
            log.warning("run.messages_unavailable", run_id=run.id, error=exc.message)


class _HandlerCallbacks:
    """Adapts EventHandler tool callbacks for the dispatcher, keeping their first failure.

    The dispatcher only logs a failing callback (a tool must not fail because a UI did);
    the orchestrator re-raises it as HandlerError once the batch is over.
    """

    def __init__(self, handler: EventHandler | None) -> None:
        self._handler = handler
        self._error: tuple[str, Exception] | None = None

    async def started(self, call: ToolCall) -> None:
        await self._call("on_tool_call_started", call)

    async def finished(self, result: ToolCallResult) -> None:
        await self._call("on_tool_call_finished", result)

    async def _call(self, name: str, arg: Any) -> None:
        try:
            await getattr(self._handler, name)(arg)
        except Exception as exc:
            if self._error is None:
                self._error = (name, exc)
            raise

    def raise_if_failed(self) -> None:
        if self._error is not None:
            name, exc = self._error
            raise HandlerError(f"EventHandler.{name} raised {exc!r}", callback=name) from exc


def _event_status(stream: RunStream) -> tuple[str, ...]:
    """The statuses consistent with the stream's last run event."""
    name = stream.last_run_event or ""
    return (name.rsplit(".", 1)[-1],)


def _still_requires(run: Run, required: set[str]) -> bool:
    if run.status != "requires_action":
        return False
    return {c.id for c in run.required_tool_calls} == required
