"""ResponsesOrchestrator against the emulator: the Assistants loop's policies, over Responses."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from runtime.core.backend import TurnRef
from runtime.core.hooks import EventHandler, StatusUpdate
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


# --- tool rounds ------------------------------------------------------------------------------


async def test_calls_of_one_response_run_concurrently_and_go_back_in_one_request(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry, probe: Any
) -> None:
    """Three calls execute at once; their outputs return together with previous_response_id."""
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    started = time.monotonic()
    result = await orch.run(
        calls('slow {"seconds": 0.3}', 'slow {"seconds": 0.3}', 'add {"a": 20, "b": 22}')
    )
    elapsed = time.monotonic() - started
    assert result.status == "completed" and result.rounds == 1
    assert probe.peak == 2 and elapsed < 0.9  # serial execution would take >= 0.6 s of sleep
    assert [r.output for r in result.tool_calls] == ["slept 0.3", "slept 0.3", "42"]
    first, follow_up = posts(emu)
    assert follow_up["previous_response_id"] == result.run.previous_response_id
    outputs = follow_up["input"]
    assert [o["type"] for o in outputs] == ["function_call_output"] * 3
    assert {o["call_id"] for o in outputs} == {r.tool_call_id for r in result.tool_calls}
    assert first["tools"][0]["type"] == "function" and "name" in first["tools"][0]
    assert result.text == "slow returned: slept 0.3\nslow returned: slept 0.3\nadd returned: 42"
    assert result.run_id == result.run.id and result.usage.total_tokens > 0


async def test_sequential_calls_take_one_round_each(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """With parallel_tool_calls=false the loop repeats until a response has no calls."""
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    result = await orch.run(
        calls('add {"a": 1, "b": 1}', 'add {"a": 2, "b": 2}'), parallel_tool_calls=False
    )
    assert result.status == "completed" and result.rounds == 2
    assert [r.output for r in result.tool_calls] == ["2", "4"]
    assert len(posts(emu)) == 3
    assert all(body["parallel_tool_calls"] is False for body in posts(emu))


async def test_bad_arguments_unknown_tools_and_schema_errors_become_outputs(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """Invalid JSON, a schema violation and an unknown tool are error outputs the model reads."""
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    result = await orch.run(calls("add {not json", 'add {"a": "x", "b": 1}', "nope {}"))
    assert result.status == "completed"
    kinds = [r.error_type for r in result.tool_calls]
    assert all(r.is_error for r in result.tool_calls)
    assert kinds[2] == "unknown_tool" and kinds[0] != kinds[2]
    for r in result.tool_calls:
        assert "error" in json.loads(r.output)
    assert result.text.count("returned: {") == 3


async def test_max_tool_rounds_ends_the_conversation_with_a_reason(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """Exceeding max_tool_rounds stops before executing more calls (status cancelled)."""
    policy = RunPolicy(max_tool_rounds=1, poll_interval_s=0.02)
    orch = ResponsesOrchestrator(rc, registry, policy=policy)
    result = await orch.run(
        calls('add {"a": 1, "b": 1}', 'add {"a": 2, "b": 2}'), parallel_tool_calls=False
    )
    assert result.status == "cancelled" and result.reason is not None
    assert "max_tool_rounds" in result.reason and len(result.tool_calls) == 1


# --- terminal outcomes -------------------------------------------------------------------------


async def test_incomplete_and_failed_are_results_with_details(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """max_output_tokens gives incomplete with its reason; a failing turn gives failed + error."""
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    words = [f"w{i}" for i in range(20)]
    short = await orch.run(" ".join(words), max_output_tokens=16)  # the service's minimum
    assert short.status == "incomplete"
    assert short.incomplete_reason == "max_output_tokens"
    assert short.text == "You said: " + " ".join(words[:14])
    emu.set_scenario(scenario({"type": "fail", "code": "server_error", "message": "down"}))
    failed = await orch.run("hello")
    assert failed.status == "failed" and failed.last_error.code == "server_error"
    with pytest.raises(Exception, match="ended failed"):
        failed.raise_for_status()


async def test_handler_callbacks_fire_across_rounds(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """Status, tool and text callbacks fire for Responses; on_response_status gets the
    Response itself (never through an Assistants-shaped hook)."""
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


# --- deadline ----------------------------------------------------------------------------------


async def test_total_deadline_bounds_slow_tools(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry, probe: Any
) -> None:
    """A tool slower than the deadline gets a timeout output so the answer still arrives."""
    policy = RunPolicy(total_deadline_s=1.5, expiry_margin_s=0.5, poll_interval_s=0.02)
    orch = ResponsesOrchestrator(rc, registry, policy=policy)
    started = time.monotonic()
    result = await orch.run(calls('slow {"seconds": 30}', 'add {"a": 1, "b": 1}'))
    assert time.monotonic() - started < 1.5
    assert result.status == "completed"
    slow, add = result.tool_calls
    assert slow.error_type == "timeout" and add.output == "2"
    assert "timeout" in result.text and probe.cancelled


async def test_total_deadline_expires_a_slow_response(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """When the model outlasts total_deadline_s the result is expired, with the reason."""
    emu.set_scenario(scenario({"type": "text", "text": "late", "delay_ms": 5000}))
    orch = ResponsesOrchestrator(rc, registry, policy=RunPolicy(total_deadline_s=0.5))
    started = time.monotonic()
    result = await orch.run("hello")
    assert time.monotonic() - started < 2.0
    assert result.status == "expired" and "total_deadline_s" in (result.reason or "")
    assert result.text == ""


# --- retries and stream loss -------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["503", "500", "reset", "429"])
async def test_failed_create_requests_are_sent_again(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry, fault: str
) -> None:
    """Errors before any response exists are retried; the conversation completes."""
    emu.inject(fault, method="POST", path=r"/responses$")
    result = await ResponsesOrchestrator(rc, registry, policy=FAST).run("hello")
    assert result.status == "completed" and result.text == "You said: hello"
    assert len(posts(emu)) == 2
    assert emu.stats["responses_created"] == 1


async def test_stream_cut_after_created_recovers_by_retrieving(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """A stream lost after response.created is recovered by id, without a second request."""
    emu.inject("cut", method="POST", path=r"/responses$", after=3)
    result = await ResponsesOrchestrator(rc, registry, policy=FAST).run(
        calls('add {"a": 5, "b": 5}')
    )
    assert result.status == "completed" and result.recoveries == 1
    assert [r.output for r in result.tool_calls] == ["10"]
    assert len(posts(emu)) == 2  # the call round and the follow-up, nothing repeated
    gets = [r for r in emu.requests if r["method"] == "GET"]
    assert gets and gets[0]["path"].startswith("/v1/responses/resp_")
    assert result.text == "add returned: 10"


async def test_stream_cut_on_the_follow_up_recovers_too(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """Losing the follow-up's stream mid-text still yields the full final text."""
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    emu.inject("cut", method="POST", path=r"/responses$", after=2)  # first request, 2 events
    emu.inject("cut", method="POST", path=r"/responses$", after=5)  # follow-up, mid-text
    result = await orch.run(calls('add {"a": 1, "b": 1}'))
    assert result.status == "completed" and result.recoveries == 2
    assert result.text == "add returned: 2"


async def test_stream_cut_before_the_id_is_known_sends_the_request_again(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """Without a response id nothing can be retrieved: the request is repeated (documented)."""
    emu.inject("cut", method="POST", path=r"/responses$", after=0)
    result = await ResponsesOrchestrator(rc, registry, policy=FAST).run("hello")
    assert result.status == "completed" and result.recoveries == 1
    assert len(posts(emu)) == 2
    assert emu.stats["responses_created"] == 2  # the first one ran unseen: a duplicate


async def test_resume_sends_known_outputs_without_executing_again(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry, probe: Any
) -> None:
    """resume() adopts a stored response; known results are sent, never re-executed."""
    first = await rc.create(model="gpt-4o", input=calls('add {"a": 4, "b": 4}'))
    (call,) = first.function_calls
    known = ToolCallResult(call.call_id, "add", call.arguments, "8", False, 0.0)
    result = await ResponsesOrchestrator(rc, registry, policy=FAST).resume(first.id, [known])
    assert result.status == "completed" and result.text == "add returned: 8"
    assert probe.calls == []


# --- cancellation ------------------------------------------------------------------------------


async def test_cancelling_the_task_cancels_tools_and_sends_nothing_more(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry, probe: Any
) -> None:
    """Cancelling during tool execution cancels the tools and re-raises CancelledError."""
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    task = asyncio.create_task(orch.run(calls('slow {"seconds": 30}')))
    while not probe.running:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.running == 0 and len(probe.cancelled) == 1
    assert len(posts(emu)) == 1
    await orch.aclose()


async def test_cancelling_a_background_response_cancels_it_on_the_server(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """A background response is cancelled on the server when its task is cancelled."""
    emu.set_scenario(scenario({"type": "text", "text": "late", "delay_ms": 5000}))
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    task = asyncio.create_task(orch.run("hello", background=True))
    while not emu.stats.get("responses_created"):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await orch.aclose()
    (body,) = posts(emu)
    assert body["background"] is True
    cancels = [r for r in emu.requests if r["path"].endswith("/cancel")]
    assert len(cancels) == 1 and cancels[0]["status"] == 200
    response_id = cancels[0]["path"].split("/")[3]
    assert (await rc.retrieve(response_id)).status == "cancelled"


async def test_cancel_by_id_from_elsewhere_returns_a_cancelled_result(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry, probe: Any
) -> None:
    """orch.cancel(response_id) stops a conversation driven by another task."""
    orch = ResponsesOrchestrator(rc, registry, policy=FAST)
    ids: list[str] = []

    class Ids(EventHandler):
        async def on_status(self, update: StatusUpdate) -> None:
            ids.append(update.id)

    task = asyncio.create_task(orch.run(calls('slow {"seconds": 30}'), handler=Ids()))
    while not probe.running:
        await asyncio.sleep(0.01)
    answer = await orch.cancel(ids[0])
    result = await task
    assert answer is None  # not a background response: the server refuses, locally it stops
    assert result.status == "cancelled" and result.reason == "cancelled by request"
    assert probe.cancelled and len(posts(emu)) == 1


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


async def test_failed_response_is_rerun_when_the_policy_asks(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """rerun_on_server_error sends the request again after a server_error failure."""
    emu.set_scenario(scenario({"type": "fail", "code": "server_error"}))
    policy = RunPolicy(rerun_on_server_error=True, max_reruns=1, poll_interval_s=0.02)
    result = await ResponsesOrchestrator(rc, registry, policy=policy).run("again")
    assert result.status == "completed" and result.text == "You said: again"
    assert len(posts(emu)) == 2


async def test_a_stalled_stream_is_recovered_after_the_idle_timeout(
    emu: Emulator, registry: ToolRegistry
) -> None:
    """A stream that goes silent counts as lost after stream_idle_timeout_s; polling finishes it."""
    emu.inject("stall", method="POST", path=r"/responses$", after=3)
    async with ResponsesClient(
        base_url=emu.base_url, api_key="sk-test-stall", stream_idle_timeout_s=0.3
    ) as rc:
        result = await ResponsesOrchestrator(rc, registry, policy=FAST).run("still there?")
    assert result.status == "completed" and result.recoveries == 1
    assert result.text == "You said: still there?"
