"""A terminal streaming handler: print text as it streams and every tool call as it happens.

Subclass :class:`runtime.EventHandler` and override the callbacks you need (all async):
the model writing a tool call (``on_tool_call_created`` / ``on_tool_call_done``), the runtime
executing it (``on_tool_call_started`` / ``on_tool_call_finished``), text deltas and run
status changes. One handler sees every round of a run as one conversation. Runs against the
embedded emulator with a slow text stream so the deltas are visible.
"""

from __future__ import annotations

import asyncio
import sys

from runtime import AssistantsClient, EventHandler, Orchestrator
from runtime.assistants.models import Message, Run
from runtime.emulator import Emulator
from runtime.logging import configure_logging
from runtime.protocol.snapshots import TextSnapshot, ToolCallSnapshot
from tools import ToolCall, ToolCallResult, ToolRegistry
from tools.builtin import register_builtins

registry = ToolRegistry()
register_builtins(registry)  # get_current_time, convert_time, calculate


@registry.tool(timeout_s=5.0)
async def get_weather(city: str) -> str:
    """Current weather in a city."""
    await asyncio.sleep(0.3)  # a slow API
    return f"light rain, 12 C in {city}"


class TerminalHandler(EventHandler):
    """Writes the run to stdout as it happens."""

    def __init__(self) -> None:
        self.deltas = 0

    def _say(self, text: str) -> None:
        print(text, flush=True)

    async def on_run_status(self, run: Run) -> None:
        self._say(f"[run {run.status}]")

    async def on_tool_call_done(self, snapshot: ToolCallSnapshot) -> None:
        self._say(f"[model wants] {snapshot.name}({snapshot.arguments})")

    async def on_tool_call_started(self, call: ToolCall) -> None:
        self._say(f"[tool start] {call.name}")

    async def on_tool_call_finished(self, result: ToolCallResult) -> None:
        state = "error" if result.is_error else "ok"
        self._say(f"[tool {state}] {result.name} in {result.seconds:.2f}s -> {result.output}")

    async def on_message_created(self, message: Message) -> None:
        sys.stdout.write("[assistant] ")

    async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
        self.deltas += 1
        sys.stdout.write(delta)
        sys.stdout.flush()

    async def on_message_done(self, message: Message) -> None:
        sys.stdout.write("\n")


QUESTION = """What's the weather in Oslo, and 3 * 17?
/call get_weather {"city": "Oslo"}
/call calculate {"expression": "3 * 17"}"""


async def main() -> None:
    async with (
        Emulator(delta_delay_s=0.03) as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-local") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o", tools=registry.definitions())
        handler = TerminalHandler()
        orchestrator = Orchestrator(client, registry, handler=handler)
        result = await orchestrator.create_thread_and_run(
            assistant.id, messages=[{"role": "user", "content": QUESTION}]
        )
        print(f"[done] {result.status}, {result.rounds} round(s), {handler.deltas} text deltas")


if __name__ == "__main__":
    configure_logging("WARNING")
    asyncio.run(main())
