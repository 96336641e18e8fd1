"""Tracing seam: what the run loop tells a tracer, in the words of the OpenTelemetry GenAI
semantic conventions, with no tracing library imported.

Off by default, and then free: the loop holds ``None`` instead of a :class:`RunTrace` and
does nothing beyond that check. :func:`runtime.otel.instrument` (the ``[otel]`` extra) or
:func:`set_tracer` with any :class:`Tracer` turns it on for every run started afterwards.

The tree of one run::

    invoke_agent {assistant id or model}      the run (Runner.run / resume), INTERNAL
    ├── chat {model}                          a request that creates or continues a turn
    │                                         (create, submit), CLIENT; lasts until the turn
    │                                         stops (requires tools, or ends)
    ├── execute_tool {tool name}              each tool call, INTERNAL
    └── chat {model}                          the submit of the round's outputs, ...

Attributes (``gen_ai.*`` are the conventions', ``runtime.*`` ours):

* every span: ``gen_ai.operation.name`` (``invoke_agent``, ``chat``, ``execute_tool``),
  ``gen_ai.system`` and ``gen_ai.provider.name`` (``openai``; ``az.ai.openai`` for an Azure
  client), ``runtime.protocol``; run and requests: ``server.address``, ``server.port``;
* run: ``gen_ai.agent.id`` (Assistants), ``gen_ai.request.model``,
  ``gen_ai.conversation.id``, ``gen_ai.response.id`` (the last turn), total
  ``gen_ai.usage.input_tokens`` / ``output_tokens``, ``runtime.run.status``,
  ``runtime.run.rounds``, ``runtime.run.recoveries``, ``runtime.run.requests``,
  ``runtime.run.stopped_by``;
* request: ``runtime.request.kind`` (``create``, ``submit``), ``gen_ai.request.model``,
  ``gen_ai.response.id``, ``gen_ai.response.model``, ``gen_ai.response.finish_reasons``
  (``tool_calls``, ``stop``, ``length``, ``content_filter``, ``error``, ``cancelled``,
  ``expired``, ``incomplete``), ``gen_ai.usage.input_tokens`` / ``output_tokens`` of that
  request (on Assistants a run's usage is cumulative: the difference is recorded);
* tool: ``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ``gen_ai.tool.type``
  (``function``), ``error.type`` (the dispatcher's error type) when the call failed;
* ``error.type`` and an error status on any span that failed: the exception's class name,
  or the server's error code of a failed turn.

Events: ``runtime.retry`` (the HTTP client retries a request: ``attempt``, ``wait_s``,
``error.type``: the status or the exception's class), ``runtime.stream_lost`` (a stream
broke: ``error.type``) then ``runtime.stream_resumed`` (re-opened after sequence
``after``) or nothing more (recovered by polling), ``runtime.rate_paced`` (the request
waited ``waited_s`` for its rate-limit bucket, :mod:`runtime.pacing`), ``runtime.adopted``
(a turn found again by its idempotency key), ``runtime.rerun`` (a failed turn sent again),
``runtime.resumed`` (a run adopted by ``Runner.resume``), ``runtime.output_retry``,
``runtime.usage_limit_reached``. A request sent again before its turn stopped ends its
span with ``error.type = superseded``.

The span of a tool call is current in the tool's task (and thread, for a sync tool): spans
a tool opens with OpenTelemetry nest under its ``execute_tool``.

Payloads (``record_payloads``, off by default: they hold personal data): the run's input
and instructions (``gen_ai.input.messages``, ``gen_ai.system_instructions``), each turn's
text (``gen_ai.output.messages``), tool arguments and outputs
(``gen_ai.tool.call.arguments``, ``gen_ai.tool.call.result``). Every payload goes through
:func:`runtime.logging.redact` first: secrets never reach a span.

Logs and traces agree: while a span is current, every structlog event carries its
``trace_id`` and ``span_id`` (bound with :mod:`structlog.contextvars`, which
:func:`runtime.logging.configure_logging` and structlog's default configuration merge).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from runtime.logging import redact
from runtime.tracing import AttributeValue, Span, Tracer, activate, deactivate, get_tracer
from runtime.tracing import _Active as Active

if TYPE_CHECKING:
    from runtime.core.backend import Backend, StartRequest, Turn, Usage
    from runtime.core.result import RunResult
    from tools import ToolCall, ToolCallResult, ToolRegistry

SYSTEM = "openai"
SYSTEM_AZURE = "az.ai.openai"
_MAX_NAME = 128  # a tool name the model made up goes into no span name, and is cut here
_FINISH_REASONS = {
    "requires_tools": "tool_calls",
    "completed": "stop",
    "failed": "error",
    "cancelled": "cancelled",
    "expired": "expired",
}
_INCOMPLETE = {
    "max_output_tokens": "length",
    "max_completion_tokens": "length",
    "max_prompt_tokens": "length",
    "content_filter": "content_filter",
}


# --- the run ------------------------------------------------------------------------------


@dataclass
class _Request:
    span: Span
    active: Active
    started: float
    kind: str
    model: str | None
    prior: Usage | None  # the turn's cumulative usage before this request (Assistants)
    prior_id: str | None


class RunTrace:
    """The spans of one run; the runner calls it at each step (only when tracing is on)."""

    def __init__(self, tracer: Tracer, backend: Backend[Any], request: StartRequest) -> None:
        self.tracer = tracer
        protocol = self.protocol = backend.name
        self.base: dict[str, AttributeValue] = {**_origin(backend), "runtime.protocol": protocol}
        attributes: dict[str, AttributeValue] = {
            **self.base,
            "gen_ai.operation.name": "invoke_agent",
        }
        if request.agent:
            attributes["gen_ai.agent.id"] = request.agent
        if request.model:
            attributes["gen_ai.request.model"] = request.model
        if request.conversation:
            attributes["gen_ai.conversation.id"] = request.conversation
        if tracer.record_payloads:
            attributes.update(_input_payload(request))
        name = f"invoke_agent {request.agent or request.model or protocol}"
        self.span = tracer.start_span(name, kind="internal", attributes=attributes)
        self._active: Active | None = activate(tracer, self.span)
        self._request: _Request | None = None

    # --- events ---------------------------------------------------------------------------

    def event(self, name: str, **attributes: AttributeValue | None) -> None:
        """An event on the open request's span, or on the run's."""
        span = self._request.span if self._request is not None else self.span
        span.add_event(name, {k: v for k, v in attributes.items() if v is not None})

    def conversation(self, conversation: str) -> None:
        """The conversation (thread) became known."""
        self.span.set_attributes({"gen_ai.conversation.id": conversation})

    # --- model requests -------------------------------------------------------------------

    def request_started(
        self, kind: str, request: StartRequest, prior: Usage | None, prior_id: str | None
    ) -> None:
        """A request that creates (``create``) or continues (``submit``) a turn is sent."""
        self._close_request(None, None, superseded=True)
        attributes: dict[str, AttributeValue] = {
            **self.base,
            "gen_ai.operation.name": "chat",
            "runtime.request.kind": kind,
        }
        if request.model:
            attributes["gen_ai.request.model"] = request.model
        if request.conversation:
            attributes["gen_ai.conversation.id"] = request.conversation
        name = f"chat {request.model}" if request.model else "chat"
        span = self.tracer.start_span(name, kind="client", attributes=attributes)
        self._request = _Request(
            span,
            activate(self.tracer, span),
            time.monotonic(),
            kind,
            request.model,
            prior,
            prior_id,
        )

    def request_failed(self, exc: BaseException) -> None:
        """The open request raised (after the client's retries)."""
        self._close_request(None, exc)

    def turn_stopped(self, turn: Turn[Any]) -> None:
        """The turn of the open request requires tools or ended: the request is over."""
        self._close_request(turn, None)

    def _close_request(
        self, turn: Turn[Any] | None, exc: BaseException | None, *, superseded: bool = False
    ) -> None:
        request = self._request
        if request is None:
            return
        self._request = None
        span = request.span
        usage: Usage | None = None
        error_type: str | None = None
        if turn is not None:
            usage = _usage_delta(turn, request.prior, request.prior_id)
            span.set_attributes(self._turn_attributes(turn, usage))
            if turn.status == "failed":
                error_type = (turn.error.code if turn.error else None) or "failed"
                span.set_error(error_type, turn.error.message if turn.error else None)
        elif exc is not None:
            error_type = _error_type(exc)
            span.set_error(error_type, redact(str(exc))[:500] or None)
        elif superseded:
            error_type = "superseded"  # sent again before its turn stopped
            span.set_error(error_type)
        metrics: dict[str, AttributeValue] = {
            **self.base,
            "gen_ai.operation.name": "chat",
            "runtime.request.kind": request.kind,
        }
        if request.model:
            metrics["gen_ai.request.model"] = request.model
        if error_type is not None:
            metrics["error.type"] = _bounded_error(error_type)
        self.tracer.record_request(time.monotonic() - request.started, usage, metrics)
        deactivate(request.active)
        span.end()

    def _turn_attributes(self, turn: Turn[Any], usage: Usage | None) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {
            "gen_ai.response.id": turn.ref.id,
            "gen_ai.response.finish_reasons": (_finish_reason(turn),),
        }
        if turn.model:
            attributes["gen_ai.response.model"] = turn.model
        if turn.ref.conversation:
            attributes["gen_ai.conversation.id"] = turn.ref.conversation
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        if self.tracer.record_payloads and turn.texts:
            attributes["gen_ai.output.messages"] = _output_payload(turn)
        return attributes

    # --- the end --------------------------------------------------------------------------

    def finished(self, result: RunResult[Any, Any]) -> None:
        """The run ended with ``result`` (any status)."""
        self._close_request(None, None)
        attributes: dict[str, AttributeValue] = {
            "runtime.run.status": result.status,
            "runtime.run.rounds": result.rounds,
            "runtime.run.recoveries": result.recoveries,
            "runtime.run.requests": result.requests,
        }
        if result.run_id:
            attributes["gen_ai.response.id"] = result.run_id
        if result.conversation_id:
            attributes["gen_ai.conversation.id"] = result.conversation_id
        if result.stopped_by:
            attributes["runtime.run.stopped_by"] = result.stopped_by
        if result.usage is not None:
            attributes["gen_ai.usage.input_tokens"] = result.usage.input_tokens
            attributes["gen_ai.usage.output_tokens"] = result.usage.output_tokens
        self.span.set_attributes(attributes)
        if result.status in ("failed", "expired"):
            code = result.error.code if result.error is not None else None
            self.span.set_error(code or result.status, result.reason)
        self._end()

    def failed(self, exc: BaseException) -> None:
        """The run raised ``exc`` (cancelled, a handler failed, an API error, ...)."""
        self._close_request(None, exc)
        self.span.set_error(_error_type(exc), redact(str(exc))[:500] or None)
        self._end()

    def _end(self) -> None:
        deactivate(self._active)
        self._active = None
        self.span.end()


def start_run(backend: Backend[Any], request: StartRequest) -> RunTrace | None:
    """A :class:`RunTrace` for a new run of ``backend``, or None when tracing is off."""
    tracer = get_tracer()
    return RunTrace(tracer, backend, request) if tracer is not None else None


def _origin(backend: Backend[Any]) -> dict[str, AttributeValue]:
    """``gen_ai.system`` (Azure's own name on Azure) and ``server.*`` of the backend's
    client, when it has one."""
    client = getattr(backend, "client", None)
    system = SYSTEM_AZURE if getattr(client, "is_azure", False) else SYSTEM
    origin: dict[str, AttributeValue] = {"gen_ai.system": system, "gen_ai.provider.name": system}
    base_url = getattr(client, "base_url", None)
    if isinstance(base_url, str):
        parts = urlsplit(base_url)
        if parts.hostname:
            origin["server.address"] = parts.hostname
            origin["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    return origin


# --- tools --------------------------------------------------------------------------------


class _ToolSpan:
    def __init__(self, tracer: Tracer, span: Span) -> None:
        self._tracer = tracer
        self._span = span
        self._active = activate(tracer, span)

    def finish(self, result: ToolCallResult | None) -> None:
        span = self._span
        if result is None:
            span.set_error("cancelled")
        else:
            if self._tracer.record_payloads:
                span.set_attributes({"gen_ai.tool.call.result": redact(result.output)})
            if result.is_error:
                span.set_error(result.error_type or "tool_error")
        deactivate(self._active)
        span.end()


class ToolTracer:
    """Opens an ``execute_tool`` span per call (``tools.ToolDispatcher``'s ``tracer``)."""

    def __init__(self, run: RunTrace, registry: ToolRegistry) -> None:
        self._tracer = run.tracer
        self._registry = registry
        self._base = {k: v for k, v in run.base.items() if not k.startswith("server.")}

    def __call__(self, call: ToolCall) -> _ToolSpan:
        known = self._registry.get(call.name) is not None
        attributes: dict[str, AttributeValue] = {
            **self._base,
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name[:_MAX_NAME],
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": "function",
        }
        if self._tracer.record_payloads:
            attributes["gen_ai.tool.call.arguments"] = redact(call.arguments)
        # A name the model invented is no span name: span names must stay a small set.
        name = f"execute_tool {call.name}" if known else "execute_tool"
        return _ToolSpan(
            self._tracer, self._tracer.start_span(name, kind="internal", attributes=attributes)
        )


# --- helpers ------------------------------------------------------------------------------


def _finish_reason(turn: Turn[Any]) -> str:
    if turn.status == "incomplete":
        return _INCOMPLETE.get(turn.incomplete_reason or "", "incomplete")
    return _FINISH_REASONS.get(turn.status, turn.status)


def _usage_delta(turn: Turn[Any], prior: Usage | None, prior_id: str | None) -> Usage | None:
    usage = turn.usage
    if usage is None or prior is None or prior_id != turn.ref.id:
        return usage
    from runtime.core.backend import Usage

    return Usage(
        input_tokens=max(usage.input_tokens - prior.input_tokens, 0),
        output_tokens=max(usage.output_tokens - prior.output_tokens, 0),
        total_tokens=max(usage.total_tokens - prior.total_tokens, 0),
    )


_KNOWN_ERRORS = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "failed",
        "superseded",
        "cancelled",
        "CancelledError",
        "TimeoutError",
        "StreamError",
        "StreamInterrupted",
        "ConnectError",
        "RequestTimeout",
        "RateLimitError",
        "ServerError",
        "BadRequestError",
        "NotFoundError",
        "AuthenticationError",
        "PermissionDeniedError",
        "ThreadBusyError",
        "HandlerError",
        "InvalidResponseError",
        "APIStatusError",
    }
)


def _bounded_error(error_type: str) -> str:
    """``error.type`` for a metric label: a known value or ``_OTHER``."""
    return error_type if error_type in _KNOWN_ERRORS else "_OTHER"


def _error_type(exc: BaseException) -> str:
    return type(exc).__name__


def _input_payload(request: StartRequest) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    if isinstance(request.input, str):
        messages: list[Any] = [
            {"role": "user", "parts": [{"type": "text", "content": request.input}]}
        ]
    else:
        messages = [dict(item) for item in request.input]
    if messages:
        attributes["gen_ai.input.messages"] = redact(json.dumps(messages, default=str))
    if request.instructions:
        instructions = [{"type": "text", "content": request.instructions}]
        attributes["gen_ai.system_instructions"] = redact(json.dumps(instructions))
    return attributes


def _output_payload(turn: Turn[Any]) -> str:
    parts = [{"type": "text", "content": part.text} for part in turn.texts if part.text]
    message = {"role": "assistant", "parts": parts, "finish_reason": _finish_reason(turn)}
    return redact(json.dumps([message]))
