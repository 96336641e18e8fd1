"""Only registered tools ever run, whatever names the model asks for."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from runtime import AssistantsClient, Orchestrator, RunPolicy
from runtime.emulator import Emulator
from tools import ToolCall, ToolDispatcher, ToolRegistry, default_registry

EXECUTED: Counter[str] = Counter()

# Names a hostile or confused model might try: builtins, dotted paths to modules and
# attributes, a real function of this module that is not registered, a tool of the process-wide
# default registry, near-misses of the registered name.
HOSTILE_NAMES = [
    "eval",
    "exec",
    "__import__",
    "os.system",
    "subprocess.run",
    "print",
    "not_registered",
    "echo.__globals__",
    "echo.__call__",
    "Echo",
    "echo ",
    "global_default_tool",
    "calculate",
]


def not_registered() -> str:
    """A function that exists in this module but is never registered."""
    EXECUTED["not_registered"] += 1
    return "ran"


def global_default_tool() -> str:
    """Registered on the process-wide default registry only."""
    EXECUTED["global_default_tool"] += 1
    return "ran"


@pytest.fixture
def registry() -> ToolRegistry:
    EXECUTED.clear()
    reg = ToolRegistry()

    @reg.tool
    def echo(text: str) -> str:
        """Echo text."""
        EXECUTED["echo"] += 1
        return text

    if default_registry.get("global_default_tool") is None:
        default_registry.register(global_default_tool)
    return reg


async def test_model_cannot_call_unregistered_names(registry: ToolRegistry) -> None:
    """A run asking for builtins, dotted paths and unregistered functions executes only echo."""
    lines = [f"/call {name} {{}}" for name in HOSTILE_NAMES if " " not in name]
    lines.append('/call echo {"text": "hi"}')
    async with (
        Emulator() as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-tools-only-000000") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o")
        orch = Orchestrator(client, registry, policy=RunPolicy(poll_interval_s=0.05))
        result = await orch.create_thread_and_run(
            assistant.id, messages=[{"role": "user", "content": "\n".join(lines)}]
        )
    assert result.status == "completed"
    assert dict(EXECUTED) == {"echo": 1}
    by_name = {call.name: call for call in result.tool_calls}
    assert by_name["echo"].output == "hi" and not by_name["echo"].is_error
    unknown = [call for call in result.tool_calls if call.name != "echo"]
    assert len(unknown) == len(lines) - 1
    for call in unknown:
        assert call.error_type == "unknown_tool", call
        assert json.loads(call.output)["error"]["type"] == "unknown_tool"
    assert "echo returned: hi" in result.text


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_dispatcher_resolves_names_only_in_its_registry(
    registry: ToolRegistry, name: str
) -> None:
    """The dispatcher looks names up in its own registry only: no builtins, modules, attributes."""
    assert registry.get(name) is None
    dispatcher = ToolDispatcher(registry)
    (result,) = await dispatcher.run_batch([ToolCall("call_1", name, "{}")])
    await dispatcher.aclose()
    assert result.error_type == "unknown_tool"
    assert sum(EXECUTED.values()) == 0
