"""Tracing seam: spans as the runtime uses them, with no tracing library imported.

Off by default, and then free: :func:`get_tracer` answers None and every caller does
nothing beyond that check. :func:`runtime.otel.instrument` (the ``[otel]`` extra) or
:func:`set_tracer` with any :class:`Tracer` turns tracing on for every run started
afterwards. What the run loop records (span tree, attributes, events) is described in
:mod:`runtime.core.tracing`.

While one of our spans is current (:func:`activate`), structlog events carry its
``trace_id`` and ``span_id``: they are bound with :mod:`structlog.contextvars`, which
:func:`runtime.logging.configure_logging` (and structlog's default configuration) merge
into every event, so logs and traces agree.

A trace crosses processes as W3C trace context (``traceparent``, ``tracestate``):
:func:`inject` gives the headers of the current span (the worker stores them with a job
at submit) and :class:`continued` makes them the parent of the spans started inside it
(the worker's executor, around the job's run).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog

if TYPE_CHECKING:
    from runtime.core.backend import Usage

__all__ = [
    "AttributeValue",
    "Attributes",
    "Span",
    "SpanKind",
    "Tracer",
    "activate",
    "add_event",
    "continued",
    "current_span",
    "deactivate",
    "get_tracer",
    "inject",
    "set_tracer",
    "span",
]

AttributeValue = str | bool | int | float | Sequence[str]
Attributes = Mapping[str, AttributeValue]
SpanKind = Literal["internal", "client", "producer"]


class Span(Protocol):
    """One span of a tracing library, as the loop uses it."""

    @property
    def trace_id(self) -> str:
        """The trace id, 32 lower-case hex digits."""
        ...

    @property
    def span_id(self) -> str:
        """The span id, 16 lower-case hex digits."""
        ...

    def set_attributes(self, attributes: Attributes) -> None:
        """Add or replace attributes."""
        ...

    def add_event(self, name: str, attributes: Attributes | None = None) -> None:
        """Record a point in time of the span."""
        ...

    def set_error(self, error_type: str, description: str | None = None) -> None:
        """Mark the span failed (error status, ``error.type``)."""
        ...

    def end(self) -> None:
        """End the span (idempotent)."""
        ...


class Tracer(Protocol):
    """A tracing library behind the seam (see :class:`runtime.otel.OtelTracer`).

    Attributes:
        record_payloads: put inputs, outputs and tool arguments on spans (redacted).
    """

    record_payloads: bool

    def start_span(self, name: str, *, kind: SpanKind, attributes: Attributes) -> Span:
        """Start a span, a child of the current one (or of a continued remote trace)."""
        ...

    def attach(self, span: Span) -> object:
        """Make ``span`` current in the library's own context; answer a token for detach."""
        ...

    def detach(self, token: object) -> None:
        """Undo one :meth:`attach`."""
        ...

    def inject(self) -> dict[str, str]:
        """The current trace context as W3C headers (``traceparent``, ``tracestate``); empty
        when no span is current."""
        ...

    def attach_remote(self, carrier: Mapping[str, str]) -> object:
        """Make the trace context of ``carrier`` (W3C headers) current; a token for detach."""
        ...

    def record_request(
        self, duration_s: float, usage: Usage | None, attributes: Attributes
    ) -> None:
        """Metrics of one model request: its duration and tokens (bounded attributes)."""
        ...


_tracer: Tracer | None = None
_current: ContextVar[Span | None] = ContextVar("runtime_current_span", default=None)


def set_tracer(tracer: Tracer | None) -> None:
    """Trace every run started from now on with ``tracer`` (None: tracing off)."""
    global _tracer
    _tracer = tracer


def get_tracer() -> Tracer | None:
    """The tracer runs use, or None when tracing is off."""
    return _tracer


def current_span() -> Span | None:
    """The innermost span of ours current in this context (None when tracing is off)."""
    return _current.get()


def add_event(name: str, attributes: Attributes | None = None) -> None:
    """Record ``name`` on the current span, if any (e.g. the HTTP client's retries)."""
    span = _current.get()
    if span is not None:
        span.add_event(name, attributes)


def inject() -> dict[str, str]:
    """W3C trace context headers of the current span, to continue the trace elsewhere (a
    worker job); empty when tracing is off."""
    tracer = _tracer
    return tracer.inject() if tracer is not None else {}


@dataclass
class _Active:
    tracer: Tracer
    library: object
    current: Token[Span | None]
    logs: Mapping[str, Token[Any]]


def activate(tracer: Tracer, span: Span) -> _Active:
    """Make ``span`` current: in the library, for :func:`current_span`, and in the log
    context (``trace_id`` / ``span_id``)."""
    return _Active(
        tracer,
        tracer.attach(span),
        _current.set(span),
        structlog.contextvars.bind_contextvars(trace_id=span.trace_id, span_id=span.span_id),
    )


def deactivate(active: _Active | None) -> None:
    """Undo :func:`activate` (a no-op from another context, where the tokens mean nothing)."""
    if active is None:
        return
    try:
        structlog.contextvars.reset_contextvars(**active.logs)
        _current.reset(active.current)
    except ValueError:  # created in another context (a task that outlived its parent)
        pass
    active.tracer.detach(active.library)


class continued:
    """Context manager: spans started inside continue the trace of ``carrier`` (the W3C
    headers :func:`inject` gave another process), and log lines inside carry its
    ``trace_id`` (and the remote parent's ``span_id``) until a span of ours is current; a
    no-op when tracing is off or the carrier is empty."""

    def __init__(self, carrier: Mapping[str, str] | None) -> None:
        self._carrier = carrier
        self._token: object | None = None
        self._tracer: Tracer | None = None
        self._logs: Mapping[str, Token[Any]] = {}

    def __enter__(self) -> None:
        tracer = _tracer
        if tracer is not None and self._carrier:
            self._tracer = tracer
            self._token = tracer.attach_remote(self._carrier)
            ids = _TRACEPARENT.fullmatch(self._carrier.get("traceparent", ""))
            if ids is not None:
                self._logs = structlog.contextvars.bind_contextvars(
                    trace_id=ids["trace"], span_id=ids["span"]
                )

    def __exit__(self, *exc_info: object) -> None:
        if self._tracer is not None:
            if self._logs:
                with suppress(ValueError):  # entered in another context
                    structlog.contextvars.reset_contextvars(**self._logs)
            self._tracer.detach(self._token)


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}")


@contextmanager
def span(
    name: str, *, kind: SpanKind = "internal", attributes: Attributes | None = None
) -> Iterator[Span | None]:
    """A span of ours around a block (e.g. submitting a job), current inside it; yields
    None when tracing is off. An exception marks it failed and goes on."""
    tracer = _tracer
    if tracer is None:
        yield None
        return
    opened = tracer.start_span(name, kind=kind, attributes=attributes or {})
    active = activate(tracer, opened)
    try:
        yield opened
    except BaseException as exc:
        opened.set_error(type(exc).__name__)
        raise
    finally:
        deactivate(active)
        opened.end()
