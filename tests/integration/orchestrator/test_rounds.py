"""The run loop against the emulator: concurrent tools, one submit, results, bounds."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from runtime import EventHandler, Orchestrator, RunFailedError, RunPolicy
from runtime.emulator import Emulator
from tools import ToolCall, ToolCallResult

from .conftest import FAST_POLICY, ToolCounter


def say(*lines: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "\n".join(lines)}]


def call(name: str, **args: Any) -> str:
    return f"/call {name} {json.dumps(args)}"


async def test_eight_slow_tools_run_in_one_round_with_one_submit(
    orch: Orchestrator, assistant_id: str, emu: Emulator, counter: ToolCounter
) -> None:
    """8 sync tools of 0.5 s finish in one round of about 0.5 s, submitted in one request."""
    lines = [call("slow_sync", seconds=0.5, label=f"t{i}") for i in range(8)]
    started = time.perf_counter()
    result = await orch.create_thread_and_run(assistant_id, messages=say(*lines))
    elapsed = time.perf_counter() - started
    assert result.status == "completed"
    assert result.rounds == 1
    assert len(result.tool_calls) == 8
    assert all(not r.is_error for r in result.tool_calls)
    assert elapsed < 1.5, f"8 x 0.5 s tools took {elapsed:.2f} s: not concurrent"
    assert emu.stats["tool_output_submissions"] == 1
    for i in range(8):
        assert f"slept 0.5 (t{i})" in result.text
    assert sum(counter.calls.values()) == 8


async def test_result_carries_text_usage_messages_and_calls(
    orch: Orchestrator, assistant_id: str
) -> None:
    """A tool round's RunResult has the quoted outputs, neutral usage and call details."""
    result = await orch.create_thread_and_run(
        assistant_id, messages=say(call("get_weather", location="Paris"))
    )
    assert result.ok
    assert "Paris: 21c" in result.text
    assert result.usage is not None and result.usage.total_tokens > 0
    assert result.usage.input_tokens + result.usage.output_tokens == result.usage.total_tokens
    (tool_call,) = result.tool_calls
    assert tool_call.name == "get_weather"
    assert json.loads(tool_call.arguments) == {"location": "Paris"}
    assert tool_call.output == "Paris: 21c"
    assert tool_call.seconds >= 0.04
    assert result.run is not None
    assert result.run.id == result.run_id and result.thread_id == result.run.thread_id


async def test_text_only_run_streams_the_reply(orch: Orchestrator, assistant_id: str) -> None:
    """Without tool calls the run completes in zero rounds with the model's text."""
    result = await orch.create_thread_and_run(assistant_id, messages=say("hello there"))
    assert result.status == "completed"
    assert result.rounds == 0
    assert result.text == "You said: hello there"


async def test_bad_arguments_unknown_tool_and_exceptions_become_error_outputs(
    orch: Orchestrator, assistant_id: str, emu: Emulator
) -> None:
    """Invalid JSON, schema violations, unknown tools and exceptions are outputs, not crashes."""
    lines = [
        "/call get_weather {not json",
        call("get_weather", unit="c"),
        call("no_such_tool", x=1),
        call("explode", reason="test"),
        call("get_weather", location="Rome"),
    ]
    result = await orch.create_thread_and_run(assistant_id, messages=say(*lines))
    assert result.status == "completed"
    errors = [r for r in result.tool_calls if r.is_error]
    assert len(errors) == 4
    for bad in errors:
        body = json.loads(bad.output)
        assert set(body["error"]) >= {"type", "message"}
    assert "Rome: 21c" in result.text
    assert emu.stats["tool_output_submissions"] == 1


async def test_run_on_existing_thread_passes_parameters_through(
    orch: Orchestrator, client: Any, assistant_id: str, emu: Emulator
) -> None:
    """run() passes instructions, metadata and limits to the API and keeps our idempotency key."""
    thread = await client.create_thread(messages=say("hello"))
    result = await orch.run(
        thread.id,
        assistant_id,
        instructions="Be brief.",
        metadata={"team": "qa"},
        max_completion_tokens=500,
        temperature=0.5,
    )
    assert result.ok
    server_run = emu.get_run(result.run_id)
    assert server_run["instructions"] == "Be brief."
    assert server_run["metadata"]["team"] == "qa"
    assert "runtime_idempotency_key" in server_run["metadata"]
    assert server_run["max_completion_tokens"] == 500
    assert server_run["temperature"] == 0.5
    assert [t["function"]["name"] for t in server_run["tools"]] == [
        t["function"]["name"] for t in orch.registry.definitions()
    ]


async def test_incomplete_run_is_a_result_with_its_reason(
    orch: Orchestrator, assistant_id: str
) -> None:
    """max_completion_tokens ends the run incomplete; raise_on_failure turns it into an error."""
    words = "hello " * 40
    result = await orch.create_thread_and_run(
        assistant_id, messages=say(words), max_completion_tokens=5
    )
    assert result.status == "incomplete"
    assert result.incomplete_reason == "max_completion_tokens"
    with pytest.raises(RunFailedError) as info:
        result.raise_for_status()
    assert info.value.status == "incomplete"


class Recorder(EventHandler):
    """Records the callbacks a run triggers, in order."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.text: list[str] = []

    async def on_run_status(self, run: Any) -> None:
        self.seen.append(f"run:{run.status}")

    async def on_text_delta(self, delta: str, snapshot: Any) -> None:
        self.text.append(delta)

    async def on_tool_call_started(self, call: ToolCall) -> None:
        self.seen.append(f"start:{call.name}")

    async def on_tool_call_finished(self, result: ToolCallResult) -> None:
        self.seen.append(f"finish:{result.name}:{'error' if result.is_error else 'ok'}")


async def test_handler_sees_all_rounds_as_one_conversation(
    orch: Orchestrator, assistant_id: str
) -> None:
    """One handler sees statuses, tool starts/finishes and the reply across both streams."""
    handler = Recorder()
    result = await orch.create_thread_and_run(
        assistant_id, messages=say(call("get_weather", location="Oslo")), handler=handler
    )
    assert result.ok
    seen = handler.seen
    assert seen.index("run:requires_action") < seen.index("start:get_weather")
    assert seen.index("start:get_weather") < seen.index("finish:get_weather:ok")
    assert seen.index("finish:get_weather:ok") < seen.index("run:completed")
    assert "".join(handler.text) == result.text


async def test_max_tool_rounds_cancels_the_run_with_a_reason(
    client: Any, registry: Any, assistant_id: str, emu: Emulator, tmp_path: Path
) -> None:
    """A model that keeps calling tools is stopped after max_tool_rounds, run cancelled."""
    scenario = tmp_path / "loop.toml"
    scenario.write_text(
        'name = "loop"\nthen = "repeat"\n[[turns]]\ntype = "tool_calls"\n'
        'calls = [{ name = "get_weather", arguments = { location = "Loop" } }]\n'
    )
    emu.set_scenario(scenario)
    orch = Orchestrator(
        client,
        registry,
        policy=RunPolicy(max_tool_rounds=3, poll_interval_s=0.05, max_poll_interval_s=0.1),
    )
    result = await orch.create_thread_and_run(assistant_id, messages=say("go"))
    assert result.status == "cancelled"
    assert result.reason is not None and "max_tool_rounds" in result.reason
    assert result.rounds == 3  # rounds executed; the fourth was refused
    assert result.stopped_by == "max_tool_rounds"
    assert emu.get_run(result.run_id)["status"] == "cancelled"


async def test_failed_run_is_a_result_and_rerun_policy_retries_it(
    client: Any, registry: Any, assistant_id: str, emu: Emulator, tmp_path: Path
) -> None:
    """A run failing with server_error is a result; with rerun_on_server_error a new run succeeds."""
    scenario = tmp_path / "flaky.toml"
    scenario.write_text(
        'name = "flaky"\n[[turns]]\ntype = "fail"\ncode = "server_error"\nmessage = "down"\n'
    )
    emu.set_scenario(scenario)
    plain = Orchestrator(client, registry, policy=FAST_POLICY)
    failed = await plain.create_thread_and_run(assistant_id, messages=say("hi"))
    assert failed.status == "failed"
    assert failed.last_error.code == "server_error"

    emu.set_scenario(scenario)
    policy = RunPolicy(rerun_on_server_error=True, max_reruns=1, poll_interval_s=0.05)
    rerun = Orchestrator(client, registry, policy=policy)
    result = await rerun.create_thread_and_run(assistant_id, messages=say("hi"))
    assert result.status == "completed"
    assert len(emu.runs(result.thread_id)) == 2


async def test_resume_adopts_a_run_and_never_reexecutes_known_results(
    orch: Orchestrator, client: Any, assistant_id: str, counter: ToolCounter
) -> None:
    """resume() drives an existing run; outputs passed as known results are not recomputed."""
    thread = await client.create_thread(
        messages=say(call("get_weather", location="Lima"), call("get_weather", location="Kyiv"))
    )
    run = await client.create_run(thread.id, assistant_id)
    while run.status != "requires_action":
        await asyncio.sleep(0.02)
        run = await client.retrieve_run(thread.id, run.id)
    lima = next(c for c in run.required_tool_calls if "Lima" in c.function.arguments)
    known = ToolCallResult(
        lima.id, "get_weather", lima.function.arguments, "Lima: cached", False, 0.0
    )
    result = await orch.resume(thread.id, run.id, known_results=[known])
    assert result.ok
    assert "Lima: cached" in result.text and "Kyiv: 21c" in result.text
    assert counter.calls["get_weather:Lima"] == 0
    assert counter.calls["get_weather:Kyiv"] == 1


async def test_azure_style_client_drives_a_tool_round(registry: Any, emu: Emulator) -> None:
    """The same loop works through Azure-style routes (api-key header, api-version)."""
    from runtime import AssistantsClient

    async with AssistantsClient(
        azure_endpoint=emu.azure_endpoint,
        api_key="azure-key-123456",
        api_version="2024-08-01-preview",
    ) as azure:
        assistant = await azure.create_assistant(model="gpt-4o")
        orch = Orchestrator(azure, registry, policy=FAST_POLICY)
        result = await orch.create_thread_and_run(
            assistant.id, messages=say(call("get_weather", location="Bern"))
        )
    assert result.ok and "Bern: 21c" in result.text
    assert any(r["path"].startswith("/openai/") for r in emu.requests)
