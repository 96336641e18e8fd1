"""An embedding host survives tools that raise SystemExit / KeyboardInterrupt or stop the
loop: the run gets error outputs and completes, and a concurrent run is untouched.

The scenario runs on an event loop of its own (``asyncio.Runner``) so that a regression
shows as a failed test, not as a dead test session.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from runtime import AssistantsClient, Orchestrator, RunResult
from runtime.emulator import Emulator
from runtime.retry import set_testing
from tools import ToolRegistry

from .conftest import FAST_POLICY

registry = ToolRegistry()


@registry.tool
def quit_sync() -> str:
    """sys.exit() in a pool thread."""
    raise SystemExit(1)


@registry.tool
async def quit_async() -> str:
    """sys.exit() on the loop."""
    raise SystemExit(2)


@registry.tool
def interrupt_sync() -> str:
    """KeyboardInterrupt in a pool thread."""
    raise KeyboardInterrupt


@registry.tool
async def interrupt_async() -> str:
    """KeyboardInterrupt on the loop."""
    raise KeyboardInterrupt


@registry.tool
async def halt_loop() -> str:
    """Stop the host's event loop."""
    asyncio.get_running_loop().stop()
    await asyncio.sleep(0.01)
    return "loop still running"


@registry.tool
async def weather(city: str) -> str:
    """A well-behaved tool, slow enough to overlap the hostile run."""
    await asyncio.sleep(0.2)
    return f"{city}: sunny"


def call(name: str, **args: Any) -> str:
    return f"/call {name} {json.dumps(args)}"


async def scenario() -> tuple[RunResult, RunResult]:
    hostile = "\n".join(
        call(name)
        for name in ("quit_sync", "quit_async", "interrupt_sync", "interrupt_async", "halt_loop")
    )
    async with (
        Emulator(seed=1) as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-test-contain-0000") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o", tools=registry.definitions())
        orch = Orchestrator(client, registry, policy=FAST_POLICY)
        runs = await asyncio.gather(
            orch.create_thread_and_run(
                assistant.id, messages=[{"role": "user", "content": hostile}]
            ),
            orch.create_thread_and_run(
                assistant.id,
                messages=[{"role": "user", "content": call("weather", city="Oslo")}],
            ),
        )
        await orch.aclose()
    return runs[0], runs[1]


def test_hostile_tools_end_their_calls_not_the_host() -> None:
    """Each hostile call is an error output of its own type, the run completes with them,
    and a concurrent run on the same loop completes normally."""
    set_testing(True)
    try:
        with asyncio.Runner() as runner:
            try:
                hostile, friendly = runner.run(scenario())
            except BaseException as exc:
                pytest.fail(f"the host died: {type(exc).__name__}: {exc}")
    finally:
        set_testing(False)
    assert hostile.status == "completed" and friendly.status == "completed"
    types = {r.name: r.error_type for r in hostile.tool_calls}
    assert types == {
        "quit_sync": "tool_exit",
        "quit_async": "tool_exit",
        "interrupt_sync": "interrupted",
        "interrupt_async": "interrupted",
        "halt_loop": "loop_stop",
    }
    assert all(json.loads(r.output)["error"]["type"] == r.error_type for r in hostile.tool_calls)
    assert [r.output for r in friendly.tool_calls] == ["Oslo: sunny"]
