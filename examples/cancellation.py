"""Cancellation and timeouts, against the embedded emulator.

1. Cancelling the task that awaits ``orchestrator.run()`` stops its running tools, cancels
   the run on the server (and waits, bounded, for ``cancelled``), then re-raises
   ``CancelledError``.
2. ``asyncio.timeout()`` around a run works the same way: the server run ends cancelled.
3. A tool that exceeds its own ``timeout_s`` does not break the run: its output becomes a
   timeout error the model can read, and the run completes.
"""

from __future__ import annotations

import asyncio

from runtime import AssistantsClient, EventHandler, Orchestrator
from runtime.emulator import Emulator
from runtime.logging import configure_logging
from tools import ToolCall, ToolRegistry

registry = ToolRegistry()


@registry.tool
async def slow_report(topic: str) -> str:
    """Build a long report (takes a minute)."""
    await asyncio.sleep(60)
    return f"report on {topic}"


@registry.tool(timeout_s=0.5)
async def flaky_lookup(key: str) -> str:
    """A lookup that hangs longer than its 0.5 s timeout."""
    await asyncio.sleep(10)
    return key


class ToolStarted(EventHandler):
    """Sets an event when the first tool starts, and remembers the run id."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.run_id: str | None = None

    async def on_tool_call_started(self, call: ToolCall) -> None:
        self.started.set()

    async def on_run_status(self, run: object) -> None:
        self.run_id = getattr(run, "id", None)


async def cancel_task(client: AssistantsClient, orch: Orchestrator, assistant_id: str) -> None:
    thread = await client.create_thread(
        messages=[{"role": "user", "content": '/call slow_report {"topic": "tides"}'}]
    )
    watcher = ToolStarted()
    task = asyncio.create_task(orch.run(thread.id, assistant_id, handler=watcher))
    await watcher.started.wait()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        print("1. task cancelled while slow_report was running")
    assert watcher.run_id is not None
    run = await client.retrieve_run(thread.id, watcher.run_id)
    print(f"   server run {run.id}: {run.status}")


async def deadline(client: AssistantsClient, orch: Orchestrator, assistant_id: str) -> None:
    thread = await client.create_thread(
        messages=[{"role": "user", "content": '/call slow_report {"topic": "winds"}'}]
    )
    watcher = ToolStarted()
    try:
        async with asyncio.timeout(0.5):
            await orch.run(thread.id, assistant_id, handler=watcher)
    except TimeoutError:
        print("2. asyncio.timeout(0.5) expired around the run")
    assert watcher.run_id is not None
    run = await client.retrieve_run(thread.id, watcher.run_id)
    print(f"   server run {run.id}: {run.status}")


async def tool_timeout(client: AssistantsClient, orch: Orchestrator, assistant_id: str) -> None:
    result = await orch.create_thread_and_run(
        assistant_id, messages=[{"role": "user", "content": '/call flaky_lookup {"key": "a"}'}]
    )
    call = result.tool_calls[0]
    print(f"3. {call.name}: error_type={call.error_type}, output={call.output}")
    print(f"   run {result.status}; the model read: {result.text}")


async def main() -> None:
    async with (
        Emulator() as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-local") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o", tools=registry.definitions())
        orch = Orchestrator(client, registry)
        await cancel_task(client, orch, assistant.id)
        await deadline(client, orch, assistant.id)
        await tool_timeout(client, orch, assistant.id)
        await orch.aclose()


if __name__ == "__main__":
    configure_logging("ERROR")  # the cancellations log warnings by design
    asyncio.run(main())
