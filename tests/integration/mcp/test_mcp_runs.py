"""End to end: a scripted model on the emulator calls an MCP server's tool, on both protocols."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

import runtime.retry
from runtime import AssistantsClient, Orchestrator, RunPolicy
from runtime.emulator import Emulator
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from tools import ToolRegistry
from tools.mcp import MCPToolSource

from .conftest import stdio_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAST = RunPolicy(poll_interval_s=0.02, max_poll_interval_s=0.05, cancel_wait_s=2.0)
KEY = "sk-test-mcp-runs"


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    runtime.retry.set_testing(True)
    yield
    runtime.retry.set_testing(False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def registry() -> AsyncIterator[ToolRegistry]:
    registry = ToolRegistry()

    @registry.tool
    def shout(text: str) -> str:
        """A local tool next to the MCP ones."""
        return text.upper()

    async with MCPToolSource(stdio_server("m"), registry):
        yield registry


@pytest_asyncio.fixture(loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(seed=3) as emulator:
        yield emulator


def say(*lines: str) -> str:
    return "\n".join(lines)


async def test_assistants_run_calls_an_mcp_tool(emu: Emulator, registry: ToolRegistry) -> None:
    """Orchestrator on the Assistants protocol: MCP and local calls in one round, outputs sent."""
    async with AssistantsClient(base_url=emu.base_url, api_key=KEY) as client:
        assistant = await client.create_assistant(model="gpt-4o", tools=registry.definitions())
        result = await Orchestrator(client, registry, policy=FAST).create_thread_and_run(
            assistant.id,
            messages=[
                {
                    "role": "user",
                    "content": say(
                        '/call m__add {"a": 40, "b": 2}',
                        '/call m__fail {"message": "no such file"}',
                        '/call shout {"text": "hi"}',
                    ),
                }
            ],
        )
    assert result.status == "completed" and result.rounds == 1
    add, fail, shout = result.tool_calls
    assert (add.output, shout.output) == ("42", "HI")
    assert fail.error_type == "tool_error"
    assert "no such file" in json.loads(fail.output)["error"]["message"]
    assert "42" in result.text


async def test_responses_run_calls_an_mcp_tool(emu: Emulator, registry: ToolRegistry) -> None:
    """ResponsesOrchestrator: the MCP tool's definition goes upstream and its output comes back."""
    async with ResponsesClient(base_url=emu.base_url, api_key=KEY) as client:
        result = await ResponsesOrchestrator(client, registry, policy=FAST).run(
            say('/call m__echo {"text": "ab", "times": 2}', "/call m__picture {}")
        )
    assert result.status == "completed" and result.rounds == 1
    echo, picture = result.tool_calls
    assert echo.output == "abab"
    assert json.loads(picture.output)["type"] == "image"
    first = next(r["json"] for r in emu.requests if r["path"] == "/v1/responses")
    sent = {tool["name"] for tool in first["tools"]}
    assert {"m__echo", "m__picture", "shout"} <= sent
