"""The worker on the Responses protocol: embedded (memory queue, real orchestrator, emulator)
and one ``python -m runtime worker --burst`` process over sqlite."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from worker_harness import spawn_worker, tail, wait_exit, write_config

from runtime.core.policy import RunPolicy
from runtime.emulator import Emulator
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from runtime.responses.backend import responses_tools
from runtime.worker import (
    Job,
    JobState,
    MemoryQueue,
    Message,
    RunExecutor,
    ToolOutput,
    Worker,
    WorkerOptions,
)
from runtime.worker.sqlite import SqliteQueue
from tools import ToolRegistry

registry = ToolRegistry()
executed: list[str] = []


@registry.tool
async def shout(text: str) -> str:
    """Upper-case text.

    Args:
        text: what to shout.
    """
    executed.append(text)
    return text.upper()


@pytest.fixture
async def responses(emulator: Emulator) -> AsyncIterator[ResponsesClient]:
    """A Responses client of the emulator."""
    async with ResponsesClient(base_url=emulator.base_url, api_key="sk-worker-test-key") as c:
        yield c


def _worker(client: ResponsesClient, queue: MemoryQueue, *, conversations: bool = False) -> Worker:
    orchestrator = ResponsesOrchestrator(
        client, registry, policy=RunPolicy(), conversations=conversations
    )
    # Heartbeats well inside the tests' short leases: a slow resume must keep its job.
    options = WorkerOptions(
        consumer="svc-r", concurrency=4, burst=True, claim_wait_s=0.05, heartbeat_s=0.03
    )
    return Worker(queue, RunExecutor(orchestrator.session()), options)


def _call(text: str) -> str:
    return "/call shout " + json.dumps({"text": text})


async def test_a_responses_job_runs_its_tool_round_and_continues(
    responses: ResponsesClient,
) -> None:
    """A job's messages become the input; the tool output is quoted; run_id is the final
    response, and a second job continues after it by previous_run_id."""
    executed.clear()
    queue = MemoryQueue()
    await queue.submit(
        Job(id="r-1", messages=(Message(content=_call("hello")),), metadata={"team": "ops"})
    )
    await asyncio.wait_for(_worker(responses, queue).run(), timeout=20)
    record = await queue.result("r-1", timeout_s=1)
    assert record is not None and record.result is not None
    result = record.result
    assert result.status == "completed" and "HELLO" in result.text, result
    assert [c.output for c in result.tool_calls] == ["HELLO"] and executed == ["hello"]
    assert result.run_id is not None and result.run_id.startswith("resp_")
    assert result.conversation_id is None and result.usage is not None and result.usage.total_tokens
    final = await responses.retrieve(result.run_id)
    assert final.status == "completed" and final.previous_response_id is not None
    assert final.metadata is not None and final.metadata["job_id"] == "r-1"
    assert final.metadata["team"] == "ops"

    follow = Job(
        id="r-2",
        protocol="responses",
        previous_run_id=result.run_id,
        messages=(Message(content="thanks"),),
    )
    await queue.submit(follow)
    await asyncio.wait_for(_worker(responses, queue).run(), timeout=20)
    second = await queue.result("r-2", timeout_s=1)
    assert second is not None and second.result is not None
    assert second.result.status == "completed" and second.result.run_id is not None
    continued = await responses.retrieve(second.result.run_id)
    assert continued.previous_response_id == result.run_id


async def test_a_job_in_a_conversation_stores_it_and_a_later_job_continues_it(
    responses: ResponsesClient,
) -> None:
    """With conversations on, a new job runs in a new Conversation whose id the result
    carries as conversation_id; a later job naming it runs in the same Conversation."""
    executed.clear()
    queue = MemoryQueue()
    await queue.submit(Job(id="c-1", messages=(Message(content=_call("first")),)))
    await asyncio.wait_for(_worker(responses, queue, conversations=True).run(), timeout=20)
    first = await queue.result("c-1", timeout_s=1)
    assert first is not None and first.result is not None and first.result.status == "completed"
    conversation = first.result.conversation_id
    assert conversation is not None and conversation.startswith("conv_")
    assert first.progress.conversation_id == conversation

    follow = Job(
        id="c-2",
        protocol="responses",
        conversation_id=conversation,
        messages=(Message(content="and again"),),
    )
    await queue.submit(follow)
    await asyncio.wait_for(_worker(responses, queue, conversations=True).run(), timeout=20)
    second = await queue.result("c-2", timeout_s=1)
    assert second is not None and second.result is not None
    assert second.result.status == "completed" and second.result.conversation_id == conversation
    final = await responses.retrieve(second.result.run_id or "")
    assert final.conversation is not None and final.conversation.id == conversation
    assert final.previous_response_id is None and executed == ["first"]


async def test_a_reclaimed_job_resumes_its_response_with_stored_outputs(
    responses: ResponsesClient,
) -> None:
    """A job whose worker died after storing the response id and a tool output continues
    from that response: the stored output is sent and the tool never runs again."""
    executed.clear()
    queue = MemoryQueue(lease_s=0.2)
    message = _call("once")
    await queue.submit(Job(id="r-crash", messages=(Message(content=message),)))
    # The "dead" worker: its first response asked for the tool; it stored the response id
    # and the output it computed, then vanished without acknowledging.
    (lease,) = await queue.claim("dead-worker", 1, 1.0)
    first = await responses.create(
        model="gpt-4o", input=message, tools=responses_tools(registry.definitions())
    )
    (call,) = first.function_calls
    await queue.save_progress(lease, run_id=first.id)
    stored = ToolOutput(id=call.call_id, name="shout", arguments=call.arguments, output="STORED")
    await queue.save_progress(lease, tool_output=stored)
    await asyncio.sleep(0.3)  # the lease expires

    await asyncio.wait_for(_worker(responses, queue).run(), timeout=20)
    record = await queue.get("r-crash")
    assert record is not None and record.attempt == 2 and record.result is not None
    result = record.result
    assert result.status == "completed", result
    # The stored output was sent (the real tool would have said "ONCE") and never re-run.
    assert "STORED" in result.text and "ONCE" not in result.text and executed == []
    assert [c.output for c in result.tool_calls] == ["STORED"]
    assert result.run_id is not None and result.run_id != first.id
    final = await responses.retrieve(result.run_id)
    assert final.previous_response_id == first.id


async def test_a_reclaimed_job_whose_last_response_completed_is_not_run_again(
    responses: ResponsesClient,
) -> None:
    """A job whose worker died after the final response completed (result not yet stored)
    adopts that response: no new response, no tool execution, stored outputs reported."""
    executed.clear()
    queue = MemoryQueue(lease_s=0.2)
    await queue.submit(Job(id="r-late", messages=(Message(content="just talk"),)))
    (lease,) = await queue.claim("dead-worker", 1, 1.0)
    done = await responses.create(model="gpt-4o", input="just talk")
    assert done.status == "completed" and not done.function_calls
    await queue.save_progress(lease, run_id=done.id)
    earlier = ToolOutput(id="call_earlier", name="shout", output="EARLIER")
    await queue.save_progress(lease, tool_output=earlier)
    await asyncio.sleep(0.3)

    await asyncio.wait_for(_worker(responses, queue).run(), timeout=20)
    record = await queue.get("r-late")
    assert record is not None and record.result is not None
    assert record.result.status == "completed" and record.result.run_id == done.id
    assert [c.output for c in record.result.tool_calls] == ["EARLIER"] and executed == []


async def test_an_unknown_response_restarts_and_a_wrong_protocol_is_an_error(
    responses: ResponsesClient,
) -> None:
    """A stored response id the server does not know starts the conversation again; a job
    written for the assistants protocol, or with store=false, ends with an error result."""
    queue = MemoryQueue(lease_s=0.2)
    await queue.submit(Job(id="r-lost", messages=(Message(content=_call("again")),)))
    (lease,) = await queue.claim("dead-worker", 1, 1.0)
    await queue.save_progress(lease, run_id="resp_unknown")
    await asyncio.sleep(0.3)
    wrong = Job(
        id="r-wrong",
        protocol="assistants",
        assistant_id="asst_x",
        messages=(Message(content="hi"),),
    )
    await queue.submit(wrong)
    unstored = Job(id="r-nostore", messages=(Message(content="hi"),), run_options={"store": False})
    await queue.submit(unstored)
    await asyncio.wait_for(_worker(responses, queue).run(), timeout=20)
    lost = await queue.get("r-lost")
    assert lost is not None and lost.result is not None
    assert lost.result.status == "completed" and "AGAIN" in lost.result.text
    assert lost.result.run_id not in (None, "resp_unknown")
    bad = await queue.get("r-wrong")
    assert bad is not None and bad.state is JobState.DONE and bad.result is not None
    assert bad.result.status == "error" and bad.attempt == 1
    assert bad.result.error is not None and "assistants protocol" in bad.result.error
    nostore = await queue.get("r-nostore")
    assert nostore is not None and nostore.result is not None
    assert nostore.result.status == "error" and "store=false" in (nostore.result.error or "")


@pytest.mark.slow
async def test_worker_process_burst_on_sqlite_with_responses(
    emulator: Emulator, tmp_path: Path
) -> None:
    """`python -m runtime worker --burst` with protocol = "responses" runs sqlite jobs
    through their tool round and exits 0 when the queue is empty."""
    db = tmp_path / "jobs.db"
    config = write_config(
        tmp_path / "worker.toml",
        base_url=emulator.base_url,
        queue={"backend": "sqlite", "sqlite": {"path": str(db)}},
        protocol="responses",
    )
    queue = SqliteQueue(db)
    try:
        for i in range(3):
            msg = "/call slow_echo " + json.dumps({"text": f"job {i}", "sleep_ms": 5})
            await queue.submit(Job(id=f"rs-{i}", messages=(Message(content=msg),)))
        proc = spawn_worker(config, "resp-worker", tmp_path, burst=True)
        assert await wait_exit(proc, timeout=60) == 0, tail(tmp_path / "resp-worker.log")
        for i in range(3):
            record = await queue.get(f"rs-{i}")
            assert record is not None and record.result is not None
            assert record.result.status == "completed", record.result
            assert f"JOB {i}" in record.result.text.upper()
            assert record.result.run_id is not None and record.result.run_id.startswith("resp_")
    finally:
        await queue.aclose()


async def test_a_reclaimed_job_follows_its_response_still_in_progress() -> None:
    """A job whose worker died while its follow-up response (after a stored tool output) was
    still in progress follows that very response to its end: no new response, no tool run."""
    executed.clear()
    async with (
        Emulator(delta_delay_s=0.25) as emu,  # the follow-up streams for ~0.75 s
        ResponsesClient(base_url=emu.base_url, api_key="sk-worker-test-key") as client,
    ):
        queue = MemoryQueue(lease_s=0.1)
        message = _call("slowly")
        await queue.submit(Job(id="r-busy", messages=(Message(content=message),)))
        (lease,) = await queue.claim("dead-worker", 1, 1.0)
        tools = responses_tools(registry.definitions())
        first = await client.create(model="gpt-4o", input=message, tools=tools)
        (call,) = first.function_calls
        stored = ToolOutput(id=call.call_id, name="shout", output="STORED SLOWLY")
        await queue.save_progress(lease, tool_output=stored)
        follow = await client.create(
            model="gpt-4o",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "STORED"}],
            tools=tools,
            background=True,
        )
        assert follow.status in ("queued", "in_progress")
        await queue.save_progress(lease, run_id=follow.id)
        await asyncio.sleep(0.15)  # the lease expires
        created = emu.stats["responses_created"]
        assert (await client.retrieve(follow.id)).status in ("queued", "in_progress")

        await asyncio.wait_for(_worker(client, queue).run(), timeout=20)
        record = await queue.get("r-busy")
        assert record is not None and record.result is not None
        assert record.result.status == "completed" and record.result.run_id == follow.id
        assert "STORED" in record.result.text and executed == []
        assert [c.output for c in record.result.tool_calls] == ["STORED SLOWLY"]
        assert emu.stats["responses_created"] == created
