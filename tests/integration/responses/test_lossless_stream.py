"""Lossless Responses streams: a background stream cut mid-text is resumed after its last
sequence number, so the handler sees every delta once and no second response is created."""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.core.hooks import EventHandler
from runtime.core.policy import RunPolicy
from runtime.emulator import Emulator, Scenario
from runtime.protocol.snapshots import TextSnapshot
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from tools import ToolRegistry

TEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
FAST = RunPolicy(poll_interval_s=0.02, max_poll_interval_s=0.05, cancel_wait_s=2.0)


def slow_text(text: str = TEXT, delta_ms: int = 15) -> Scenario:
    """The next turn streams ``text`` word by word, slowly enough to cut it mid-way."""
    return Scenario.from_dict(
        {"turns": [{"type": "text", "text": text, "delta_delay_ms": delta_ms}]}
    )


class Deltas(EventHandler):
    """Records every text delta and the snapshot text after it."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.snapshot_texts: list[str] = []

    async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
        self.deltas.append(delta)
        self.snapshot_texts.append(snapshot.text)


def creates(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.requests if r["method"] == "POST" and r["path"].endswith("/responses")]


def resumes(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.requests if r["method"] == "GET" and "/responses/resp_" in r["path"]]


async def _run(emu: Emulator, rc: ResponsesClient, registry: ToolRegistry) -> tuple[Any, Deltas]:
    handler = Deltas()
    emu.set_scenario(slow_text())
    result = await ResponsesOrchestrator(rc, registry, policy=FAST).run("go", handler=handler)
    return result, handler


async def test_a_cut_background_stream_resumes_with_every_delta_once(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """Cut mid-text: the result and the handler's deltas equal an uncut run's; one response."""
    uncut, uncut_handler = await _run(emu, rc, registry)
    assert uncut.ok and uncut.text == TEXT and uncut.recoveries == 0
    before = len(creates(emu))

    emu.inject("cut", method="POST", path=r"/responses$", after=6)
    cut, cut_handler = await _run(emu, rc, registry)

    assert cut.ok and cut.text == uncut.text
    assert cut_handler.deltas == uncut_handler.deltas  # each delta exactly once, in order
    assert "".join(cut_handler.deltas) == TEXT
    assert cut_handler.snapshot_texts[-1] == TEXT  # the resumed stream kept the same snapshot
    assert cut.recoveries == 1
    assert emu.stats["faults"]["cut"] == 1
    assert len(creates(emu)) - before == 1, "the break created a second response"
    assert len(resumes(emu)) >= 1
    body = creates(emu)[-1]["json"]
    assert body["background"] is True


async def test_a_foreground_stream_cut_recovers_the_server_text_by_polling(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """background=false cannot be resumed: the text comes from the stored response, whole,
    never the partial stream joined to it."""
    emu.set_scenario(slow_text())
    emu.inject("cut", method="POST", path=r"/responses$", after=6)
    handler = Deltas()
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    result = await orch.run("go", handler=handler, background=False)
    assert result.ok and result.text == TEXT and result.recoveries == 1
    assert len(creates(emu)) == 1 and creates(emu)[0]["json"]["background"] is False


async def test_store_false_never_asks_for_a_background_response(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """store=false responses cannot run in the background: the runtime does not ask."""
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    result = await orch.run("hello", store=False)
    assert result.ok
    assert "background" not in creates(emu)[0]["json"]


async def test_cancelling_the_run_cancels_the_background_response(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """Cancelling the awaiting task mid-stream cancels the response on the server."""
    emu.set_scenario(slow_text(delta_ms=100))
    handler = Deltas()
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    task = asyncio.create_task(orch.run("go", handler=handler))
    while not handler.deltas:
        await asyncio.sleep(0.01)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the run did not re-raise CancelledError")
    await orch.aclose()
    (create,) = creates(emu)
    cancels = [r for r in emu.requests if r["path"].endswith("/cancel")]
    assert len(cancels) == 1 and cancels[0]["status"] == 200
    response_id = cancels[0]["path"].split("/")[3]
    assert (await rc.retrieve(response_id)).status == "cancelled"
    assert create["json"]["background"] is True
