"""A worker job continues the trace it was submitted in: submit -> queue -> run -> tools is
one trace, through a real store (sqlite), on both protocols."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from worker_harness import run_cli, spawn_worker, wait_exit, write_config

from runtime import AssistantsClient, Orchestrator, RunPolicy, tracing
from runtime.emulator import Emulator
from runtime.logging import configure_logging, reset_logging
from runtime.otel import instrument, uninstrument
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from runtime.worker import Job, Message, RunExecutor, Worker, WorkerOptions
from runtime.worker.models import decode_job
from runtime.worker.sqlite import SqliteQueue
from tools import ToolRegistry

registry = ToolRegistry()


@registry.tool
async def shout(text: str) -> str:
    """Upper-case text.

    Args:
        text: what to shout.
    """
    return text.upper()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    instrument(provider)
    try:
        yield found
    finally:
        uninstrument()


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


@pytest.mark.parametrize("protocol", ["assistants", "responses"])
async def test_a_job_run_continues_the_trace_of_its_submit(
    exporter: InMemorySpanExporter, emulator: Emulator, tmp_path: Path, protocol: str
) -> None:
    """A job made inside a span carries its W3C trace context through the sqlite store;
    the worker's run (and its requests and tool calls) are children of that span, in the
    same trace."""
    options = WorkerOptions(consumer="w-1", concurrency=2, burst=True, claim_wait_s=0.05)
    queue = SqliteQueue(tmp_path / "jobs.db")
    async with AssistantsClient(base_url=emulator.base_url, api_key="sk-trace-test-key") as api:
        fields: dict[str, Any] = {"messages": (Message(content='/call shout {"text": "hi"}'),)}
        if protocol == "assistants":
            orch: Any = Orchestrator(api, registry, policy=RunPolicy())
            fields["assistant_id"] = (await api.create_assistant(model="gpt-4o")).id
        else:
            orch = ResponsesOrchestrator(ResponsesClient.sharing(api), registry)
        with tracing.span("submit job", kind="producer") as submit:
            job = Job(id=f"traced-{protocol}", **fields)
            assert await queue.submit(job)
        assert submit is not None
        assert job.trace_context["traceparent"].split("-")[1] == submit.trace_id
        worker = Worker(queue, RunExecutor(orch.session()), options)
        await asyncio.wait_for(worker.run(), timeout=20)
        record = await queue.get(job.id)
        await queue.aclose()
    assert record is not None and record.result is not None
    assert record.result.status == "completed", record.result

    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == "submit job"]
    assert root.kind.name == "PRODUCER"
    (run,) = [s for s in spans if s.name.startswith("invoke_agent")]
    assert _parent_id(run) == _span_id(root), "the run continues the submitter's span"
    assert run.parent is not None and run.parent.is_remote
    assert {s.context.trace_id for s in spans if s.context} == {root.context.trace_id}  # type: ignore[union-attr]
    below = sorted(
        (s for s in spans if _parent_id(s) == _span_id(run)), key=lambda s: s.start_time or 0
    )
    assert [s.name.split(" ")[0] for s in below] == ["chat", "execute_tool", "chat"]
    assert below[1].name == "execute_tool shout"
    assert dict(run.attributes or {})["runtime.run.status"] == "completed"


def test_a_job_made_without_tracing_carries_no_trace_context() -> None:
    """Tracing off: a job's trace_context is empty, and its stored form says so."""
    job = Job(messages=(Message(content="hi"),), assistant_id="asst_1")
    assert job.trace_context == {}
    assert json.loads(job.model_dump_json())["trace_context"] == {}


def test_an_unreadable_trace_context_is_dropped_never_the_job() -> None:
    """A stored job whose trace_context is not a string map (or holds unknown or oversized
    headers) is read with what can be used; the job itself is never dead-lettered for it."""
    stored = {
        "id": "j-1",
        "assistant_id": "asst_1",
        "messages": [{"role": "user", "content": "hi"}],
        "trace_context": {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "x-secret": "nope",
            "tracestate": "x" * 5000,
        },
    }
    job, ignored = decode_job(json.dumps(stored), "j-1")
    assert ignored == ()
    assert job.trace_context == {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    }
    stored["trace_context"] = ["not", "a", "map"]
    job, _ = decode_job(json.dumps(stored), "j-1")
    assert job.trace_context == {}


def _spans(text: str) -> list[dict[str, Any]]:
    """The span lines of a process's output (``[tracing] console``), other lines skipped."""
    spans = []
    for line in text.splitlines():
        if not line.startswith('{"name"'):
            continue
        data = json.loads(line)
        if "context" in data:
            spans.append(data)
    return spans


async def test_cli_submit_and_a_worker_process_make_one_trace(
    emulator: Emulator, assistant_id: str, tmp_path: Path
) -> None:
    """`python -m runtime submit` and `python -m runtime worker --burst` are two processes
    with [tracing] console on: the submit span (from the first) is the parent of the run
    span (from the second), and the run's requests and tool calls are in the same trace."""
    db = tmp_path / "jobs.db"
    config = write_config(
        tmp_path / "worker.toml",
        base_url=emulator.base_url,
        queue={"backend": "sqlite", "sqlite": {"path": str(db)}},
        tracing={"enabled": True, "console": True},
    )
    submit = await asyncio.to_thread(
        run_cli,
        [
            "submit", "--config", str(config), "--assistant", assistant_id,
            "--job-id", "traced-cli", '/call shout {"text": "hi"}',
        ],
    )  # fmt: skip
    assert submit.returncode == 0, submit.stderr
    (sent,) = _spans(submit.stderr)
    assert sent["name"] == "submit job" and sent["kind"] == "SpanKind.PRODUCER"
    assert sent["attributes"]["messaging.message.id"] == "traced-cli"

    worker = spawn_worker(config, "traced-worker", tmp_path, burst=True)
    assert await wait_exit(worker, timeout=30) == 0
    spans = _spans((tmp_path / "traced-worker.log").read_text())
    names = sorted(s["name"].split(" ")[0] for s in spans)
    assert names == ["chat", "chat", "execute_tool", "invoke_agent"], names
    (run,) = [s for s in spans if s["name"].startswith("invoke_agent")]
    assert run["parent_id"] == sent["context"]["span_id"]
    assert {s["context"]["trace_id"] for s in spans} == {sent["context"]["trace_id"]}
    assert run["attributes"]["runtime.run.status"] == "completed"


def test_log_lines_inside_a_continued_trace_carry_its_ids(
    exporter: InMemorySpanExporter,
) -> None:
    """Inside ``tracing.continued`` (the executor, around a job) a log line carries the
    job's trace id and its remote parent's span id, and a span started there is its child;
    outside, neither."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    try:
        log = structlog.get_logger("runtime.worker")
        with tracing.continued({"traceparent": parent}):
            log.info("worker.inside")
            with tracing.span("child"):
                pass
        log.info("worker.outside")
    finally:
        reset_logging()
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert inside["span_id"] == "b7ad6b7169203331"
    assert "trace_id" not in outside and "span_id" not in outside
    (child,) = exporter.get_finished_spans()
    assert child.parent is not None and child.parent.span_id == 0xB7AD6B7169203331
