"""Cancellation: a cancelled task cancels its tools and the server run, then re-raises."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from runtime import AssistantsClient, EventHandler, Orchestrator
from runtime.emulator import Emulator
from tools import ToolCall

from .conftest import FAST_POLICY


def say(*lines: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "\n".join(lines)}]


def call(name: str, **args: Any) -> str:
    return f"/call {name} {json.dumps(args)}"


class Signals(EventHandler):
    """Sets events when a run reaches points where the test cancels it."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.thread_id: str | None = None
        self.streaming = asyncio.Event()
        self.tools_running = asyncio.Event()

    async def on_run_status(self, run: Any) -> None:
        self.run_id, self.thread_id = run.id, run.thread_id

    async def on_text_delta(self, delta: str, snapshot: Any) -> None:
        self.streaming.set()

    async def on_tool_call_started(self, call: ToolCall) -> None:
        self.tools_running.set()


async def _cancel_when(task: asyncio.Task[Any], event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancel_while_streaming_cancels_the_server_run(registry: Any) -> None:
    """Cancelling during streamed text re-raises CancelledError and the run ends cancelled."""
    async with (
        Emulator(delta_delay_s=0.05) as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-cancel-00000") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o")
        orch = Orchestrator(client, registry, policy=FAST_POLICY)
        signals = Signals()
        words = " ".join(f"word{i}" for i in range(200))
        task = asyncio.create_task(
            orch.create_thread_and_run(assistant.id, messages=say(words), handler=signals)
        )
        await _cancel_when(task, signals.streaming)
        assert signals.run_id is not None
        assert emu.get_run(signals.run_id)["status"] == "cancelled"


async def test_cancel_while_tools_run_cancels_tools_and_run(
    orch: Orchestrator, assistant_id: str, emu: Emulator
) -> None:
    """Cancelling during tool execution stops the tools; nothing is submitted; run cancelled."""
    signals = Signals()
    task = asyncio.create_task(
        orch.create_thread_and_run(
            assistant_id, messages=say(call("slow_async", seconds=30)), handler=signals
        )
    )
    await _cancel_when(task, signals.tools_running)
    assert signals.run_id is not None
    assert emu.get_run(signals.run_id)["status"] == "cancelled"
    assert emu.stats.get("tool_output_submissions", 0) == 0


async def test_cancel_while_submitting_cancels_the_run(
    orch: Orchestrator, assistant_id: str, emu: Emulator
) -> None:
    """Cancelling while the submit request hangs (slow first byte) still ends the run cancelled."""
    emu.inject("slow", method="POST", path=r"/submit_tool_outputs$", ms=3000)
    signals = Signals()
    task = asyncio.create_task(
        orch.create_thread_and_run(
            assistant_id, messages=say(call("get_weather", location="Oslo")), handler=signals
        )
    )
    await asyncio.wait_for(signals.tools_running.wait(), 10)
    await asyncio.sleep(0.3)  # the tool is done and the submit is in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert signals.run_id is not None
    assert emu.get_run(signals.run_id)["status"] in {"cancelled", "completed"}
    # The slow submit may have been accepted before the cancel: then the run completed once.
    assert emu.stats.get("tool_output_submissions", 0) <= 1


async def test_cancel_from_elsewhere_returns_a_cancelled_result(
    orch: Orchestrator, assistant_id: str, emu: Emulator
) -> None:
    """orchestrator.cancel(run_id) stops a run driven by another task, which returns cancelled."""
    signals = Signals()
    task = asyncio.create_task(
        orch.create_thread_and_run(
            assistant_id, messages=say(call("slow_async", seconds=30)), handler=signals
        )
    )
    await asyncio.wait_for(signals.tools_running.wait(), 10)
    assert signals.run_id is not None
    await orch.cancel(signals.run_id)
    result = await asyncio.wait_for(task, 10)
    assert result.status == "cancelled"
    assert result.reason == "cancelled by request"
    assert emu.get_run(signals.run_id)["status"] == "cancelled"


async def test_handler_exception_is_raised_and_cancels_the_run(
    orch: Orchestrator, assistant_id: str, emu: Emulator
) -> None:
    """A failing callback surfaces as HandlerError and the server run is cancelled."""
    from runtime import HandlerError

    class Broken(Signals):
        async def on_tool_call_started(self, call: ToolCall) -> None:
            raise ValueError("handler bug")

    handler = Broken()
    with pytest.raises((HandlerError, ValueError)):
        await orch.create_thread_and_run(
            assistant_id, messages=say(call("get_weather", location="Oslo")), handler=handler
        )
    assert handler.run_id is not None
    assert emu.get_run(handler.run_id)["status"] == "cancelled"
