"""Retry, stream loss, expiry and busy-thread policies against injected faults."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from runtime import AssistantsClient, Orchestrator, RunPolicy, ThreadBusyError
from runtime.emulator import Emulator

from .conftest import FAST_POLICY, ToolCounter

CREATE = r"/threads/[^/]+/runs$"
SUBMIT = r"/submit_tool_outputs$"


def say(*lines: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "\n".join(lines)}]


def call(name: str, **args: Any) -> str:
    return f"/call {name} {json.dumps(args)}"


TWO_CITIES = say(call("get_weather", location="Paris"), call("get_weather", location="Tokyo"))


def inject(emu: Emulator, kind: str, path: str) -> None:
    params = {"retry_after_ms": 20} if kind in ("429", "503") else {}
    emu.inject(kind, method="POST", path=path, **params)


def assert_one_run_each_tool_once(emu: Emulator, result: Any, counter: ToolCounter) -> None:
    assert result.status == "completed", result
    assert len(emu.runs(result.thread_id)) == 1, "a retry created a second run"
    assert counter.calls["get_weather:Paris"] == 1
    assert counter.calls["get_weather:Tokyo"] == 1
    assert "Paris: 21c" in result.text and "Tokyo: 21c" in result.text


@pytest.mark.parametrize("where", [CREATE, SUBMIT])
@pytest.mark.parametrize("after", [1, 4, 7])
async def test_stream_cut_is_recovered_by_polling(
    orch: Orchestrator,
    assistant_id: str,
    emu: Emulator,
    counter: ToolCounter,
    where: str,
    after: int,
) -> None:
    """A stream cut after N events (on create or submit) is recovered; text comes from the run."""
    emu.inject("cut", method="POST", path=where, after=after)
    result = await orch.create_thread_and_run(assistant_id, messages=TWO_CITIES)
    assert_one_run_each_tool_once(emu, result, counter)
    assert result.recoveries == 1
    assert emu.stats["tool_output_submissions"] == 1


@pytest.mark.parametrize("kind", ["429", "503", "500", "reset", "reset_after", "500_after"])
async def test_faults_on_create_never_make_two_runs(
    orch: Orchestrator, assistant_id: str, emu: Emulator, counter: ToolCounter, kind: str
) -> None:
    """429/5xx/reset on create (before or after the server acted) still give exactly one run."""
    inject(emu, kind, CREATE)
    result = await orch.create_thread_and_run(assistant_id, messages=TWO_CITIES)
    assert_one_run_each_tool_once(emu, result, counter)
    assert emu.stats["faults"][kind] == 1


@pytest.mark.parametrize("kind", ["429", "503", "500", "reset", "reset_after", "500_after"])
async def test_faults_on_submit_never_submit_twice(
    orch: Orchestrator, assistant_id: str, emu: Emulator, counter: ToolCounter, kind: str
) -> None:
    """429/5xx/reset on submit: outputs are accepted exactly once, tools run once."""
    inject(emu, kind, SUBMIT)
    result = await orch.create_thread_and_run(assistant_id, messages=TWO_CITIES)
    assert_one_run_each_tool_once(emu, result, counter)
    assert emu.stats["tool_output_submissions"] == 1
    assert emu.stats["faults"][kind] == 1


async def test_429_retry_after_is_honoured(
    orch: Orchestrator, assistant_id: str, emu: Emulator
) -> None:
    """The client waits what retry-after-ms asks before retrying a rejected create."""
    from runtime.retry import set_testing

    set_testing(False)
    emu.inject("429", method="POST", path=CREATE, retry_after_ms=300)
    started = time.perf_counter()
    result = await orch.create_thread_and_run(assistant_id, messages=say("hi"))
    assert result.ok
    assert time.perf_counter() - started >= 0.3


async def test_idle_stream_is_abandoned_and_recovered(
    client: AssistantsClient,
    registry: Any,
    assistant_id: str,
    emu: Emulator,
    counter: ToolCounter,
) -> None:
    """A stream that stalls without closing hits the idle timeout and is recovered by polling."""
    async with AssistantsClient(
        base_url=emu.base_url, api_key="sk-idle-test-000", stream_idle_timeout_s=0.5
    ) as impatient:
        orch = Orchestrator(impatient, registry, policy=FAST_POLICY)
        emu.inject("stall", method="POST", path=CREATE, after=3)
        result = await orch.create_thread_and_run(assistant_id, messages=TWO_CITIES)
    assert_one_run_each_tool_once(emu, result, counter)
    assert result.recoveries == 1


async def test_tool_slower_than_the_deadline_gets_a_timeout_output(
    registry: Any, counter: ToolCounter
) -> None:
    """Tools still running at expires_at - margin get a timeout output; the batch is submitted."""
    async with (
        Emulator(run_ttl_s=3.0) as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-deadline-0000") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o")
        orch = Orchestrator(
            client, registry, policy=RunPolicy(expiry_margin_s=1.5, poll_interval_s=0.05)
        )
        started = time.perf_counter()
        result = await orch.create_thread_and_run(
            assistant.id,
            messages=say(
                call("slow_async", seconds=30, label="late"), call("get_weather", location="Oslo")
            ),
        )
        elapsed = time.perf_counter() - started
    assert result.status == "completed"
    late = next(r for r in result.tool_calls if r.name == "slow_async")
    assert late.is_error and json.loads(late.output)["error"]["type"] == "timeout"
    assert "Oslo: 21c" in result.text
    assert elapsed < 3.0, "the batch was not submitted before expiry"


async def test_expired_run_returns_expired_promptly(registry: Any) -> None:
    """A run whose outputs cannot be submitted before expires_at ends with status expired."""
    async with (
        Emulator(run_ttl_s=1.0) as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-expiry-00000") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o")
        orch = Orchestrator(
            client, registry, policy=RunPolicy(expiry_margin_s=-1.0, poll_interval_s=0.05)
        )
        started = time.perf_counter()
        result = await orch.create_thread_and_run(
            assistant.id, messages=say(call("slow_async", seconds=30))
        )
        elapsed = time.perf_counter() - started
    assert result.status == "expired"
    assert elapsed < 5.0


async def _park_run(client: AssistantsClient, assistant_id: str) -> tuple[str, str]:
    """Create a run left waiting in requires_action; return (thread_id, run_id)."""
    thread = await client.create_thread(messages=say(call("get_weather", location="Busy")))
    run = await client.create_run(thread.id, assistant_id)
    while run.status != "requires_action":
        await asyncio.sleep(0.02)
        run = await client.retrieve_run(thread.id, run.id)
    return thread.id, run.id


async def test_busy_thread_fail_policy_raises(
    client: AssistantsClient, registry: Any, assistant_id: str
) -> None:
    """busy_thread="fail" raises ThreadBusyError naming the active run."""
    thread_id, other = await _park_run(client, assistant_id)
    orch = Orchestrator(client, registry, policy=RunPolicy(busy_thread="fail"))
    with pytest.raises(ThreadBusyError) as info:
        await orch.run(thread_id, assistant_id)
    assert info.value.active_run_id == other


async def test_busy_thread_cancel_policy_cancels_the_other_run(
    client: AssistantsClient, registry: Any, assistant_id: str, emu: Emulator
) -> None:
    """busy_thread="cancel" cancels the active run, then runs ours."""
    thread_id, other = await _park_run(client, assistant_id)
    orch = Orchestrator(
        client, registry, policy=RunPolicy(busy_thread="cancel", poll_interval_s=0.05)
    )
    result = await orch.run(thread_id, assistant_id)
    assert result.ok
    assert emu.get_run(other)["status"] == "cancelled"


async def test_busy_thread_wait_policy_waits_for_the_other_run(
    client: AssistantsClient, registry: Any, assistant_id: str, emu: Emulator
) -> None:
    """busy_thread="wait" polls until the active run ends, then runs ours."""
    thread_id, other = await _park_run(client, assistant_id)

    async def finish_other() -> None:
        await asyncio.sleep(0.3)
        run = await client.retrieve_run(thread_id, other)
        outputs = [{"tool_call_id": c.id, "output": "done"} for c in run.required_tool_calls]
        await client.submit_tool_outputs(thread_id, other, outputs)

    orch = Orchestrator(
        client, registry, policy=RunPolicy(busy_thread="wait", poll_interval_s=0.05, busy_wait_s=10)
    )
    finisher = asyncio.create_task(finish_other())
    result = await orch.run(thread_id, assistant_id)
    await finisher
    assert result.ok
    assert emu.get_run(other)["status"] == "completed"


@pytest.mark.parametrize("kind", ["500", "500_after", "reset_after", "503"])
async def test_faults_on_thread_creation_are_retried(
    orch: Orchestrator, assistant_id: str, emu: Emulator, counter: ToolCounter, kind: str
) -> None:
    """create_thread_and_run survives a failed thread creation (a stray thread has no run)."""
    inject(emu, kind, r"/threads$")
    result = await orch.create_thread_and_run(assistant_id, messages=TWO_CITIES)
    assert_one_run_each_tool_once(emu, result, counter)
