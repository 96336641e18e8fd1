"""The conversation loop over the Responses API, with the policies of the Assistants loop.

One :class:`ResponsesOrchestrator` serves many concurrent conversations. Each goes through
named steps:

* ``_respond``: create a streamed response and follow it to a terminal status. If the stream
  breaks after ``response.created``, the response is retrieved by id (polling while it is
  ``queued`` / ``in_progress``) and the loop continues from its state. If it breaks before the
  id is known, the request is sent again: a response is only addressable by its id (there is no
  list endpoint, no idempotency key), so that retry may duplicate a response the server had
  already started; it is bounded by ``RunPolicy.create_attempts``.
* ``_execute``: every ``function_call`` item of a completed response runs concurrently through
  :class:`tools.ToolDispatcher` (at most once per ``call_id``), under the total deadline;
* the outputs go back in one request as ``function_call_output`` items with
  ``previous_response_id``; this repeats until a response has no function calls;
* ``_finish``: build the :class:`~runtime.result.RunResult` (``incomplete`` with its reason and
  ``failed`` with its error are results, not exceptions).

Responses have no ``expires_at``: ``RunPolicy.total_deadline_s`` bounds the whole
conversation instead (status ``expired``). Cancelling the awaiting task cancels the tools,
closes the stream, cancels the response on the server (background responses; shielded,
bounded) and re-raises ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from runtime.errors import (
    BadRequestError,
    ConnectError,
    NotFoundError,
    RateLimitError,
    RequestTimeout,
    RuntimeAPIError,
    ServerError,
    StreamError,
)
from runtime.handler import EventHandler
from runtime.policy import RunPolicy
from runtime.responses.client import ResponsesClient
from runtime.responses.models import (
    ACTIVE_RESPONSE_STATUSES,
    FunctionCallItem,
    OutputMessage,
    Response,
    ResponseUsage,
)
from runtime.responses.stream import ResponseStream
from runtime.result import RunResult
from tools import ToolCall, ToolCallResult, ToolDispatcher, ToolRegistry

log = structlog.get_logger("runtime.responses")

AMBIGUOUS_ERRORS = (ServerError, ConnectError, RequestTimeout, RateLimitError)
STREAM_LOSS = (StreamError, ConnectError, RequestTimeout)
RERUN_CODES = frozenset({"server_error", "rate_limit_exceeded"})
DEFAULT_MODEL = "gpt-4o"
# Request fields that belong to one request only, never carried into follow-ups.
_PER_REQUEST = frozenset({"input", "previous_response_id", "stream"})


@dataclass
class _State:
    """Everything one conversation accumulates while the orchestrator drives it."""

    handler: EventHandler | None
    dispatcher: ToolDispatcher
    params: dict[str, Any]
    deadline: float | None
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    response: Response | None = None
    response_ids: list[str] = field(default_factory=list)
    rounds: int = 0
    calls_seen: int = 0
    recoveries: int = 0
    reason: str | None = None
    texts: list[str] = field(default_factory=list)
    messages: list[OutputMessage] = field(default_factory=list)
    results: dict[str, ToolCallResult] = field(default_factory=dict)
    usage: ResponseUsage | None = None
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def response_id(self) -> str | None:
        """The id of the latest response of the conversation."""
        return self.response_ids[-1] if self.response_ids else None


class ResponsesOrchestrator:
    """Drives Responses API conversations with local tools.

    Args:
        client: the Responses client (its retries handle transport failures).
        registry: the tools the model may call.
        policy: retry, deadline, cancellation and bounds (``expiry_margin_s`` and
            ``total_deadline_s`` replace the run expiry of Assistants).
        handler: default callbacks for every conversation (a call may pass its own).
    """

    def __init__(
        self,
        client: ResponsesClient,
        registry: ToolRegistry,
        policy: RunPolicy | None = None,
        handler: EventHandler | None = None,
    ) -> None:
        self.client = client
        self.registry = registry
        self.policy = policy or RunPolicy()
        self.handler = handler
        self._active: dict[str, _State] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # --- public API -----------------------------------------------------------------------

    async def run(
        self,
        input: str | Sequence[Any],
        *,
        model: str = DEFAULT_MODEL,
        instructions: str | None = None,
        handler: EventHandler | None = None,
        raise_on_failure: bool = False,
        **params: Any,
    ) -> RunResult:
        """Send ``input`` and drive the conversation until a response has no function calls.

        Args:
            input: a string or a list of input items.
            model: the model (or Azure deployment).
            instructions: system instructions, sent with every request of the conversation.
            handler: callbacks for this conversation (default: the orchestrator's).
            raise_on_failure: raise RunFailedError unless the final status is completed.
            **params: other request fields (previous_response_id, background, store,
                max_output_tokens, tool_choice, metadata, ...); ``tools`` defaults to the
                registry's definitions. A forcing ``tool_choice`` applies to the first
                request only.

        Returns:
            The RunResult: ``run`` is the final Response, ``run_id`` its id.
        """
        first = {"input": input if isinstance(input, str) else list(input)}
        if "previous_response_id" in params:
            first["previous_response_id"] = params.pop("previous_response_id")
        state = self._new_state(handler, {"model": model, "instructions": instructions, **params})
        result = await self._guarded(state, self._start_and_loop(state, first))
        return result.raise_for_status() if raise_on_failure else result

    async def resume(
        self,
        response_id: str,
        known_results: Iterable[ToolCallResult] = (),
        *,
        handler: EventHandler | None = None,
        raise_on_failure: bool = False,
        **params: Any,
    ) -> RunResult:
        """Adopt a response that already exists and drive the conversation on from it.

        Args:
            response_id: the response (it must be stored).
            known_results: tool outputs computed earlier (e.g. before a crash); they are sent
                if still needed, never re-executed.
            handler: callbacks for this conversation.
            raise_on_failure: raise RunFailedError unless the final status is completed.
            **params: request fields for follow-ups (default: model and instructions of the
                response, tools of the registry).
        """
        known = list(known_results)
        state = self._new_state(handler, params)
        state.dispatcher.seed_cache(known)
        state.results.update((k.tool_call_id, k) for k in known)
        result = await self._guarded(state, self._resume_and_loop(state, response_id))
        return result.raise_for_status() if raise_on_failure else result

    async def cancel(self, response_id: str) -> Response | None:
        """Cancel a conversation from elsewhere: its tools stop and its response is cancelled.

        Args:
            response_id: a response of the conversation (or any background response).

        Returns:
            The response as the cancel request answered it, or None when the server refused
            (not a background response, or already finished).
        """
        state = self._active.get(response_id)
        if state is not None:
            state.reason = state.reason or "cancelled by request"
            state.cancel_requested.set()
            response_id = state.response_id or response_id
        return await self._request_cancel(response_id)

    async def aclose(self) -> None:
        """Wait for background clean-ups (server-side cancels) to finish."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # --- lifecycle ------------------------------------------------------------------------

    def _new_state(self, handler: EventHandler | None, params: dict[str, Any]) -> _State:
        policy = self.policy
        dispatcher = ToolDispatcher(
            self.registry,
            max_concurrency=policy.max_tool_concurrency,
            default_timeout_s=policy.tool_timeout_s,
            max_output_chars=policy.max_output_chars,
            log_payloads=policy.log_tool_payloads,
        )
        total = policy.total_deadline_s
        return _State(
            handler=handler if handler is not None else self.handler,
            dispatcher=dispatcher,
            params={k: v for k, v in params.items() if v is not None},
            deadline=None if total is None else time.monotonic() + total,
        )

    async def _guarded(self, state: _State, body: Any) -> RunResult:
        """Run ``body`` under the total deadline; on cancellation or error, cancel, re-raise."""
        remaining = None if state.deadline is None else state.deadline - time.monotonic()
        timer = asyncio.timeout(remaining)
        try:
            async with timer:
                result: RunResult = await body
            return result
        except TimeoutError as exc:
            if timer.expired():
                return await self._expire(state)
            await self._abort(state, exc)
            raise
        except BaseException as exc:
            await self._abort(state, exc)
            raise
        finally:
            for response_id in state.response_ids:
                self._active.pop(response_id, None)
            structlog.contextvars.unbind_contextvars("response_id")
            await state.dispatcher.aclose()

    async def _abort(self, state: _State, exc: BaseException) -> None:
        """Cancel the server response after a local failure or cancellation (shielded)."""
        log.warning("responses.aborting", response_id=state.response_id, error=type(exc).__name__)
        task = asyncio.ensure_future(self._cancel_on_server(state))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        try:
            await asyncio.shield(task)
        except BaseException:  # cancelled again: the clean-up goes on in the background
            log.warning("responses.abort_detached", response_id=state.response_id)

    async def _expire(self, state: _State) -> RunResult:
        total = self.policy.total_deadline_s
        state.reason = f"total_deadline_s ({total:g}) exceeded"
        log.warning("responses.deadline_exceeded", response_id=state.response_id)
        try:
            async with asyncio.timeout(self.policy.cancel_wait_s):
                await asyncio.shield(self._cancel_on_server(state))
        except TimeoutError:
            log.warning("responses.cancel_timeout", response_id=state.response_id)
        return self._finish(state, state.response, status="expired")

    # --- the loop -------------------------------------------------------------------------

    async def _start_and_loop(self, state: _State, first: dict[str, Any]) -> RunResult:
        response = await self._respond(state, self._body(state, first, first_request=True))
        return await self._loop(state, response)

    async def _resume_and_loop(self, state: _State, response_id: str) -> RunResult:
        self._track(state, response_id)
        response = await self._poll(state, response_id)
        self._absorb(state, response)
        defaults: dict[str, Any] = {"model": response.model or DEFAULT_MODEL}
        if isinstance(response.instructions, str):
            defaults["instructions"] = response.instructions
        state.params = {**defaults, **state.params}
        return await self._loop(state, response)

    async def _loop(self, state: _State, response: Response) -> RunResult:
        """Answer function calls until a response has none (or a bound / cancel stops it)."""
        while True:
            if state.cancel_requested.is_set():
                return await self._finish_cancelled(state, response)
            calls = response.function_calls if response.status == "completed" else []
            if not calls:
                return self._finish(state, response)
            state.rounds += 1
            state.calls_seen += len({c.call_id for c in calls} - set(state.results))
            bound = self._exceeded_bound(state)
            if bound is not None:
                state.reason = bound
                log.warning("responses.bound_exceeded", response_id=response.id, reason=bound)
                return self._finish(state, response, status="cancelled")
            results = await self._execute(state, calls)
            if results is None:
                return await self._finish_cancelled(state, response)
            outputs = [
                {"type": "function_call_output", "call_id": r.tool_call_id, "output": r.output}
                for r in results
            ]
            body = self._body(state, {"input": outputs, "previous_response_id": response.id})
            response = await self._respond(state, body)

    def _body(
        self, state: _State, request: dict[str, Any], *, first_request: bool = False
    ) -> dict[str, Any]:
        body = {k: v for k, v in state.params.items() if k not in _PER_REQUEST}
        if not first_request and _forces_a_call(body.get("tool_choice")):
            # A forced call on every follow-up would never let the model answer.
            body.pop("tool_choice")
        if "tools" not in body and len(self.registry):
            body["tools"] = responses_tools(self.registry.definitions())
        body.setdefault("model", DEFAULT_MODEL)
        body.update(request)
        return body

    def _exceeded_bound(self, state: _State) -> str | None:
        if state.rounds > self.policy.max_tool_rounds:
            return f"max_tool_rounds ({self.policy.max_tool_rounds}) exceeded"
        if state.calls_seen > self.policy.max_tool_calls:
            return f"max_tool_calls ({self.policy.max_tool_calls}) exceeded"
        return None

    # --- respond: create, follow, recover -------------------------------------------------

    async def _respond(self, state: _State, body: dict[str, Any]) -> Response:
        """Create a response and follow it to a terminal status, recovering lost streams."""
        attempts = reruns = 0
        while True:
            attempts += 1
            try:
                stream = await self.client.create(stream=True, handler=state.handler, **body)
            except AMBIGUOUS_ERRORS as exc:
                log.warning(
                    "responses.create_ambiguous", attempt=attempts, error=type(exc).__name__
                )
                if attempts >= self.policy.create_attempts:
                    raise
                continue
            response = await self._follow(state, stream)
            if response is None:
                if attempts >= self.policy.create_attempts:
                    raise StreamError(
                        "the response stream broke before the response id was known, "
                        f"{attempts} times"
                    )
                continue
            if not self._should_rerun(response, reruns):
                return response
            reruns, attempts = reruns + 1, 0
            log.warning("responses.rerun", response_id=response.id, code=_error_code(response))

    def _should_rerun(self, response: Response, reruns: int) -> bool:
        if not self.policy.rerun_on_server_error or reruns >= self.policy.max_reruns:
            return False
        return response.status == "failed" and _error_code(response) in RERUN_CODES

    async def _follow(self, state: _State, stream: ResponseStream) -> Response | None:
        """Consume ``stream``; on loss, retrieve by id. None: lost before the id was known."""
        try:
            finished = await self._consume(state, stream)
        except STREAM_LOSS as exc:
            finished = False
            state.recoveries += 1
            log.warning(
                "responses.stream_lost",
                response_id=stream.response_id,
                error=type(exc).__name__,
                detail=exc.message,
            )
        if stream.response_id is not None:
            self._track(state, stream.response_id)
        if finished and stream.stopped and stream.response is not None:
            self._absorb(state, stream.response, stream)
            return stream.response
        if stream.response_id is None:
            if stream.errors:
                raise stream.errors[-1]
            return None
        if state.cancel_requested.is_set() and stream.response is not None:
            self._absorb(state, stream.response, stream)  # keep the partial text
            return stream.response
        response = await self._poll(state, stream.response_id)
        self._absorb(state, response)
        return response

    async def _consume(self, state: _State, stream: ResponseStream) -> bool:
        """Read the stream to its end; False when a cancel request interrupted it."""
        reader = asyncio.ensure_future(self._read(state, stream))
        waiter = asyncio.ensure_future(state.cancel_requested.wait())
        try:
            await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, waiter):
                if not task.done():
                    task.cancel()
            await asyncio.gather(reader, waiter, return_exceptions=True)
            await stream.aclose()
        if reader.cancelled():
            return False
        reader.result()  # re-raise what broke the stream
        return True

    async def _read(self, state: _State, stream: ResponseStream) -> None:
        async for _ in stream:
            # Known as soon as response.created arrives: cancel() and _abort() can reach it.
            if stream.response_id is not None and stream.response_id != state.response_id:
                self._track(state, stream.response_id)

    def _track(self, state: _State, response_id: str) -> None:
        if response_id not in state.response_ids:
            state.response_ids.append(response_id)
            self._active[response_id] = state
            state.dispatcher.run_id = response_id
        structlog.contextvars.bind_contextvars(response_id=response_id)

    def _absorb(
        self, state: _State, response: Response, stream: ResponseStream | None = None
    ) -> None:
        """Keep what a finished response produced: text, messages, usage."""
        self._track(state, response.id)
        state.response = response
        if stream is not None and stream.messages:
            texts = [m.text for m in stream.messages]
        else:
            texts = [m.text for m in response.messages]
        state.texts.append("\n\n".join(t for t in texts if t))
        state.messages.extend(response.messages)
        if response.usage is not None:
            state.usage = response.usage if state.usage is None else state.usage + response.usage

    async def _poll(self, state: _State, response_id: str) -> Response:
        """Retrieve the response until it is no longer queued / in progress."""
        interval = self.policy.poll_interval_s
        while True:
            try:
                response = await self.client.retrieve(response_id)
            except NotFoundError as exc:
                raise StreamError(
                    f"the stream of {response_id} broke and the response cannot be retrieved "
                    "(was it created with store=false?)"
                ) from exc
            if response.status not in ACTIVE_RESPONSE_STATUSES:
                return response
            if state.cancel_requested.is_set():
                return response
            await asyncio.sleep(_poll_wait(response, interval))
            interval = min(interval * 1.5, self.policy.max_poll_interval_s)

    # --- tools ----------------------------------------------------------------------------

    async def _execute(
        self, state: _State, items: list[FunctionCallItem]
    ) -> list[ToolCallResult] | None:
        """Run the batch concurrently; None when a cancel request interrupted it."""
        calls = [ToolCall(item.call_id, item.name, item.arguments) for item in items]
        handler = state.handler
        batch = asyncio.ensure_future(
            state.dispatcher.run_batch(
                calls,
                deadline=self._tool_deadline(state),
                on_start=handler.on_tool_call_started if handler else None,
                on_finish=handler.on_tool_call_finished if handler else None,
            )
        )
        waiter = asyncio.ensure_future(state.cancel_requested.wait())
        try:
            await asyncio.wait({batch, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (batch, waiter):
                if not task.done():
                    task.cancel()
            await asyncio.gather(batch, waiter, return_exceptions=True)
        if batch.cancelled() and state.cancel_requested.is_set():
            return None
        results = batch.result()
        state.results.update((r.tool_call_id, r) for r in results)
        return results

    def _tool_deadline(self, state: _State) -> float | None:
        """The total deadline minus a margin to send the outputs and read the answer.

        The margin is ``expiry_margin_s``, capped at half the total so short deadlines still
        leave the tools some time.
        """
        if state.deadline is None:
            return None
        total = self.policy.total_deadline_s or 0.0
        margin = min(self.policy.expiry_margin_s, 0.5 * total)
        return state.deadline - margin

    # --- cancel and finish ----------------------------------------------------------------

    async def _request_cancel(self, response_id: str) -> Response | None:
        try:
            return await self.client.cancel(response_id)
        except (BadRequestError, NotFoundError) as exc:
            log.info("responses.cancel_refused", response_id=response_id, error=exc.message)
            return None

    async def _cancel_on_server(self, state: _State) -> Response | None:
        """Best effort: cancel the latest response and wait (bounded) for it to settle."""
        response_id = state.response_id
        if response_id is None:
            return None
        try:
            answer = await self._request_cancel(response_id)
            if answer is None:
                return None
            response = await self._wait_settled(response_id, self.policy.cancel_wait_s)
            log.info(
                "responses.cancelled_on_server", response_id=response_id, status=response.status
            )
            return response
        except RuntimeAPIError as exc:
            log.warning("responses.cancel_failed", response_id=response_id, error=repr(exc))
            return None

    async def _wait_settled(self, response_id: str, timeout_s: float) -> Response:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        interval = min(self.policy.poll_interval_s, 0.25)
        while True:
            response = await self.client.retrieve(response_id)
            if response.is_terminal or time.monotonic() >= deadline:
                return response
            await asyncio.sleep(min(interval, max(deadline - time.monotonic(), 0.01)))
            interval = min(interval * 1.5, self.policy.max_poll_interval_s)

    async def _finish_cancelled(self, state: _State, response: Response) -> RunResult:
        if response.is_terminal and not response.function_calls:
            return self._finish(state, response)  # it ended before the cancel took effect
        settled = await self._cancel_on_server(state) if not response.is_terminal else None
        return self._finish(state, settled or response, status="cancelled")

    def _finish(
        self, state: _State, response: Response | None, *, status: str | None = None
    ) -> RunResult:
        final = status or (response.status if response is not None else None) or "failed"
        log.info(
            "responses.finished",
            response_id=response.id if response is not None else None,
            status=final,
            rounds=state.rounds,
            tool_calls=len(state.results),
            recoveries=state.recoveries,
        )
        return RunResult(
            status=final,
            run=response,
            text="\n\n".join(t for t in state.texts if t),
            messages=list(state.messages),
            tool_calls=list(state.results.values()),
            usage=state.usage,
            rounds=state.rounds,
            reason=state.reason,
            thread_id=None,
            run_id=response.id if response is not None else None,
            recoveries=state.recoveries,
        )


def responses_tools(definitions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistants/Chat tool definitions -> Responses ones (``function`` fields flattened)."""
    out = []
    for tool in definitions:
        function = tool.get("function")
        if tool.get("type") == "function" and isinstance(function, dict):
            out.append({"type": "function", **function})
        else:
            out.append(dict(tool))
    return out


def _forces_a_call(choice: Any) -> bool:
    return choice == "required" or (isinstance(choice, dict) and choice.get("type") == "function")


def _error_code(response: Response) -> str | None:
    return response.error.code if response.error is not None else None


def _poll_wait(response: Response, interval: float) -> float:
    meta = response.response_meta
    if meta is not None and meta.poll_after_ms is not None:
        return max(meta.poll_after_ms / 1000.0, 0.01)
    return interval
