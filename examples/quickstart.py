"""Quickstart: one run with a local Python tool, against the embedded emulator.

The emulator's scripted model turns the ``/call`` line into a tool call; the orchestrator
runs the tool, submits its output and returns the final answer. For a real server, replace
the Emulator with ``AssistantsClient(base_url=..., api_key=...)`` and an assistant id.
"""

import asyncio

from runtime import AssistantsClient, Orchestrator
from runtime.emulator import Emulator
from runtime.logging import configure_logging
from tools import ToolRegistry

registry = ToolRegistry()


@registry.tool
async def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny, 21 C in {city}"


async def main() -> None:
    async with (
        Emulator() as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-local") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o", tools=registry.definitions())
        result = await Orchestrator(client, registry).create_thread_and_run(
            assistant.id,
            messages=[{"role": "user", "content": '/call get_weather {"city": "Paris"}'}],
        )
        print(result.status, "|", result.text)


if __name__ == "__main__":
    configure_logging("WARNING")  # the runtime logs every tool call and run at INFO
    asyncio.run(main())
