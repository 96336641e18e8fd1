"""Tool rounds, on both protocols: concurrency, one submit, error outputs, redaction, bounds."""

from __future__ import annotations

import json

import pytest

from runtime import BadRequestError
from tools import ToolRegistry

from .conftest import (
    API_KEY,
    LEAKED_KEY,
    RESPONSES_CREATE,
    Driver,
    OpenDriver,
    Probe,
    call,
    fast,
    lines,
    scenario,
)

TOOL_S = 0.3
N_TOOLS = 4


@pytest.mark.parametrize("tool", ["slow", "slow_sync"])
async def test_slow_tools_of_one_round_run_concurrently_and_go_back_in_one_request(
    driver: Driver, probe: Probe, tool: str
) -> None:
    """N slow tools (async, or sync in threads) overlap: the batch takes about one tool's
    time, and every output goes back in ONE submit request."""
    text = lines(*(call(tool, seconds=TOOL_S, label=f"t{i}") for i in range(N_TOOLS)))
    result = await driver.run(text)
    assert result.status == "completed" and result.rounds == 1
    assert probe.peak == N_TOOLS
    batch = max(end for _, end in probe.spans) - min(start for start, _ in probe.spans)
    assert batch < 2 * TOOL_S, f"{N_TOOLS} x {TOOL_S} s tools took {batch:.2f} s: not concurrent"
    (submitted,) = driver.submit_requests()
    assert {s["call_id"] for s in submitted} == {r.tool_call_id for r in result.tool_calls}
    assert len(submitted) == N_TOOLS
    for i in range(N_TOOLS):
        assert f"slept {TOOL_S} (t{i})" in result.text
    assert driver.turns_created() == driver.one_chain(rounds=1)


BAD_CALLS = {
    "invalid_json": "/call add {not json",
    "schema_violation": call("add", a="x", b=1),
    "unknown_tool": call("no_such_tool", x=1),
    "exception": call("explode", reason="test"),
    "system_exit": call("bail", code=3),
}


@pytest.mark.parametrize("bad", list(BAD_CALLS))
async def test_bad_calls_become_error_outputs_the_model_reads(
    driver: Driver, probe: Probe, bad: str
) -> None:
    """Bad JSON, a schema violation, an unknown tool, a tool exception or a tool raising
    SystemExit is an error output,
    submitted with the good call's output in one request; the run completes."""
    result = await driver.run(lines(BAD_CALLS[bad], call("add", a=1, b=2)))
    assert result.status == "completed"
    failed, good = result.tool_calls
    assert failed.is_error and not good.is_error and good.output == "3"
    error = json.loads(failed.output)["error"]
    assert error["type"] and error["message"]
    if bad == "unknown_tool":
        assert error["type"] == "unknown_tool"
    (submitted,) = driver.submit_requests()
    assert [s["output"] for s in submitted] == [failed.output, "3"]
    assert f"returned: {failed.output}" in result.text  # the model read the error
    assert probe.calls["add:1+2"] == 1


async def test_secrets_in_a_tool_exception_never_go_upstream(driver: Driver) -> None:
    """A tool whose exception quotes an ``sk-`` key and the client's own api_key: neither
    reaches the server in any request (nor comes back in the run's text)."""
    result = await driver.run(call("leak"))
    assert result.status == "completed"
    (submitted,) = driver.submit_requests()
    sent = json.dumps(submitted)
    assert "upstream refused key" in sent  # the message itself is kept
    everything = json.dumps([r["json"] for r in driver.emu.requests])
    for secret in (LEAKED_KEY, API_KEY):
        assert secret not in sent and secret not in everything
        assert secret not in result.text
        assert secret not in result.tool_calls[0].output


# --- bounds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "limit", "calls", "parallel", "rounds"),
    [
        ("max_tool_rounds", 1, 2, False, 1),  # the model wants 2 rounds: 1 runs
        ("max_tool_calls", 2, 3, False, 2),  # one call per round: the third is refused
        ("max_tool_calls", 2, 3, True, 0),  # one round of 3: refused before it runs
    ],
)
async def test_bounds_stop_the_run_and_name_themselves(
    open_driver: OpenDriver,
    probe: Probe,
    bound: str,
    limit: int,
    calls: int,
    parallel: bool,
    rounds: int,
) -> None:
    """Past max_tool_rounds / max_tool_calls the run ends cancelled, ``stopped_by`` and
    ``reason`` name that bound, ``rounds`` counts the rounds executed, nothing stays active."""
    driver = await open_driver(policy=fast(**{bound: limit}))
    text = lines(*(call("add", a=i, b=i) for i in range(calls)))
    result = await driver.run(text, parallel_tool_calls=parallel)
    assert result.status == "cancelled"
    assert result.stopped_by == bound
    assert result.reason == f"{bound} ({limit}) exceeded"
    assert result.rounds == rounds
    assert probe.total == len(result.tool_calls) == (rounds if not parallel else 0)
    assert len(driver.submit_requests()) == rounds
    await driver.wait_settled()
    assert driver.active_turns() == 0
    if driver.is_assistants:
        assert driver.emu.get_run(result.run_id or "")["status"] == "cancelled"


async def test_a_refused_cancel_after_a_bound_does_not_loop(open_driver: OpenDriver) -> None:
    """When the server refuses the cancel of a bound-stopped turn (400), the loop stops
    locally after a bounded number of cancel requests instead of retrying forever."""
    driver = await open_driver(policy=fast(max_tool_rounds=1), proxy=True)
    assert driver.proxy is not None
    driver.proxy.refuse_cancel = True
    result = await driver.run(
        lines(call("add", a=1, b=1), call("add", a=2, b=2)), parallel_tool_calls=False
    )
    assert result.status == "cancelled" and result.stopped_by == "max_tool_rounds"
    assert result.rounds == 1
    assert 1 <= driver.proxy.count("POST", r"/cancel$") <= 3
    assert len(driver.proxy.seen) < 20, "a request storm"


async def test_a_failing_cancel_after_a_bound_keeps_the_result(open_driver: OpenDriver) -> None:
    """A cancel answered 500 every time is one client call (its retries, bounded), not one
    per clean-up path, and the bound's result is still returned (not the ServerError)."""
    driver = await open_driver(policy=fast(max_tool_rounds=1))
    driver.emu.inject("500", method="POST", path=r"/cancel$", times=50)
    result = await driver.run(
        lines(call("add", a=1, b=1), call("add", a=2, b=2)), parallel_tool_calls=False
    )
    assert result.status == "cancelled" and result.stopped_by == "max_tool_rounds"
    assert result.rounds == 1
    assert 1 <= driver.cancel_requests() <= driver.client.retry.max_attempts


async def test_a_tool_round_without_calls_ends_cleanly(open_driver: OpenDriver) -> None:
    """A turn that requires tools but lists none ends the run (cancelled, with a reason)
    without a request storm. Only Assistants has that state: a Responses turn requires
    tools only by listing function calls (none is a final answer)."""
    driver = await open_driver(proxy=True)
    if not driver.is_assistants:
        pytest.skip("a Responses turn without function calls is a completed answer")
    assert driver.proxy is not None
    driver.proxy.empty_tool_calls = True
    result = await driver.run(call("add", a=1, b=1))
    assert result.status == "cancelled"
    assert result.reason is not None and "no tool calls" in result.reason
    assert result.tool_calls == [] and result.rounds == 0
    assert len(driver.proxy.seen) < 15, "a request storm"
    assert driver.submit_requests() == []


# --- reruns -----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["first_turn", "after_tools"])
async def test_a_failed_turn_is_rerun_when_the_policy_asks(
    open_driver: OpenDriver, where: str
) -> None:
    """rerun_on_server_error: a turn failing with server_error is sent again and completes
    (Assistants: a new run on the thread; Responses: the failed request again)."""
    driver = await open_driver(policy=fast(rerun_on_server_error=True, max_reruns=1))
    fail = {"type": "fail", "code": "server_error", "message": "down"}
    turns = (
        [fail]
        if where == "first_turn"
        else [
            {"type": "tool_calls", "calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
            fail,
        ]
    )
    driver.emu.set_scenario(scenario(*turns))
    result = await driver.run(call("add", a=2, b=3) if where == "after_tools" else "again")
    assert result.status == "completed", result
    expected = "add returned: 5" if where == "after_tools" else "You said: again"
    assert result.text == expected
    failed = int(
        driver.emu.stats.get("runs_failed" if driver.is_assistants else "responses_failed", 0)
    )
    assert failed == 1


async def test_a_failed_turn_is_a_result_without_the_rerun_policy(driver: Driver) -> None:
    """Without rerun_on_server_error a failed turn is a ``failed`` result with the error."""
    driver.emu.set_scenario(scenario({"type": "fail", "code": "server_error", "message": "down"}))
    result = await driver.run("hello")
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "server_error"
    assert driver.turns_created() == 1


async def test_refused_tool_outputs_are_not_sent_again_and_again(open_driver: OpenDriver) -> None:
    """A submission the server refuses (400) while the turn still waits for those outputs
    cannot succeed by sending them again: the run stops with the typed BadRequestError
    after one submit, and the turn is cancelled where it can be."""
    driver = await open_driver(proxy=True)
    assert driver.proxy is not None
    driver.proxy.refuse_submits = True
    with pytest.raises(BadRequestError, match="tool outputs rejected"):
        await driver.run(call("add", a=1, b=1))
    submits = driver.proxy.refused_submits
    assert submits == 1, f"{submits} submissions of refused outputs"
    await driver.wait_settled()
    assert driver.active_turns() == 0


async def test_a_tool_registered_in_a_round_is_offered_from_the_next_request(
    driver: Driver, registry: ToolRegistry
) -> None:
    """A tool a round registers (as an MCP server's list_changed does) runs in a later round
    and, on Responses, is in the tools of every request after that round and of none
    before; a list that did not change is sent again as it was."""

    async def shout(word: str) -> str:
        """Shout the word."""
        return word.upper()

    async def grow() -> str:
        """Register another tool."""
        registry.register(shout)
        return "grown"

    registry.register(grow)
    text = lines(call("grow"), call("shout", word="hi"), call("add", a=1, b=2))
    result = await driver.run(text, parallel_tool_calls=False)
    assert result.status == "completed" and result.rounds == 3
    assert [r.output for r in result.tool_calls] == ["grown", "HI", "3"]
    if driver.is_assistants:
        return  # a run's tools are set when it is created: submissions carry none
    offered = [
        [t["name"] for t in r["json"]["tools"]] for r in driver.requests("POST", RESPONSES_CREATE)
    ]
    assert len(offered) == 4
    assert "shout" not in offered[0] and "grow" in offered[0]
    assert all("shout" in names for names in offered[1:])
    assert offered[1] == offered[2] == offered[3]
