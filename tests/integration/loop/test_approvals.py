"""Human approval, writes at most once and loop detection, on both protocols."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runtime import (
    ApprovalError,
    MemoryLedger,
    Orchestrator,
    PendingApproval,
    RunResult,
    approve,
    reject,
)
from runtime.core.ledger import WriteKey
from runtime.responses import ResponsesOrchestrator
from tools import ToolContext, ToolRegistry

from .conftest import API_KEY, FAST, Driver, OpenDriver, Probe, call, fast, lines, scenario


@pytest.fixture(autouse=True)
def approval_tools(registry: ToolRegistry, probe: Probe) -> None:
    """Tools that need approval, write, or decide per call."""

    @registry.tool(needs_approval=True, effects="write")
    async def transfer(amount: int, to: str) -> str:
        """Send money.

        Args:
            amount: how much.
            to: to whom.
        """
        probe.leave(probe.enter(f"transfer:{amount}:{to}"))
        return f"sent {amount} to {to}"

    def protected(ctx: ToolContext, arguments: dict[str, Any]) -> bool:
        return str(arguments["path"]).startswith("/prod")

    @registry.tool(needs_approval=protected)
    async def delete(path: str) -> str:
        """Delete a file.

        Args:
            path: which file.
        """
        probe.leave(probe.enter(f"delete:{path}"))
        return f"deleted {path}"

    def broken(ctx: ToolContext, arguments: dict[str, Any]) -> bool:
        raise LookupError("policy service down")

    @registry.tool(needs_approval=broken)
    async def wipe(disk: str) -> str:
        """Wipe a disk.

        Args:
            disk: which one.
        """
        probe.leave(probe.enter(f"wipe:{disk}"))
        return f"wiped {disk}"

    @registry.tool(effects="write")
    async def send_email(to: str, body: str = "hi") -> str:
        """Send an email.

        Args:
            to: the address.
            body: the text.
        """
        probe.leave(probe.enter(f"send_email:{to}"))
        return f"mailed {to}"

    @registry.tool(effects="write", unknown_outcome="rerun")
    async def bump(counter: str) -> str:
        """Increment a counter (safe to redo).

        Args:
            counter: its name.
        """
        probe.leave(probe.enter(f"bump:{counter}"))
        return f"bumped {counter}"


def pending_of(result: RunResult[Any]) -> PendingApproval:
    assert result.status == "awaiting_approval", (result.status, result.reason)
    assert result.pending is not None
    return result.pending


def by_tool(pending: PendingApproval) -> dict[str, str]:
    return {c.tool: c.id for c in pending.calls}


async def test_a_call_needing_approval_pauses_the_run_and_runs_once_approved(
    driver: Driver, probe: Probe
) -> None:
    """The round's other call runs at once, nothing is submitted while paused; once approved
    the call runs and the round's outputs go back in ONE submission."""
    result = await driver.run(lines(call("transfer", amount=5, to="bob"), call("add", a=1, b=2)))
    pending = pending_of(result)
    (waiting,) = pending.calls
    assert waiting.tool == "transfer" and waiting.arguments == {"amount": 5, "to": "bob"}
    assert probe.calls["add:1+2"] == 1 and probe.calls["transfer:5:bob"] == 0
    assert driver.submit_requests() == []
    assert await driver.status(pending.turn_id) in ("requires_action", "completed")
    final = await driver.orch.resume(pending, decisions={waiting.id: approve()})
    assert final.status == "completed", final.reason
    assert probe.calls["transfer:5:bob"] == 1 and probe.calls["add:1+2"] == 1
    (submitted,) = driver.submit_requests()
    assert [s["output"] for s in submitted] == ["sent 5 to bob", "3"]
    assert "transfer returned: sent 5 to bob" in final.text
    assert final.rounds == 1


async def test_a_rejected_call_never_runs_and_the_model_reads_why(
    driver: Driver, probe: Probe
) -> None:
    """A rejection is an error output ``rejected: <reason>`` the model reads; the tool never
    runs."""
    pending = pending_of(await driver.run(call("transfer", amount=900, to="eve")))
    final = await driver.orch.resume(pending, decisions={pending.calls[0].id: reject("too much")})
    assert final.status == "completed"
    assert probe.calls["transfer:900:eve"] == 0
    (submitted,) = driver.submit_requests()
    error = json.loads(submitted[0]["output"])["error"]
    assert error["type"] == "rejected" and error["message"] == "rejected: too much"
    assert "rejected: too much" in final.text


async def test_a_mixed_round_approves_some_rejects_others_and_asks_per_call(
    driver: Driver, probe: Probe
) -> None:
    """A per-call check asks only for protected paths; decisions for part of the calls run
    those and pause again; the last decision sends every output of the round at once."""
    text = lines(
        call("delete", path="/tmp/a"),
        call("delete", path="/prod/db"),
        call("transfer", amount=1, to="ann"),
        call("transfer", amount=2, to="ben"),
    )
    pending = pending_of(await driver.run(text))
    assert probe.calls["delete:/tmp/a"] == 1  # the check said no approval needed
    assert [c.arguments for c in pending.calls] == [
        {"path": "/prod/db"},
        {"amount": 1, "to": "ann"},
        {"amount": 2, "to": "ben"},
    ]
    prod, ann, ben = pending.call_ids
    again = pending_of(
        await driver.orch.resume(pending, decisions={ann: approve(), prod: reject("no")})
    )
    assert again.call_ids == (ben,) and probe.calls["transfer:1:ann"] == 1
    assert driver.submit_requests() == []
    # The same decision again is a no-op; a different one for a decided call is an error.
    with pytest.raises(ApprovalError, match="already decided"):
        await driver.orch.resume(again, decisions={ann: reject("changed my mind")})
    final = await driver.orch.resume(again, decisions={ann: approve(), ben: approve()})
    assert final.status == "completed"
    (submitted,) = driver.submit_requests()
    outputs = [s["output"] for s in submitted]
    assert outputs[0] == "deleted /tmp/a" and "rejected: no" in outputs[1]
    assert outputs[2:] == ["sent 1 to ann", "sent 2 to ben"]
    assert probe.calls["delete:/prod/db"] == 0 and probe.calls["transfer:2:ben"] == 1
    assert probe.calls["transfer:1:ann"] == 1


async def test_a_decision_for_an_unknown_call_is_a_clear_error_and_sends_nothing(
    driver: Driver, probe: Probe
) -> None:
    """An unknown call id raises ApprovalError naming the pending calls; the pause stays
    resumable; resuming it twice with the same decisions gives the same outcome."""
    pending = pending_of(await driver.run(call("transfer", amount=3, to="kim")))
    with pytest.raises(ApprovalError, match="no call 'call_nope' awaits approval"):
        await driver.orch.resume(pending, decisions={"call_nope": approve()})
    assert driver.submit_requests() == []
    decisions = {pending.calls[0].id: approve()}
    final = await driver.orch.resume(pending, decisions=decisions)
    again = await driver.orch.resume(pending, decisions=decisions)
    assert again is final and probe.calls["transfer:3:kim"] == 1
    with pytest.raises(ApprovalError, match="already decided"):
        await driver.orch.resume(pending, decisions={pending.calls[0].id: reject("late")})
    assert len(driver.submit_requests()) == 1


async def test_the_pending_state_is_plain_json_and_only_assistants_pauses_expire(
    driver: Driver,
) -> None:
    """PendingApproval survives a JSON round trip unchanged; it carries expires_at on
    Assistants and none on Responses (a pause lasts as long as the response is kept)."""
    pending = pending_of(await driver.run(call("transfer", amount=4, to="lee")))
    copy = PendingApproval.from_json(json.loads(json.dumps(pending.to_json())))
    assert copy == pending
    assert (pending.expires_at is not None) == driver.is_assistants
    with pytest.raises(ApprovalError, match="not a pending approval"):
        PendingApproval.from_json({"protocol": "x"})


_SECOND_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    from runtime import (AssistantsClient, Orchestrator, PendingApproval, RunPolicy, approve,
                         reject)
    from runtime.responses import ResponsesClient, ResponsesOrchestrator
    from tools import ToolRegistry

    protocol, base_url, api_key, path = sys.argv[1:]
    registry = ToolRegistry()
    ran = []

    @registry.tool(needs_approval=True, effects="write")
    async def transfer(amount: int, to: str) -> str:
        ran.append(to)
        return f"sent {amount} to {to} (second process)"

    @registry.tool
    async def add(a: int, b: int) -> int:
        ran.append("add")
        return a + b

    async def main():
        data = json.loads(open(path).read())
        pending = PendingApproval.from_json(data["pending"])
        decisions = {k: approve() if v == "y" else reject(v) for k, v in data["decisions"].items()}
        policy = RunPolicy(poll_interval_s=0.02, max_poll_interval_s=0.05)
        if protocol == "assistants":
            async with AssistantsClient(base_url=base_url, api_key=api_key) as client:
                orch = Orchestrator(client, registry, policy=policy)
                result = await orch.resume(pending, decisions=decisions)
        else:
            async with ResponsesClient(base_url=base_url, api_key=api_key) as client:
                orch = ResponsesOrchestrator(client, registry, policy=policy)
                result = await orch.resume(pending, decisions=decisions)
        print(json.dumps({"status": result.status, "text": result.text, "ran": ran}))

    asyncio.run(main())
    """
)


async def test_another_process_resumes_the_pause_from_its_json(
    driver: Driver, probe: Probe, tmp_path: Path
) -> None:
    """The pending state written to a file is enough: a second process resumes it with its
    own orchestrator; the call ran there, once, and the first process's output is sent
    with it in one submission."""
    pending = pending_of(
        await driver.run(lines(call("add", a=2, b=2), call("transfer", amount=7, to="max")))
    )
    transfer_id = by_tool(pending)["transfer"]
    state = tmp_path / "pending.json"
    state.write_text(json.dumps({"pending": pending.to_json(), "decisions": {transfer_id: "y"}}))
    script = tmp_path / "resume.py"
    script.write_text(_SECOND_PROCESS)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        driver.protocol,
        driver.emu.base_url,
        API_KEY,
        str(state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    answer = json.loads(out.decode().strip().splitlines()[-1])
    assert answer["status"] == "completed"
    assert answer["ran"] == ["max"]  # add ran in the first process only
    assert probe.calls["add:2+2"] == 1
    (submitted,) = driver.submit_requests()
    assert [s["output"] for s in submitted] == ["4", "sent 7 to max (second process)"]


@pytest.mark.parametrize("action", ["reject", "expire"])
async def test_a_pause_reaching_the_expiry_margin_rejects_or_expires(
    open_driver: OpenDriver, probe: Probe, action: str
) -> None:
    """Assistants only (Responses have no expires_at): a pause still undecided at
    expires_at - margin is rejected as timed out (the run goes on, the model reads why) or
    left to expire; the result's reason says which, and a late approval runs nothing."""
    driver = await open_driver(
        emulator={"run_ttl_s": 4.0},
        policy=fast(expiry_margin_s=2.5, approval_timeout=action, expiry_grace_s=2.0),
    )
    if not driver.is_assistants:
        pytest.skip("responses have no expires_at: a pause lasts while the response is kept")
    pending = pending_of(await driver.run(call("transfer", amount=8, to="sam")))
    await asyncio.sleep(2.5)  # past expires_at - margin (the Date header counts whole seconds)
    if action == "reject":  # nobody resumed: the runner's watchdog already answered in time
        assert len(driver.submit_requests()) == 1
    final = await driver.orch.resume(pending, decisions={pending.calls[0].id: approve()})
    assert probe.calls["transfer:8:sam"] == 0
    assert final.reason is not None and "approval timed out" in final.reason
    if action == "reject":
        assert final.status == "completed" and "rejected" in final.reason
        (submitted,) = driver.submit_requests()
        error = json.loads(submitted[0]["output"])["error"]
        assert error == {
            "type": "approval_timeout",
            "message": "rejected: approval timed out",
            "tool": "transfer",
        }
    else:
        assert final.status == "expired" and final.stopped_by == "approval_timeout"
        assert "expire" in final.reason
        assert driver.submit_requests() == []
        assert await driver.status(pending.turn_id) == "expired"


async def test_a_responses_pause_outlives_a_wait_and_a_resumed_call_still_runs(
    driver: Driver, probe: Probe
) -> None:
    """With a long expiry (Assistants) or none (Responses) a pause is resumed after a wait
    and the approved call runs; nothing was submitted meanwhile."""
    pending = pending_of(await driver.run(call("transfer", amount=9, to="ola")))
    await asyncio.sleep(0.5)
    assert driver.submit_requests() == []
    final = await driver.orch.resume(pending, decisions={pending.calls[0].id: approve()})
    assert final.status == "completed" and probe.calls["transfer:9:ola"] == 1


async def test_a_replanned_write_is_answered_from_the_record(driver: Driver, probe: Probe) -> None:
    """The model asks for the same write again under a new call id: it gets the recorded
    output, and the email is sent once."""
    write = {"type": "tool_calls", "calls": [{"name": "send_email", "arguments": {"to": "x@y"}}]}
    driver.emu.set_scenario(scenario(write, write, {"type": "text", "text": "{outputs}"}))
    result = await driver.run("mail x")
    assert result.status == "completed", result.reason
    first, second = result.tool_calls
    assert first.tool_call_id != second.tool_call_id
    assert first.output == second.output == "mailed x@y"
    assert probe.calls["send_email:x@y"] == 1
    assert [s[0]["output"] for s in driver.submit_requests()] == ["mailed x@y", "mailed x@y"]


async def test_two_identical_writes_in_one_round_run_once(driver: Driver, probe: Probe) -> None:
    """Two identical write calls of one round (defaults filled in count as the same) share
    one execution."""
    result = await driver.run(
        lines(call("send_email", to="a@b"), call("send_email", to="a@b", body="hi"))
    )
    assert result.status == "completed"
    assert [r.output for r in result.tool_calls] == ["mailed a@b", "mailed a@b"]
    assert probe.calls["send_email:a@b"] == 1


class _LostFinish(MemoryLedger):
    """A ledger whose finish records are lost, as when the process dies mid-write."""

    async def record_finish(self, key: WriteKey, output: str, is_error: bool) -> None:
        raise OSError("the store went away")


def _with_ledger(driver: Driver, registry: ToolRegistry, ledger: MemoryLedger) -> Driver:
    if isinstance(driver.orch, Orchestrator):
        assert not isinstance(driver.client, type(None))
        orch: Any = Orchestrator(driver.client, registry, policy=FAST, ledger=ledger)  # type: ignore[arg-type]
    else:
        orch = ResponsesOrchestrator(driver.client, registry, policy=FAST, ledger=ledger)  # type: ignore[arg-type]
    return replace(driver, orch=orch)


@pytest.mark.parametrize("tool", ["send_email", "bump"])
async def test_a_write_whose_outcome_was_never_recorded_is_not_rerun_blindly(
    driver: Driver, probe: Probe, registry: ToolRegistry, tool: str
) -> None:
    """A write started but never recorded as finished: the re-planned identical call gets an
    ``outcome_unknown`` error telling the model to verify; a tool that opted out
    (``unknown_outcome="rerun"``) runs again."""
    driver = _with_ledger(driver, registry, _LostFinish())
    arguments: Mapping[str, Any] = {"to": "z@z"} if tool == "send_email" else {"counter": "c"}
    write = {"type": "tool_calls", "calls": [{"name": tool, "arguments": dict(arguments)}]}
    driver.emu.set_scenario(scenario(write, write, {"type": "text", "text": "{outputs}"}))
    result = await driver.run("do it")
    assert result.status == "completed"
    first, second = result.tool_calls
    assert not first.is_error
    label = "send_email:z@z" if tool == "send_email" else "bump:c"
    if tool == "send_email":
        assert second.error_type == "outcome_unknown" and probe.calls[label] == 1
        assert "verify" in json.loads(second.output)["error"]["message"]
    else:
        assert not second.is_error and probe.calls[label] == 2


async def test_the_same_call_requested_again_and_again_stops_the_run(
    driver: Driver, probe: Probe
) -> None:
    """Loop detection: the same tool with the same arguments requested max_repeated_calls
    (3) times stops the run before the third runs; the reason says so."""
    same = {"type": "tool_calls", "calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}]}
    driver.emu.set_scenario(scenario(same, then="repeat"))
    result = await driver.run("loop")
    assert result.status == "cancelled" and result.stopped_by == "repeated_call"
    assert result.reason is not None and "'add' was requested 3 times" in result.reason
    assert probe.calls["add:1+1"] == 2
    await driver.wait_settled()
    assert driver.active_turns() == 0


async def test_loop_detection_can_be_turned_off(open_driver: OpenDriver, probe: Probe) -> None:
    """max_repeated_calls=None: the run goes on until another bound stops it."""
    driver = await open_driver(policy=fast(max_repeated_calls=None, max_tool_rounds=4))
    same = {"type": "tool_calls", "calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}]}
    driver.emu.set_scenario(scenario(same, then="repeat"))
    result = await driver.run("loop")
    assert result.stopped_by == "max_tool_rounds" and probe.calls["add:1+1"] == 4


async def test_an_approval_check_that_fails_asks_a_person(driver: Driver, probe: Probe) -> None:
    """A per-call check that raises fails closed: the call waits for approval."""
    pending = pending_of(await driver.run(call("wipe", disk="sda")))
    assert pending.calls[0].tool == "wipe" and probe.calls["wipe:sda"] == 0


async def test_an_approved_write_planned_again_is_answered_without_asking_again(
    driver: Driver, probe: Probe
) -> None:
    """After an approved transfer ran, the model asks for the same transfer again (new call
    id): the record answers, nobody is asked twice and the money moves once."""
    transfer = {"name": "transfer", "arguments": {"amount": 6, "to": "zoe"}}
    again = {"type": "tool_calls", "calls": [transfer]}
    driver.emu.set_scenario(scenario(again, again, {"type": "text", "text": "{outputs}"}))
    pending = pending_of(await driver.run("pay zoe"))
    final = await driver.orch.resume(pending, decisions={pending.calls[0].id: approve()})
    assert final.status == "completed", final.reason
    assert probe.calls["transfer:6:zoe"] == 1
    assert [r.output for r in final.tool_calls] == ["sent 6 to zoe", "sent 6 to zoe"]
