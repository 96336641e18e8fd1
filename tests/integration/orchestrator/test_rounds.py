"""Assistants-only run paths (no Responses analogue): a run on an existing thread with its
parameters, and the Azure-style routes. The loop's behaviours are tested once for both
protocols in tests/integration/loop/."""

from __future__ import annotations

import json
from typing import Any

from runtime import Orchestrator
from runtime.emulator import Emulator

from .conftest import FAST_POLICY


def say(*lines: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "\n".join(lines)}]


def call(name: str, **args: Any) -> str:
    return f"/call {name} {json.dumps(args)}"


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


async def test_typed_assistants_hooks_fire_and_the_responses_one_never(
    orch: Orchestrator, assistant_id: str
) -> None:
    """The typed Assistants hook on_run_status gets the Run itself across both streams of a
    tool round, and the Responses-shaped hook never fires."""
    from runtime.assistants import AssistantsEventHandler
    from runtime.assistants.models import Run

    statuses: list[str] = []

    class Spy(AssistantsEventHandler):
        async def on_run_status(self, run: Run) -> None:
            assert isinstance(run, Run)
            statuses.append(run.status or "")

        async def on_response_status(self, response: Any) -> None:
            raise AssertionError("the Responses hook must not fire on Assistants")

    result = await orch.create_thread_and_run(
        assistant_id, messages=say(call("get_weather", location="Oslo")), handler=Spy()
    )
    assert result.ok
    assert statuses.index("requires_action") < statuses.index("completed")
    assert statuses[-1] == "completed"
