"""Cancellation and failing handlers, on both protocols: nothing runs on, nothing stays active."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from runtime import HandlerError, RunResult

from .conftest import Driver, Probe, Watch, call, scenario

WORDS = " ".join(f"word{i}" for i in range(60))
SLOW_TEXT = {"type": "text", "text": WORDS, "delta_delay_ms": 30}


async def _cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _submit_in_flight(driver: Driver) -> None:
    while not driver.submit_requests():
        await asyncio.sleep(0.01)


async def test_cancelling_while_streaming_cancels_the_server_turn(driver: Driver) -> None:
    """Cancelling the awaiting task mid-stream re-raises CancelledError and cancels the run
    (Assistants) or the background response (Responses) on the server."""
    driver.emu.set_scenario(scenario(SLOW_TEXT))
    watch = Watch()
    task = asyncio.create_task(driver.run("hi", handler=watch, **driver.cancellable))
    await asyncio.wait_for(watch.text.wait(), 5)
    await _cancelled(task)
    (turn_id,) = watch.turns
    assert await driver.status(turn_id) == "cancelled"
    await driver.wait_settled()
    assert driver.active_turns() == 0


async def test_cancelling_a_foreground_response_leaves_nothing_to_cancel(driver: Driver) -> None:
    """A foreground response cannot be cancelled on the server: the task still re-raises
    CancelledError at once, one refused cancel at most, and no further request is sent."""
    if driver.is_assistants:
        pytest.skip("every Assistants run is cancellable (see the streaming test)")
    driver.emu.set_scenario(scenario(SLOW_TEXT))
    watch = Watch()
    task = asyncio.create_task(driver.run("hi", handler=watch))
    await asyncio.wait_for(watch.text.wait(), 5)
    await _cancelled(task)
    assert driver.cancel_requests() <= 1
    assert driver.start_requests() == 1 and driver.submit_requests() == []


async def test_cancelling_while_tools_run_cancels_them_and_submits_nothing(
    driver: Driver, probe: Probe
) -> None:
    """Cancelling during tool execution cancels the tools, submits nothing, and leaves
    nothing active on the server."""
    task = asyncio.create_task(driver.run(call("slow", seconds=30), **driver.cancellable))
    await asyncio.wait_for(probe.started.wait(), 5)
    await _cancelled(task)
    assert len(probe.cancelled) == 1 and probe.running == 0
    assert driver.submit_requests() == []
    await driver.wait_settled()
    assert driver.active_turns() == 0
    if driver.is_assistants:
        assert driver.emu.stats["runs_cancelled"] == 1


async def test_cancelling_while_submitting(driver: Driver, probe: Probe) -> None:
    """Cancelling while the submit hangs (slow first byte) re-raises CancelledError and the
    tool is not run again. Assistants: the run is cancelled and the late submit refused.
    Responses: a submit is a new response the server creates once it reads the request,
    which no client can find or cancel (the protocol's limit); it ends on its own."""
    driver.inject_on_submit("slow", ms=400)
    task = asyncio.create_task(driver.run(call("add", a=1, b=2), **driver.cancellable))
    await asyncio.wait_for(_submit_in_flight(driver), 5)
    await _cancelled(task)
    await asyncio.sleep(0.5)  # the server reads the slow submit now
    await driver.wait_settled()
    assert driver.active_turns() == 0
    assert probe.calls["add:1+2"] == 1
    if driver.is_assistants:
        assert driver.emu.stats["runs_cancelled"] == 1
        assert driver.emu.stats.get("tool_output_submissions", 0) == 0


@pytest.mark.parametrize("phase", ["tools", "streaming"])
async def test_cancel_by_id_from_elsewhere_returns_a_cancelled_result(
    driver: Driver, probe: Probe, phase: str
) -> None:
    """``orch.cancel(id)`` from another task: the run returns status cancelled, stopped_by
    cancel; running tools are cancelled; streamed text is kept as far as it arrived."""
    watch = Watch()
    if phase == "streaming":
        driver.emu.set_scenario(scenario(SLOW_TEXT))
        task = asyncio.create_task(driver.run("hi", handler=watch, **driver.cancellable))
        await asyncio.wait_for(watch.text.wait(), 5)
    else:
        task = asyncio.create_task(
            driver.run(call("slow", seconds=30), handler=watch, **driver.cancellable)
        )
        await asyncio.wait_for(probe.started.wait(), 5)
    await driver.cancel(watch.turns[-1])
    result: RunResult[Any] = await asyncio.wait_for(task, 5)
    assert result.status == "cancelled"
    assert result.stopped_by == "cancel" and result.reason == "cancelled by request"
    assert driver.submit_requests() == []
    if phase == "tools":
        assert len(probe.cancelled) == 1 and probe.running == 0
    else:
        assert result.text and WORDS.startswith(result.text) and result.text != WORDS
    await driver.wait_settled()
    assert driver.active_turns() == 0


# --- failing handlers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("callback", "tools_run", "submits"),
    [("on_status", 0, 0), ("on_tool_call_started", 0, 0), ("on_text_delta", 1, 1)],
)
async def test_a_failing_handler_raises_and_stops_the_run(
    driver: Driver, probe: Probe, callback: str, tools_run: int, submits: int
) -> None:
    """A callback that raises surfaces as HandlerError from the run call (never swallowed),
    no tool runs after it, and the server turn is cancelled when it is still running."""
    driver.emu.set_scenario(
        scenario(
            # Arguments streamed slowly: the turn is still running when on_status fails.
            {
                "type": "tool_calls",
                "calls": [{"name": "add", "arguments": {"a": 4, "b": 5}}],
                "delta_delay_ms": 20,
            },
            SLOW_TEXT,
        )
    )

    async def broken(self: Watch, *args: Any) -> None:
        raise ValueError(f"{callback} bug")

    handler: Watch = type("Broken", (Watch,), {callback: broken})()
    with pytest.raises(HandlerError) as info:
        await asyncio.wait_for(driver.run("go", handler=handler, **driver.cancellable), 10)
    assert info.value.callback == callback
    assert isinstance(info.value.__cause__, ValueError)
    assert probe.total == tools_run
    assert len(driver.submit_requests()) == submits
    await driver.wait_settled()
    assert driver.active_turns() == 0
    (last,) = handler.turns[-1:]
    # A response whose function calls are out is complete: there is nothing to cancel.
    over = callback == "on_tool_call_started" and not driver.is_assistants
    expected = "completed" if over else "cancelled"
    assert await driver.status(last) == expected


@pytest.mark.parametrize("callback", ["on_tool_call_started", "on_tool_call_finished"])
async def test_a_failing_tool_callback_stops_the_batch_at_once(
    driver: Driver, probe: Probe, callback: str
) -> None:
    """A tool callback that raises ends the batch at once: no tool starts after a failing
    on_tool_call_started, a slow sibling of a failing on_tool_call_finished is cancelled,
    and HandlerError surfaces without waiting for slow tools; nothing is submitted."""

    async def broken(self: Watch, *args: Any) -> None:
        raise ValueError(f"{callback} bug")

    handler: Watch = type("Broken", (Watch,), {callback: broken})()
    text = "\n".join([call("add", a=7, b=7), call("slow", seconds=30, label="sibling")])
    started = time.monotonic()
    with pytest.raises(HandlerError) as info:
        await asyncio.wait_for(driver.run(text, handler=handler, **driver.cancellable), 10)
    assert time.monotonic() - started < 3.0, "HandlerError waited for the slow tool"
    assert info.value.callback == callback
    if callback == "on_tool_call_started":
        assert probe.total == 0, "a tool started after its on_tool_call_started failed"
    else:
        assert probe.calls["add:7+7"] == 1 and len(probe.cancelled) == 1
    assert probe.running == 0
    assert driver.submit_requests() == []
    await driver.wait_settled()
    assert driver.active_turns() == 0
