"""OpenTelemetry behind the tracing seam (the ``[otel]`` extra: ``opentelemetry-api``).

Only this module imports OpenTelemetry, and nothing imports it unless tracing is wanted::

    from runtime.otel import instrument

    instrument()  # the global tracer and meter providers; every run from now on is traced

Configure the SDK (exporters, sampling, resource) as for any OpenTelemetry application;
without an SDK the API's no-op providers make every span free. ``instrument`` takes
explicit providers too (tests use the SDK's in-memory exporter), and
``record_payloads=True`` puts inputs, outputs and tool arguments on spans (redacted; off by
default because they hold personal data). The ``[tracing]`` section of
``config/runtime.toml`` and ``config/worker.toml`` does the same for the CLI and the
worker (:func:`runtime.config.enable_tracing`).

What the spans hold: :mod:`runtime.core.tracing`. Metrics (OpenTelemetry GenAI
conventions, attributes ``gen_ai.operation.name``, ``gen_ai.system``,
``gen_ai.request.model`` (the configured model, never the server's answer),
``runtime.protocol``, ``runtime.request.kind``, ``error.type`` (a fixed set, else
``_OTHER``), and ``gen_ai.token.type``):

* ``gen_ai.client.operation.duration`` (histogram, seconds): each model request, from
  sending it until its turn stopped (requires tools or ended);
* ``gen_ai.client.token.usage`` (histogram, ``{token}``): input and output tokens of each
  model request.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.trace import SpanKind as OtelSpanKind
from opentelemetry.trace import Status, StatusCode

from runtime import tracing
from runtime.core.backend import Usage
from runtime.tracing import Attributes, SpanKind

__all__ = ["OtelTracer", "console_provider", "instrument", "uninstrument"]

_SCOPE = "agent-runtime"
_KINDS = {
    "internal": OtelSpanKind.INTERNAL,
    "client": OtelSpanKind.CLIENT,
    "producer": OtelSpanKind.PRODUCER,
}
# The conventions' advisory buckets.
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


class _Span:
    """An OpenTelemetry span seen through :class:`runtime.tracing.Span`."""

    __slots__ = ("inner",)

    def __init__(self, inner: trace.Span) -> None:
        self.inner = inner

    @property
    def trace_id(self) -> str:
        return format(self.inner.get_span_context().trace_id, "032x")

    @property
    def span_id(self) -> str:
        return format(self.inner.get_span_context().span_id, "016x")

    def set_attributes(self, attributes: Attributes) -> None:
        self.inner.set_attributes(dict(attributes))

    def add_event(self, name: str, attributes: Attributes | None = None) -> None:
        self.inner.add_event(name, dict(attributes) if attributes else None)

    def set_error(self, error_type: str, description: str | None = None) -> None:
        self.inner.set_attribute("error.type", error_type)
        self.inner.set_status(Status(StatusCode.ERROR, description))

    def end(self) -> None:
        self.inner.end()


class OtelTracer:
    """:class:`runtime.tracing.Tracer` over OpenTelemetry.

    Args:
        tracer_provider: where spans go (default: the global provider).
        meter_provider: where metrics go (default: the global provider).
        record_payloads: put inputs, outputs and tool arguments on spans (redacted).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        record_payloads: bool = False,
    ) -> None:
        self.record_payloads = record_payloads
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(_TOKEN_BUCKETS),
        )

    def start_span(self, name: str, *, kind: SpanKind, attributes: Attributes) -> _Span:
        return _Span(self._tracer.start_span(name, kind=_KINDS[kind], attributes=dict(attributes)))

    def attach(self, span: tracing.Span) -> object:
        assert isinstance(span, _Span)
        return context.attach(trace.set_span_in_context(span.inner))

    def detach(self, token: object) -> None:
        context.detach(token)  # type: ignore[arg-type]  # a token attach() gave

    def inject(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    def attach_remote(self, carrier: Mapping[str, str]) -> object:
        return context.attach(propagate.extract(dict(carrier)))

    def record_request(
        self, duration_s: float, usage: Usage | None, attributes: Attributes
    ) -> None:
        labels = dict(attributes)
        self._duration.record(duration_s, labels)
        if usage is not None:
            self._tokens.record(usage.input_tokens, {**labels, "gen_ai.token.type": "input"})
            self._tokens.record(usage.output_tokens, {**labels, "gen_ai.token.type": "output"})


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    *,
    record_payloads: bool = False,
) -> OtelTracer:
    """Trace every run started from now on (see the module doc); answers the tracer."""
    tracer = OtelTracer(tracer_provider, meter_provider, record_payloads=record_payloads)
    tracing.set_tracer(tracer)
    return tracer


def uninstrument() -> None:
    """Stop tracing runs started from now on."""
    tracing.set_tracer(None)


def console_provider(stream: IO[str] | None = None) -> trace.TracerProvider:
    """A tracer provider of the SDK writing each finished span to ``stream`` (default:
    stderr) as one JSON line, for ``[tracing] console = true``; ``OTEL_SERVICE_NAME`` names
    the service (default ``agent-runtime``).

    Raises:
        ImportError: ``opentelemetry-sdk`` is not installed.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    def one_line(span: ReadableSpan) -> str:
        return str(span.to_json(indent=None)) + "\n"

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", _SCOPE)})
    provider = TracerProvider(resource=resource)
    exporter = ConsoleSpanExporter(out=stream or sys.stderr, formatter=one_line)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider
