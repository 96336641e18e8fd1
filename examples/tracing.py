"""OpenTelemetry traces of a run, exported to the console (needs ``agent-runtime[otel]`` and
``opentelemetry-sdk``).

``runtime.otel.instrument()`` traces every run from then on by the GenAI semantic
conventions: an ``invoke_agent`` span per run, a ``chat`` span per model request and an
``execute_tool`` span per tool call; retries and broken streams are span events, failures set
the span status. Here the embedded emulator answers the first request with a 429 (the client
retries), a tool fails, and a stream breaks mid-way (the run recovers it). Every span is
printed as JSON by the SDK's console exporter, then the trace as a tree.

Pass ``--tree`` to print only the tree.
"""

from __future__ import annotations

import asyncio
import json
import sys

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime.emulator import Emulator, Scenario
from runtime.logging import configure_logging
from runtime.otel import instrument
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from tools import ToolRegistry

registry = ToolRegistry()


@registry.tool
async def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city.
    """
    return f"sunny, 21 C in {city}"


@registry.tool
async def book_table(city: str, people: int) -> str:
    """Book a table (always fails here: the booking service is down).

    Args:
        city: where.
        people: how many.
    """
    raise ConnectionError("booking service unreachable")


SCRIPT = Scenario.from_dict(
    {
        "turns": [
            {
                "type": "tool_calls",
                "calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
            },
            {
                "type": "tool_calls",
                "calls": [{"name": "book_table", "arguments": {"city": "Paris", "people": 2}}],
            },
            {"type": "text", "text": "It is sunny in Paris; I could not book a table."},
        ]
    }
)


def tree(spans: list[ReadableSpan]) -> str:
    """The spans as an indented tree: name, key attributes, events and error statuses."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def show(span: ReadableSpan, depth: int) -> None:
        attributes = dict(span.attributes or {})
        shown = [f"{short}={_plain(attributes[key])}" for key, short in _SHOWN if key in attributes]
        events = [event.name for event in span.events]
        status = " ERROR" if span.status.status_code.name == "ERROR" else ""
        seconds = ((span.end_time or 0) - (span.start_time or 0)) / 1e9
        line = f"{'    ' * depth}{span.name}{status} ({seconds * 1000:.0f} ms) {' '.join(shown)}"
        if events:
            line += f" events={','.join(events)}"
        lines.append(line.rstrip())
        assert span.context is not None
        for child in children.get(span.context.span_id, []):
            show(child, depth + 1)

    for root in children.get(None, []):
        show(root, 0)
    return "\n".join(lines)


_SHOWN = (
    ("runtime.request.kind", "kind"),
    ("gen_ai.response.finish_reasons", "finish"),
    ("gen_ai.usage.input_tokens", "in"),
    ("gen_ai.usage.output_tokens", "out"),
    ("gen_ai.tool.call.id", "call"),
    ("runtime.run.status", "status"),
    ("error.type", "error.type"),
)


def _plain(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


async def main(tree_only: bool) -> None:
    collected = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collected))
    if not tree_only:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    instrument(provider)  # or instrument() with the globally configured SDK
    async with Emulator(scenario=SCRIPT) as emu:
        # The create is refused once (429), its retry goes through (a no-op "slow" rule),
        # and the stream of the first submit breaks after 3 events.
        emu.inject("429", method="POST", path=r"/responses$", retry_after_ms=10)
        emu.inject("slow", method="POST", path=r"/responses$", ms=0)
        emu.inject("cut", method="POST", path=r"/responses$", after=3)
        async with ResponsesClient(base_url=emu.base_url, api_key="sk-example") as client:
            orchestrator = ResponsesOrchestrator(client, registry)
            result = await orchestrator.run("Weather in Paris, and book a table?", model="gpt-4o")
    provider.shutdown()
    print(f"\n{result.status} | {result.text}")
    print(json.dumps({"rounds": result.rounds, "recoveries": result.recoveries}))
    print("\ntrace:")
    print(tree(list(collected.get_finished_spans())))


if __name__ == "__main__":
    configure_logging("WARNING")
    asyncio.run(main(tree_only="--tree" in sys.argv[1:]))
