"""Assistants-only fault paths: retry-after on create, the busy-thread policy and faults on
thread creation. Responses have no analogue (no thread holds an active run; a conversation
in use is not modelled by the emulator). Stream loss, expiry, deadlines and faults on
create/submit are tested once for both protocols in tests/integration/loop/."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from runtime import AssistantsClient, Orchestrator, RunPolicy, ThreadBusyError
from runtime.emulator import Emulator

from .conftest import ToolCounter

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
