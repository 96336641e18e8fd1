"""ResponsesOrchestrator paths with no Assistants analogue: the shape of a follow-up request,
the typed Responses hooks and foreground responses (which the server cannot cancel). The
loop's behaviours are tested once for both protocols in tests/integration/loop/."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runtime.core.backend import TurnRef
from runtime.core.hooks import EventHandler
from runtime.core.policy import RunPolicy
from runtime.emulator import Emulator, Scenario
from runtime.errors import BadRequestError
from runtime.protocol.snapshots import TextSnapshot
from runtime.responses import (
    Response,
    ResponsesClient,
    ResponsesEventHandler,
    ResponsesOrchestrator,
)
from tools import ToolCall, ToolCallResult, ToolRegistry

FAST = RunPolicy(poll_interval_s=0.02, max_poll_interval_s=0.05, cancel_wait_s=2.0)


def posts(emu: Emulator) -> list[dict[str, Any]]:
    """JSON bodies of the POST /v1/responses requests the emulator received, in order."""
    return [
        r["json"] for r in emu.requests if r["method"] == "POST" and r["path"] == "/v1/responses"
    ]


def calls(*lines: str) -> str:
    return "\n".join(f"/call {line}" for line in lines)


def scenario(*turns: dict[str, Any]) -> Scenario:
    return Scenario.from_dict({"turns": list(turns)})


async def test_a_follow_up_chains_function_call_outputs_to_the_previous_response(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """Tools go out flat (Responses shape); the outputs of one response go back together as
    function_call_output items of one new response chained by previous_response_id."""
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    result = await orch.run(calls('slow {"seconds": 0.01}', 'add {"a": 20, "b": 22}'))
    assert result.status == "completed" and result.rounds == 1
    first, follow_up = posts(emu)
    assert first["tools"][0]["type"] == "function" and "name" in first["tools"][0]
    assert "function" not in first["tools"][0]
    assert follow_up["previous_response_id"] == result.run.previous_response_id
    outputs = follow_up["input"]
    assert [o["type"] for o in outputs] == ["function_call_output"] * 2
    assert {o["call_id"] for o in outputs} == {r.tool_call_id for r in result.tool_calls}
    assert result.text == "slow returned: slept 0.01\nadd returned: 42"


async def test_typed_responses_hooks_fire_and_the_assistants_one_never(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """The typed Responses hook on_response_status gets the Response itself, and the
    Assistants-shaped hook never fires; the neutral ones fire alongside."""
    seen: list[str] = []

    class Spy(ResponsesEventHandler):
        async def on_response_status(self, response: Response) -> None:
            assert isinstance(response, Response)
            seen.append(f"status:{response.status}")

        async def on_run_status(self, run: Any) -> None:
            raise AssertionError("the Assistants hook must not fire on Responses")

        async def on_tool_call_done(self, snapshot: Any) -> None:
            seen.append(f"done:{snapshot.name}")

        async def on_tool_call_started(self, call: ToolCall) -> None:
            seen.append(f"started:{call.name}")

        async def on_tool_call_finished(self, result: ToolCallResult) -> None:
            seen.append(f"finished:{result.output}")

        async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
            seen.append("text")

    orch = ResponsesOrchestrator(rc, registry, policy=FAST, handler=Spy())
    result = await orch.run(calls('add {"a": 1, "b": 2}'))
    assert result.ok
    assert seen.index("done:add") < seen.index("started:add") < seen.index("finished:3")
    assert seen.index("finished:3") < seen.index("text")
    assert seen.count("status:completed") == 2


# --- cancellation ------------------------------------------------------------------------------


async def test_cancel_of_a_foreground_response_is_refused_by_the_server(
    rc: ResponsesClient,
) -> None:
    """Only background responses can be cancelled: others answer a typed 400."""
    response = await rc.create(model="gpt-4o", input="hi")
    with pytest.raises(BadRequestError, match="background"):
        await rc.cancel(response.id)


async def test_cancel_by_id_while_streaming_keeps_the_partial_text(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """A cancel request during a foreground stream closes it; the result keeps what arrived."""
    emu.set_scenario(
        scenario({"type": "text", "text": "one two three four five", "delta_delay_ms": 150})
    )
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    first_delta = asyncio.Event()

    turns: list[str] = []

    class Watch(EventHandler):
        async def on_turn(self, ref: TurnRef) -> None:
            turns.append(ref.id)

        async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
            first_delta.set()

    task = asyncio.create_task(orch.run("hi", handler=Watch()))
    await first_delta.wait()
    (response_id,) = turns
    await orch.cancel(response_id)
    result = await task
    assert result.status == "cancelled" and result.run_id == response_id
    assert result.text.startswith("one") and "five" not in result.text


async def test_a_tool_list_change_is_offered_from_the_next_round(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """A tool registered while a round runs (an MCP server announcing a new tool) is in the
    follow-up request's tools: Responses re-send tools every round."""

    @registry.tool
    async def grow() -> str:
        """Register one more tool, as an MCP list_changed would."""

        @registry.tool
        async def newcomer() -> str:
            """A tool that did not exist when the run started."""
            return "hi"

        return "grown"

    result = await ResponsesOrchestrator(rc, registry, policy=FAST).run(calls("grow {}"))
    assert result.ok
    first, follow_up = posts(emu)
    names = lambda body: {t["name"] for t in body["tools"]}  # noqa: E731
    assert "newcomer" not in names(first) and "newcomer" in names(follow_up)
