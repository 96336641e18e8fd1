"""Plain runs, on both protocols: results, the handler's view, resume, terminal outcomes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime import EventHandler, RunFailedError, StatusUpdate
from tools import ToolCall, ToolCallResult

from .conftest import Driver, Probe, call, lines


async def test_a_text_only_run_takes_no_round(driver: Driver) -> None:
    """Without tool calls the run completes in zero rounds with the model's text."""
    result = await driver.run("hello there")
    assert result.status == "completed" and result.rounds == 0
    assert result.text == "You said: hello there"
    assert result.tool_calls == [] and driver.submit_requests() == []


async def test_result_is_the_same_shape_on_both_protocols(driver: Driver) -> None:
    """A tool round's RunResult carries the quoted output, neutral usage, the call and ids."""
    result = await driver.run(call("add", a=20, b=22))
    assert result.ok and result.text == "add returned: 42"
    assert result.usage is not None and result.usage.total_tokens > 0
    assert result.usage.input_tokens + result.usage.output_tokens == result.usage.total_tokens
    (tool_call,) = result.tool_calls
    assert (tool_call.name, json.loads(tool_call.arguments), tool_call.output) == (
        "add",
        {"a": 20, "b": 22},
        "42",
    )
    assert result.raw is not None and result.run_id == result.raw.id
    assert result.text == await driver.stored_text(result)


async def test_sequential_calls_take_one_round_each(driver: Driver, probe: Probe) -> None:
    """With parallel_tool_calls=false the loop answers one call per round until the model
    answers; every request of the run carries the setting."""
    result = await driver.run(
        lines(call("add", a=1, b=1), call("add", a=2, b=2)), parallel_tool_calls=False
    )
    assert result.status == "completed" and result.rounds == 2
    assert [r.output for r in result.tool_calls] == ["2", "4"]
    assert [len(batch) for batch in driver.submit_requests()] == [1, 1]
    assert driver.turns_created() == driver.one_chain(rounds=2)
    if not driver.is_assistants:  # each response is a new request: the setting is resent
        bodies = [r["json"] for r in driver.requests("POST", r"/responses$")]
        assert len(bodies) == 3 and all(b["parallel_tool_calls"] is False for b in bodies)


class Recorder(EventHandler):
    """Records the neutral callbacks a run triggers, in order."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.deltas: list[str] = []

    async def on_status(self, update: StatusUpdate) -> None:
        self.seen.append(f"status:{update.status}")

    async def on_tool_call_done(self, snapshot: Any) -> None:
        self.seen.append(f"done:{snapshot.name}")

    async def on_tool_call_started(self, call: ToolCall) -> None:
        self.seen.append(f"started:{call.name}")

    async def on_tool_call_finished(self, result: ToolCallResult) -> None:
        self.seen.append(f"finished:{result.output}")

    async def on_text_delta(self, delta: str, snapshot: Any) -> None:
        self.deltas.append(delta)
        if not self.seen[-1].startswith("text"):
            self.seen.append("text")

    async def on_end(self) -> None:
        self.seen.append("end")


async def test_one_handler_sees_every_round_as_one_conversation(driver: Driver) -> None:
    """The neutral hooks fire in order across both streams: the call is written, executed,
    then the reply streams; the deltas join to the run's text; each stream ends once."""
    handler = Recorder()
    result = await driver.run(call("add", a=1, b=2), handler=handler)
    assert result.ok
    seen = handler.seen
    assert seen.index("done:add") < seen.index("started:add") < seen.index("finished:3")
    assert seen.index("finished:3") < seen.index("text")
    assert seen.count("end") == 2
    assert seen[-2] == "status:completed" and seen[-1] == "end"
    assert "".join(handler.deltas) == result.text == "add returned: 3"


async def test_resume_adopts_a_turn_and_never_reexecutes_known_results(
    driver: Driver, probe: Probe
) -> None:
    """resume() drives a turn started elsewhere; outputs passed as known results are sent
    as they are, never computed again; the other calls run."""
    turn_id, calls = await driver.park(lines(call("add", a=1, b=1), call("add", a=2, b=2)))
    first = next(c for c in calls if json.loads(c.arguments) == {"a": 1, "b": 1})
    known = ToolCallResult(first.id, "add", first.arguments, "cached", False, 0.0)
    result = await driver.resume(turn_id, [known])
    assert result.status == "completed"
    assert result.text == "add returned: cached\nadd returned: 4"
    assert probe.calls["add:1+1"] == 0 and probe.calls["add:2+2"] == 1
    (submitted,) = driver.submit_requests()
    assert {s["output"] for s in submitted} == {"cached", "4"}


async def test_an_incomplete_run_is_a_result_with_its_reason(driver: Driver) -> None:
    """An output cap ends the run ``incomplete`` with the protocol's reason; raise_for_status
    turns it into RunFailedError."""
    words = [f"w{i}" for i in range(20)]
    # 16: the Responses service's smallest max_output_tokens (the emulator refuses less).
    result = await driver.run(" ".join(words), **driver.output_limit(16))
    assert result.status == "incomplete"
    (reason,) = driver.output_limit(16)
    assert result.incomplete_reason == reason
    assert result.text == "You said: " + " ".join(words[:14])
    with pytest.raises(RunFailedError) as info:
        result.raise_for_status()
    assert info.value.status == "incomplete"
