"""Tools see their execute_tool span as the current OpenTelemetry span (async tools in
their task, sync tools in their thread): a tool's own spans nest under it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime.otel import instrument, uninstrument
from tools import ToolRegistry

from .conftest import Driver, call

provider = TracerProvider()
exporter = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(exporter))
app_tracer = provider.get_tracer("the-application")


@pytest.fixture
def registry() -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool
    async def lookup(key: str) -> str:
        """Look a key up, in a span of the application's own."""
        with app_tracer.start_as_current_span("db.lookup"):
            return key.upper()

    @reg.tool
    def checksum(text: str) -> str:
        """A sync tool (a worker thread) that reads the current span."""
        span = trace.get_current_span()
        with app_tracer.start_as_current_span("hash"):
            return f"{len(text)}:{span.get_span_context().span_id:016x}"

    return reg


@pytest.fixture(autouse=True)
def traced() -> Iterator[None]:
    exporter.clear()
    instrument(provider)
    try:
        yield
    finally:
        uninstrument()


@pytest.mark.parametrize("tool", ["lookup", "checksum"])
async def test_a_tools_own_spans_are_children_of_its_execute_tool_span(
    driver: Driver, tool: str
) -> None:
    """An application span opened inside a tool (async or sync) is a child of the tool's
    execute_tool span, in the run's trace."""
    arguments = {"key": "k"} if tool == "lookup" else {"text": "abc"}
    result = await driver.run(call(tool, **arguments))
    assert result.status == "completed", result
    spans = exporter.get_finished_spans()
    (execute,) = [s for s in spans if s.name == f"execute_tool {tool}"]
    (inner,) = [s for s in spans if s.name in ("db.lookup", "hash")]
    assert execute.context is not None and inner.parent is not None
    assert inner.parent.span_id == execute.context.span_id
    assert inner.context is not None and inner.context.trace_id == execute.context.trace_id
    if tool == "checksum":
        assert result.tool_calls[0].output.endswith(f"{execute.context.span_id:016x}")
