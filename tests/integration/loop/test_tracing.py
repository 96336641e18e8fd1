"""Traces of runs by the OpenTelemetry GenAI conventions, on both protocols, exported to the
SDK's in-memory exporter: the span tree, attribute names and values, events and statuses."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from runtime import tracing
from runtime.errors import ServerError
from runtime.logging import configure_logging, reset_logging
from runtime.otel import OtelTracer, instrument, uninstrument

from .conftest import API_KEY, LEAKED_KEY, Driver, OpenDriver, call, fast, scenario


class Traces:
    """The spans and metrics one test produced."""

    def __init__(self, *, record_payloads: bool = False) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.tracer: OtelTracer = instrument(
            self.provider, self.meters, record_payloads=record_payloads
        )

    def spans(self) -> list[ReadableSpan]:
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]

    def root(self) -> ReadableSpan:
        (root,) = [s for s in self.spans() if s.parent is None]
        return root

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        assert span.context is not None
        return [
            s
            for s in self.spans()
            if s.parent is not None and s.parent.span_id == span.context.span_id
        ]

    def histogram(self, name: str) -> list[tuple[dict[str, Any], int, float]]:
        """(attributes, count, sum) of each point of histogram ``name``."""
        data = self.reader.get_metrics_data()
        points = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points += [
                            (dict(p.attributes or {}), p.count, p.sum)
                            for p in metric.data.data_points  # type: ignore[union-attr]
                        ]
        return points


@pytest.fixture
def traces() -> Iterator[Traces]:
    found = Traces()
    try:
        yield found
    finally:
        uninstrument()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _events(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


TWO_ROUNDS = (
    {"type": "tool_calls", "calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
    {
        "type": "tool_calls",
        "calls": [
            {"name": "explode", "arguments": {"reason": "no"}},
            {"name": "add", "arguments": {"a": 1, "b": 1}},
        ],
    },
    {"type": "text", "text": "done: {outputs}"},
)


async def test_a_two_round_run_is_one_trace_by_the_genai_conventions(
    open_driver: OpenDriver, traces: Traces
) -> None:
    """A run with two tool rounds, a failing tool, a create retried after a 429 and a submit
    whose stream broke is one trace: an invoke_agent span over a chat span per request and
    an execute_tool span per call, with the conventions' attribute names and values, the
    retry and the stream loss as events, and an error status on the failed tool only."""
    driver = await open_driver(policy=fast())
    driver.emu.set_scenario(scenario(*TWO_ROUNDS))
    driver.inject_on_create("429", retry_after_ms=1)
    driver.inject_on_submit("cut", after=2)
    result = await driver.run("go")
    assert result.status == "completed", result
    assert result.rounds == 2 and result.recoveries == 1

    root = traces.root()
    attrs = _attrs(root)
    assert root.name.startswith("invoke_agent ")
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["gen_ai.system"] == "openai"
    assert attrs["runtime.protocol"] == driver.protocol
    assert attrs["runtime.run.status"] == "completed"
    assert attrs["runtime.run.rounds"] == 2
    assert attrs["runtime.run.recoveries"] == 1
    assert attrs["gen_ai.response.id"] == result.run_id
    assert result.usage is not None
    assert attrs["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    assert attrs.get("gen_ai.conversation.id") == result.conversation_id  # Assistants: a thread
    if driver.is_assistants:
        assert attrs["gen_ai.agent.id"] == driver.assistant_id
        assert root.name == f"invoke_agent {driver.assistant_id}"
    else:
        assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert root.status.status_code != StatusCode.ERROR

    kids = traces.children(root)
    shape = [
        (
            s.name.split(" ")[0],
            _attrs(s).get("runtime.request.kind") or _attrs(s)["gen_ai.tool.name"],
        )
        for s in kids
    ]
    assert shape == [
        ("chat", "create"),
        ("execute_tool", "add"),
        ("chat", "submit"),
        ("execute_tool", "explode"),
        ("execute_tool", "add"),
        ("chat", "submit"),
    ] or shape == [  # the two calls of a round run concurrently: either may start first
        ("chat", "create"),
        ("execute_tool", "add"),
        ("chat", "submit"),
        ("execute_tool", "add"),
        ("execute_tool", "explode"),
        ("chat", "submit"),
    ]
    assert len(traces.spans()) == 1 + len(kids), "every span is a child of the run"
    assert {s.context.trace_id for s in traces.spans() if s.context} == {root.context.trace_id}

    chats = [s for s in kids if s.name.startswith("chat")]
    create, first_submit, last_submit = chats
    assert "runtime.retry" in _events(create)
    retry = next(e for e in create.events if e.name == "runtime.retry")
    assert dict(retry.attributes or {})["error.type"] == "429"
    assert dict(retry.attributes or {})["attempt"] == 1
    assert "runtime.stream_lost" in _events(first_submit)
    assert _attrs(create)["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert _attrs(first_submit)["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert _attrs(last_submit)["gen_ai.response.finish_reasons"] == ("stop",)
    assert _attrs(last_submit)["gen_ai.response.id"] == result.run_id
    for chat in chats:
        chat_attrs = _attrs(chat)
        assert chat.kind.name == "CLIENT"
        assert chat_attrs["gen_ai.operation.name"] == "chat"
        assert chat_attrs["gen_ai.system"] == "openai"
        assert chat_attrs["server.address"] == "127.0.0.1"
        assert chat_attrs["server.port"] == driver.emu.port
        assert chat.status.status_code != StatusCode.ERROR
        assert "gen_ai.usage.input_tokens" in chat_attrs
    ids = [_attrs(c)["gen_ai.response.id"] for c in chats]
    if driver.is_assistants:
        assert len(set(ids)) == 1, "one run answers every request"
        assert create.name == "chat"  # the assistant's model: not known to the request
    else:
        assert len(set(ids)) == 3, "a response per request"
        assert all(c.name == "chat gpt-4o" for c in chats)
        assert all(_attrs(c)["gen_ai.request.model"] == "gpt-4o" for c in chats)
    # Per-request tokens add up to the run's (Assistants reports them cumulatively).
    assert sum(_attrs(c)["gen_ai.usage.input_tokens"] for c in chats) == result.usage.input_tokens

    tools = [s for s in kids if s.name.startswith("execute_tool")]
    by_id = {_attrs(t)["gen_ai.tool.call.id"]: t for t in tools}
    assert set(by_id) == {c.tool_call_id for c in result.tool_calls}
    for call_result in result.tool_calls:
        span = by_id[call_result.tool_call_id]
        tool_attrs = _attrs(span)
        assert span.name == f"execute_tool {call_result.name}"
        assert tool_attrs["gen_ai.operation.name"] == "execute_tool"
        assert tool_attrs["gen_ai.tool.name"] == call_result.name
        assert tool_attrs["gen_ai.tool.type"] == "function"
        assert "gen_ai.tool.call.arguments" not in tool_attrs, "payloads are opt-in"
        assert "gen_ai.tool.call.result" not in tool_attrs
        if call_result.name == "explode":
            assert span.status.status_code == StatusCode.ERROR
            assert tool_attrs["error.type"] == "tool_exception"
        else:
            assert span.status.status_code != StatusCode.ERROR
            assert "error.type" not in tool_attrs


async def test_a_rerun_and_a_resumed_stream_are_events_of_the_trace(
    open_driver: OpenDriver, traces: Traces
) -> None:
    """A turn that failed with server_error and is sent again is a ``runtime.rerun`` event
    of the run; the failed request's span has an error status and the server's code as
    ``error.type``, and the run itself ends without error."""
    driver = await open_driver(policy=fast(rerun_on_server_error=True))
    driver.emu.set_scenario(
        scenario({"type": "fail", "code": "server_error", "message": "down"}, {"type": "text"})
    )
    result = await driver.run("hello")
    assert result.status == "completed", result
    root = traces.root()
    assert "runtime.rerun" in _events(root)
    failed, redone = traces.named("chat")
    assert failed.status.status_code == StatusCode.ERROR
    assert _attrs(failed)["error.type"] == "server_error"
    assert _attrs(failed)["gen_ai.response.finish_reasons"] == ("error",)
    assert redone.status.status_code != StatusCode.ERROR
    assert root.status.status_code != StatusCode.ERROR


async def test_a_failed_run_and_a_failing_request_set_error_statuses(
    open_driver: OpenDriver, traces: Traces
) -> None:
    """A run whose create keeps failing raises: the request span and the run span end with
    an error status and the exception's class as ``error.type``; no secret is on them."""
    driver = await open_driver(policy=fast(create_attempts=1))
    driver.inject_on_create("500", times=5)
    with pytest.raises(ServerError):
        await driver.run("hello")
    root = traces.root()
    assert root.status.status_code == StatusCode.ERROR
    assert _attrs(root)["error.type"] == "ServerError"
    (create,) = traces.named("chat")
    assert create.status.status_code == StatusCode.ERROR
    assert _attrs(create)["error.type"] == "ServerError"
    assert "gen_ai.response.id" not in _attrs(create)
    for span in traces.spans():
        assert API_KEY not in json.dumps(_attrs(span), default=str)
    failures = traces.histogram("gen_ai.client.operation.duration")
    assert [a.get("error.type") for a, _, _ in failures] == ["ServerError"]


async def test_payloads_are_recorded_only_when_asked_and_never_hold_secrets(
    driver: Driver,
) -> None:
    """With record_payloads the input, the answer and tool arguments and outputs are on the
    spans; a secret a tool's error quotes (and the client's API key) is masked there."""
    found = Traces(record_payloads=True)
    try:
        driver.emu.set_scenario(
            scenario(
                {"type": "tool_calls", "calls": [{"name": "leak", "arguments": {}}]},
                {"type": "text", "text": "sorry"},
            )
        )
        result = await driver.run("my name is Ada")
    finally:
        uninstrument()
    assert result.status == "completed", result
    root = found.root()
    assert "my name is Ada" in str(_attrs(root).get("gen_ai.input.messages", "")) or (
        driver.is_assistants  # the input went into the thread before the run
    )
    (tool,) = found.named("execute_tool")
    tool_attrs = _attrs(tool)
    assert tool_attrs["gen_ai.tool.call.arguments"] == "{}"
    assert "upstream refused key" in tool_attrs["gen_ai.tool.call.result"]
    dumped = json.dumps([_attrs(s) for s in found.spans()], default=str)
    assert LEAKED_KEY not in dumped and API_KEY not in dumped
    last = found.named("chat")[-1]
    output = json.loads(_attrs(last)["gen_ai.output.messages"])
    assert output[0]["role"] == "assistant" and output[0]["parts"][0]["content"] == "sorry"


async def test_every_log_line_of_a_run_carries_the_trace_and_span_ids(
    driver: Driver, traces: Traces
) -> None:
    """While a run is traced, its log lines (the loop's, the client's retries, the tools')
    carry trace_id and span_id of the span they happened in."""
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    try:
        driver.inject_on_create("429", retry_after_ms=1)
        result = await driver.run(call("explode", reason="x"))
    finally:
        reset_logging()
    assert result.status == "completed", result
    spans = {s.context.span_id: s for s in traces.spans() if s.context}
    trace_id = traces.root().context.trace_id  # type: ignore[union-attr]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    ours = [line for line in lines if line["logger"].startswith(("runtime", "tools"))]
    events = {line["event"] for line in ours}
    assert {"runtime.retry_scheduled", "tool.finished", "run.finished"} <= events, events
    for line in ours:
        assert line["trace_id"] == format(trace_id, "032x"), line
        assert int(line["span_id"], 16) in spans, line
    by_event = {line["event"]: spans[int(line["span_id"], 16)].name for line in ours}
    assert by_event["runtime.retry_scheduled"].startswith("chat")
    assert by_event["tool.finished"] == "execute_tool explode"
    assert by_event["run.finished"].startswith("invoke_agent")


async def test_request_metrics_have_bounded_labels(open_driver: OpenDriver, traces: Traces) -> None:
    """Each model request records its duration and its input and output tokens in the
    conventions' histograms; no label takes a value the model chose (a tool name)."""
    driver = await open_driver()
    driver.emu.set_scenario(scenario(*TWO_ROUNDS))
    result = await driver.run("go")
    assert result.status == "completed" and result.usage is not None
    durations = traces.histogram("gen_ai.client.operation.duration")
    assert sum(count for _, count, _ in durations) == result.requests == 3
    tokens = traces.histogram("gen_ai.client.token.usage")
    by_type = {"input": 0.0, "output": 0.0}
    for labels_of, _, total in tokens:
        by_type[labels_of["gen_ai.token.type"]] += total
    assert by_type == {
        "input": result.usage.input_tokens,
        "output": result.usage.output_tokens,
    }
    labels = {k for a, _, _ in durations + tokens for k in a}
    assert labels <= {
        "gen_ai.operation.name",
        "gen_ai.system",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.token.type",
        "runtime.protocol",
        "runtime.request.kind",
        "error.type",
        "server.address",
        "server.port",
    }
    values = {str(v) for a, _, _ in durations + tokens for v in a.values()}
    assert not values & {"add", "explode"}


def test_tracing_is_off_by_default() -> None:
    """Without instrument() there is no tracer and no current span: the loop does nothing."""
    assert tracing.get_tracer() is None
    assert tracing.current_span() is None
    assert tracing.inject() == {}


def test_tracing_off_imports_no_opentelemetry() -> None:
    """A run and a job made with tracing off import neither OpenTelemetry nor runtime.otel:
    the extra costs nothing when it is not used."""
    code = """
import asyncio, sys
from runtime.emulator import Emulator
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from runtime.worker import Job, Message
from tools import ToolRegistry

async def main():
    async with Emulator() as emu:
        async with ResponsesClient(base_url=emu.base_url, api_key="sk-off-test") as client:
            result = await ResponsesOrchestrator(client, ToolRegistry()).run("hi")
    assert result.status == "completed", result

asyncio.run(main())
assert Job(messages=(Message(content="hi"),), assistant_id="a").trace_context == {}
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "runtime.otel"))))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


async def test_an_azure_client_is_traced_as_azure_openai(traces: Traces) -> None:
    """A run through an Azure-style client names its system ``az.ai.openai`` and the Azure
    endpoint as its server."""
    from runtime import AssistantsClient, Orchestrator
    from runtime.emulator import Emulator
    from tools import ToolRegistry

    async with Emulator() as emu:
        port = emu.port
        client = AssistantsClient(
            azure_endpoint=emu.azure_endpoint, api_version="2024-08-01-preview", api_key=API_KEY
        )
        async with client:
            assistant = await client.create_assistant(model="my-deployment")
            result = await Orchestrator(client, ToolRegistry()).create_thread_and_run(
                assistant.id, messages=[{"role": "user", "content": "hi"}]
            )
    assert result.status == "completed"
    for span in traces.spans():
        assert _attrs(span)["gen_ai.system"] == "az.ai.openai"
    (chat,) = traces.named("chat")
    assert _attrs(chat)["server.port"] == port
