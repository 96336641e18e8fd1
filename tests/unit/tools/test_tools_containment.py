"""Tools that try to end the process or the loop (SystemExit, KeyboardInterrupt, loop.stop())
get an error output; the event loop, the batch and the host go on.

Each test drives the dispatcher on an event loop of its own (``asyncio.Runner``), so that a
failure shows up as an escaped exception or a stopped loop, not as a dead test session.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tools import ToolCall, ToolCallResult, ToolDispatcher, ToolRegistry

registry = ToolRegistry()


@registry.tool
def exit_sync() -> str:
    """Call sys.exit in a pool thread."""
    raise SystemExit(3)


@registry.tool
async def exit_async() -> str:
    """Call sys.exit on the loop."""
    await asyncio.sleep(0)
    raise SystemExit("bye")


@registry.tool
def interrupt_sync() -> str:
    """Raise KeyboardInterrupt in a pool thread."""
    raise KeyboardInterrupt


@registry.tool
async def interrupt_async() -> str:
    """Raise KeyboardInterrupt on the loop."""
    await asyncio.sleep(0)
    raise KeyboardInterrupt


@registry.tool
async def stop_loop() -> str:
    """Stop the running loop, then keep awaiting (the loop would exit after this step)."""
    asyncio.get_running_loop().stop()
    await asyncio.sleep(0.01)
    return "still here"


@registry.tool
async def stop_loop_swallowed() -> str:
    """Stop the loop and swallow ordinary exceptions around it."""
    try:
        asyncio.get_running_loop().stop()
    except Exception:
        return "swallowed"
    await asyncio.sleep(0.01)
    return "still here"


@registry.tool
async def stop_loop_from_subtask() -> str:
    """Stop the loop from a task the tool spawns."""

    async def stopper() -> None:
        asyncio.get_running_loop().stop()

    task = asyncio.create_task(stopper())
    await asyncio.wait([task])
    await asyncio.sleep(0.01)
    return "subtask refused" if task.exception() is not None else "subtask stopped the loop"


@registry.tool
def stop_loop_from_thread() -> str:
    """Stop the host loop from a sync tool's thread, thread-safely."""
    loop = host_loop[0]
    loop.call_soon_threadsafe(loop.stop)
    threading.Event().wait(0.05)
    return "thread done"


@registry.tool
async def exit_in_gather() -> str:
    """sys.exit in a child coroutine that gather() wraps in a task."""

    async def child() -> None:
        await asyncio.sleep(0)
        raise SystemExit(5)

    await asyncio.gather(child(), asyncio.sleep(0.01))
    return "unreachable"


@registry.tool
async def interrupt_in_task() -> str:
    """KeyboardInterrupt in a task the tool creates and awaits."""

    async def child() -> None:
        raise KeyboardInterrupt

    await asyncio.create_task(child())
    return "unreachable"


@registry.tool
async def fine(x: int) -> int:
    """A well-behaved async tool."""
    await asyncio.sleep(0.01)
    return x + 1


@registry.tool
def fine_sync(x: int) -> int:
    """A well-behaved sync tool."""
    return x * 2


host_loop: list[asyncio.AbstractEventLoop] = []


def on_own_loop(body: Callable[[], Awaitable[Any]]) -> Any:
    """Run body on a fresh loop; fail the test if anything escapes or the loop stops early."""

    async def main() -> Any:
        host_loop[:] = [asyncio.get_running_loop()]
        value = await body()
        # The loop must still be serving: timers fire, new tasks run.
        await asyncio.sleep(0.02)
        assert await asyncio.create_task(asyncio.sleep(0, "alive")) == "alive"
        return value

    with asyncio.Runner() as runner:
        try:
            return runner.run(main())
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, "loop stopped"
            pytest.fail(f"escaped the dispatcher: {type(exc).__name__}: {exc}")


def error(result: ToolCallResult) -> dict[str, Any]:
    assert result.is_error
    body: dict[str, Any] = json.loads(result.output)["error"]
    return body


async def batch(*names: str) -> list[ToolCallResult]:
    calls = [
        ToolCall(f"c{i}", name, '{"x": 1}' if name.startswith("fine") else "{}")
        for i, name in enumerate(names)
    ]
    return await ToolDispatcher(registry).run_batch(calls)


@pytest.mark.parametrize("name", ["exit_sync", "exit_async"])
def test_system_exit_is_a_tool_exit_output(name: str) -> None:
    """SystemExit from a sync or async tool is a tool_exit output; the batch's other calls
    succeed and the loop keeps running."""
    results = on_own_loop(lambda: batch(name, "fine", "fine_sync"))
    body = error(results[0])
    assert results[0].error_type == "tool_exit" and body["type"] == "tool_exit"
    assert "SystemExit" in body["message"] and body["tool"] == name
    assert [r.output for r in results[1:]] == ["2", "2"]


@pytest.mark.parametrize("name", ["interrupt_sync", "interrupt_async"])
def test_keyboard_interrupt_is_an_interrupted_output(name: str) -> None:
    """KeyboardInterrupt from a sync or async tool is an interrupted output; the batch's
    other calls succeed and the loop keeps running."""
    results = on_own_loop(lambda: batch(name, "fine", "fine_sync"))
    body = error(results[0])
    assert results[0].error_type == "interrupted" and body["type"] == "interrupted"
    assert "KeyboardInterrupt" in body["message"]
    assert [r.output for r in results[1:]] == ["2", "2"]


def test_exits_in_tasks_a_tool_starts_are_contained() -> None:
    """SystemExit in a gather() child and KeyboardInterrupt in a created task end the
    tool's call with tool_exit / interrupted instead of leaving the loop."""
    results = on_own_loop(lambda: batch("exit_in_gather", "interrupt_in_task", "fine"))
    assert [r.error_type for r in results[:2]] == ["tool_exit", "interrupted"]
    assert "SystemExit(5) in a task it started" in error(results[0])["message"]
    assert "KeyboardInterrupt in a task it started" in error(results[1])["message"]
    assert results[2].output == "2"


def recording_factory(made: list[str]) -> Callable[..., asyncio.Future[Any]]:
    """A host's task factory that notes the name of each coroutine it makes a task of."""

    def host_factory(
        loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    return host_factory


def test_tasks_outside_tools_are_not_wrapped() -> None:
    """The host's own tasks keep their coroutine (and any previous task factory still
    runs); only tasks created in a tool's context are wrapped."""
    made: list[str] = []
    host_factory = recording_factory(made)

    async def mine() -> str:
        return "host task"

    async def body() -> str:
        await batch("fine")
        task = asyncio.create_task(mine())
        assert task.get_coro().__qualname__.endswith("mine")
        return await task

    def main_with_factory() -> Awaitable[str]:
        asyncio.get_running_loop().set_task_factory(host_factory)
        return body()

    assert on_own_loop(main_with_factory) == "host task"
    assert any(name.endswith("mine") for name in made)  # the host's factory still runs
    assert "_contained" not in made  # no tool started a task, so nothing was wrapped


def test_loop_stop_from_an_async_tool_is_refused() -> None:
    """loop.stop() inside an async tool is refused with a loop_stop output, even when the
    tool catches Exception around it; the loop and the other calls go on."""
    results = on_own_loop(lambda: batch("stop_loop", "stop_loop_swallowed", "fine"))
    for result in results[:2]:
        body = error(result)
        assert result.error_type == "loop_stop" and "stop the event loop" in body["message"]
    assert results[2].output == "2"


def test_loop_stop_from_a_tool_subtask_or_thread_is_refused() -> None:
    """Tasks spawned by a tool and sync tools calling loop.stop via call_soon_threadsafe
    cannot stop the host loop either."""
    results = on_own_loop(lambda: batch("stop_loop_from_subtask", "stop_loop_from_thread"))
    assert [r.output for r in results] == ["subtask refused", "thread done"]


def test_host_can_still_stop_its_loop() -> None:
    """Outside tools, loop.stop() keeps working after the dispatcher guarded the loop."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(batch("fine"))
        loop.call_soon(loop.stop)
        loop.run_forever()  # returns only because stop() worked
        assert not loop.is_running()
    finally:
        loop.close()


@registry.tool(timeout_s=100)
async def forever() -> str:
    """Wait for ever."""
    await asyncio.Event().wait()
    return "unreachable"


def test_calls_pending_when_their_loop_is_dropped_close_quietly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch left pending on a loop that is closed and dropped is garbage collected
    without errors (its coroutines close outside their task's context)."""
    import gc
    import sys

    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(repr(u.exc_value)))
    loop = asyncio.new_event_loop()
    task = loop.create_task(batch("forever"))
    loop.run_until_complete(asyncio.sleep(0.05))
    loop.close()
    del task
    gc.collect()
    assert unraisable == []


@registry.tool
async def nested_batch() -> str:
    """Run a batch of another dispatcher from inside a tool (an agent used as a tool)."""
    inner = await ToolDispatcher(registry).run_batch([ToolCall("inner", "exit_async", "{}")])
    return inner[0].error_type or "ok"


def test_a_dispatcher_inside_a_tool_keeps_its_calls_contained() -> None:
    """A batch run inside a tool's context makes its call tasks through the containing
    factory: the inner SystemExit is the inner call's tool_exit, the outer call is fine."""
    results = on_own_loop(lambda: batch("nested_batch", "fine"))
    assert [r.output for r in results] == ["tool_exit", "2"]


def test_a_host_factory_makes_the_dispatchers_tasks() -> None:
    """With the host's task factory chained under ours, the dispatcher's call tasks are
    still made through it (the direct Task shortcut applies only to a factory of none)."""
    made: list[str] = []
    host_factory = recording_factory(made)

    def main_with_factory() -> Awaitable[list[ToolCallResult]]:
        asyncio.get_running_loop().set_task_factory(host_factory)
        return batch("fine", "fine_sync")

    results = on_own_loop(main_with_factory)
    assert [r.output for r in results] == ["2", "2"]
    assert sum(name.endswith("_run_untraced") for name in made) == 2
