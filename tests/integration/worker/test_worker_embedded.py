"""The worker embedded in a service (memory queue) with the real orchestrator and the emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from runtime import AssistantsClient, ModelPrice, Orchestrator, RunPolicy, RunStream, UsageLimits
from runtime.emulator import Scenario
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
from runtime.worker.settings import load_worker_settings
from tools import ToolRegistry

registry = ToolRegistry()


@registry.tool
async def shout(text: str) -> str:
    """Upper-case text.

    Args:
        text: what to shout.
    """
    return text.upper()


def _worker(client: AssistantsClient, queue: MemoryQueue) -> Worker:
    orchestrator = Orchestrator(client, registry, policy=RunPolicy())
    # Heartbeats well inside the tests' 0.2 s leases, so a slow machine cannot expire a live one.
    options = WorkerOptions(
        consumer="svc-1", concurrency=4, burst=True, claim_wait_s=0.05, heartbeat_s=0.03
    )
    return Worker(queue, RunExecutor(orchestrator.session()), options)


async def test_submit_and_await_new_and_existing_threads(
    client: AssistantsClient, assistant_id: str
) -> None:
    """A new-thread job and an existing-thread job both complete with their run's output."""
    thread = await client.create_thread(
        messages=[{"role": "user", "content": '/call shout {"text": "old"}'}]
    )
    queue = MemoryQueue()
    new = Job(
        id="new-1",
        assistant_id=assistant_id,
        messages=(Message(content='/call shout {"text": "new"}'),),
        metadata={"team": "ops"},
    )
    await queue.submit(new)
    await queue.submit(Job(id="old-1", assistant_id=assistant_id, conversation_id=thread.id))
    await asyncio.wait_for(_worker(client, queue).run(), timeout=20)

    old = await queue.result("old-1", timeout_s=1)
    assert old is not None and old.result is not None
    assert old.result.status == "completed" and old.result.conversation_id == thread.id
    assert "OLD" in old.result.text
    assert [c.output for c in old.result.tool_calls] == ["OLD"]
    fresh = await queue.result("new-1", timeout_s=1)
    assert fresh is not None and fresh.result is not None and "NEW" in fresh.result.text
    assert fresh.result.usage is not None and fresh.result.usage.total_tokens > 0
    run = await client.retrieve_run(fresh.result.conversation_id or "", fresh.result.run_id or "")
    assert run.metadata is not None
    assert run.metadata["job_id"] == "new-1" and run.metadata["team"] == "ops"


async def test_unknown_assistant_is_an_error_result(client: AssistantsClient) -> None:
    """A job naming a missing assistant ends with status error at once, not in retries."""
    queue = MemoryQueue()
    job = Job(id="bad-1", assistant_id="asst_missing", messages=(Message(content="hi"),))
    await queue.submit(job)
    await asyncio.wait_for(_worker(client, queue).run(), timeout=20)
    record = await queue.get("bad-1")
    assert record is not None and record.state is JobState.DONE and record.attempt == 1
    assert record.result is not None and record.result.status == "error"
    assert record.result.error is not None and "NotFound" in record.result.error


async def test_a_reclaimed_job_resumes_its_run_with_known_outputs(
    client: AssistantsClient, assistant_id: str
) -> None:
    """A job whose first worker died after storing a tool output resumes the same run and
    submits the stored output without executing the tool again."""
    queue = MemoryQueue(lease_s=0.2)
    await queue.submit(
        Job(
            id="crash-1",
            assistant_id=assistant_id,
            messages=(Message(content='/call shout {"text": "once"}'),),
        )
    )
    # The "dead" worker: claims, creates thread and run up to requires_action, stores the
    # run id and a tool output it computed, then vanishes without acknowledging.
    (lease,) = await queue.claim("dead-worker", 1, 1.0)
    thread = await client.create_thread(
        messages=[{"role": "user", "content": '/call shout {"text": "once"}'}]
    )
    await queue.save_progress(lease, conversation_id=thread.id)
    stream = await client.create_run(
        thread.id,
        assistant_id,
        stream=True,
        tools=registry.definitions(),
        metadata={"job_id": "crash-1"},
    )
    run_id, call_id = await _run_until_action(stream)
    await queue.save_progress(lease, run_id=run_id)
    stored = ToolOutput(id=call_id, name="shout", arguments='{"text": "once"}', output="STORED")
    await queue.save_progress(lease, tool_output=stored)
    await asyncio.sleep(0.3)  # the lease expires

    await asyncio.wait_for(_worker(client, queue).run(), timeout=20)
    record = await queue.get("crash-1")
    assert record is not None and record.attempt == 2 and record.result is not None
    assert record.result.status == "completed" and record.result.run_id == run_id
    # The stored output was submitted (the real tool would have said "ONCE").
    assert "STORED" in record.result.text and "ONCE" not in record.result.text
    assert [c.output for c in record.result.tool_calls] == ["STORED"]
    runs = await client.list_runs(thread.id).to_list()
    assert [r.id for r in runs] == [run_id]


async def _run_until_action(stream: RunStream) -> tuple[str, str]:
    run_id = call_id = ""
    async for event in stream:
        if event.event == "thread.run.requires_action":
            run_id = event.data["id"]
            call_id = event.data["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
    return run_id, call_id


async def test_a_run_unknown_to_the_server_is_started_again(
    client: AssistantsClient, assistant_id: str
) -> None:
    """A stored run id the server does not know (it lost its state) leads to a new run."""
    queue = MemoryQueue(lease_s=0.2)
    message = '/call shout {"text": "again"}'
    await queue.submit(
        Job(id="lost-1", assistant_id=assistant_id, messages=(Message(content=message),))
    )
    (lease,) = await queue.claim("dead-worker", 1, 1.0)
    thread = await client.create_thread(messages=[{"role": "user", "content": message}])
    await queue.save_progress(lease, conversation_id=thread.id, run_id="run_unknown")
    await asyncio.sleep(0.3)
    await asyncio.wait_for(_worker(client, queue).run(), timeout=20)
    record = await queue.get("lost-1")
    assert record is not None and record.result is not None
    assert record.result.status == "completed" and "AGAIN" in record.result.text
    assert record.result.run_id not in (None, "run_unknown")
    assert record.progress.run_seq == 1 and record.result.conversation_id == thread.id


async def test_a_run_cancelled_behind_the_jobs_back_is_started_again(
    emulator: Any, client: AssistantsClient, assistant_id: str
) -> None:
    """A run cancelled by someone other than the job (e.g. a previous attempt's late clean-up
    of a run it could not see yet) is not the job's outcome: a fresh run generation runs."""
    emulator.set_scenario(
        Scenario.from_dict(
            {
                "turns": [
                    {"type": "text", "text": "one two three four five six", "delta_delay_ms": 80}
                ]
            }
        )
    )
    queue = MemoryQueue()
    await queue.submit(
        Job(id="behind-1", assistant_id=assistant_id, messages=(Message(content="hi"),))
    )

    async def cancel_the_first_run() -> None:
        # The run's id is not in the record yet (a run without tool calls has it stored with
        # its result): find the run on the job's thread.
        while True:
            record = await queue.get("behind-1")
            thread = record.progress.conversation_id if record is not None else None
            runs = await client.list_runs(thread).to_list() if thread else []
            if runs:
                await client.cancel_run(thread or "", runs[0].id)
                return
            await asyncio.sleep(0.02)

    saboteur = asyncio.create_task(cancel_the_first_run())
    await asyncio.wait_for(_worker(client, queue).run(), timeout=20)
    await saboteur
    record = await queue.get("behind-1")
    assert record is not None and record.result is not None
    assert record.result.status == "completed", record.result
    assert record.progress.run_seq == 1
    runs = await client.list_runs(record.result.conversation_id or "").to_list()
    assert sorted(r.status for r in runs) == ["cancelled", "completed"]


async def test_a_usage_limit_in_the_worker_config_cancels_the_job_naming_it(
    client: AssistantsClient, assistant_id: str, tmp_path: Path
) -> None:
    """[policy.usage_limits] of worker.toml reaches the job's run: a job whose run reached
    max_requests ends cancelled with the limit as its error, its tool never runs, and the
    [prices] table reaches the run policy."""
    config = tmp_path / "worker.toml"
    config.write_text(
        "[policy.usage_limits]\nmax_requests = 1\n\n"
        '[prices."gpt-4o"]\ninput_per_million = 2.5\noutput_per_million = 10.0\n',
        encoding="utf-8",
    )
    settings = load_worker_settings(config)
    policy = RunPolicy.from_settings(settings.runtime_settings())
    assert policy.usage_limits == UsageLimits(max_requests=1)
    assert policy.prices == {"gpt-4o": ModelPrice(2.5, 10.0)}
    shouted: list[str] = []
    tools = ToolRegistry()

    @tools.tool
    async def shout(text: str) -> str:
        """Upper-case text.

        Args:
            text: what to shout.
        """
        shouted.append(text)
        return text.upper()

    queue = MemoryQueue()
    job = Job(
        id="limited-1",
        assistant_id=assistant_id,
        messages=(Message(content='/call shout {"text": "hi"}'),),
    )
    await queue.submit(job)
    orchestrator = Orchestrator(client, tools, policy=policy)
    options = WorkerOptions(consumer="svc-1", burst=True, claim_wait_s=0.05, heartbeat_s=0.03)
    await asyncio.wait_for(Worker(queue, RunExecutor(orchestrator.session()), options).run(), 20)

    record = await queue.result("limited-1", timeout_s=1)
    assert record is not None and record.result is not None
    assert record.result.status == "cancelled"
    assert record.result.error == "max_requests (1) reached: 1 sent"
    assert shouted == [] and record.result.tool_calls == ()
    run = await client.retrieve_run(record.result.conversation_id or "", record.result.run_id or "")
    assert run.status == "cancelled"
