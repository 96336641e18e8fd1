"""Sort one tool round's calls before anything runs: answered, runnable, or waiting.

* answered: a rejected call (its error output), or a write the ledger already holds (its
  recorded output, or ``outcome_unknown`` after a crash mid-write);
* waiting: a call of a ``needs_approval`` tool nobody decided yet;
* runnable: everything else (bad calls too: the dispatcher turns them into error outputs).

A runnable write is recorded as started here, before it runs (see
:mod:`runtime.core.ledger`); a second identical write of the same round waits for the first
one's output (:attr:`RoundPlan.copies`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runtime.core.approval import Decision, PendingCall, rejection_of
from runtime.core.ledger import WriteKey, WriteLedger, canonical_arguments, recorded_result
from runtime.logging import ModuleLogger
from tools import Tool, ToolCall, ToolCallResult, ToolContext, ToolRegistry
from tools.encoding import error_output
from tools.errors import ToolArgumentsError

log = ModuleLogger("runtime.run")


@dataclass
class RoundPlan:
    """What to do with each call of a round.

    Attributes:
        answered: outputs known without running anything.
        runnable: the calls to run now.
        waiting: the calls awaiting a person's decision.
        writes: call id -> the write record it started (finish it when the call ends).
        copies: call id -> the call of the same round whose output it shares (an identical
            write).
    """

    answered: list[ToolCallResult] = field(default_factory=list)
    runnable: list[ToolCall] = field(default_factory=list)
    waiting: list[PendingCall] = field(default_factory=list)
    writes: dict[str, WriteKey] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundContext:
    """Where the round runs, for approval checks and write records."""

    registry: ToolRegistry
    ledger: WriteLedger
    scope: str
    decisions: Mapping[str, Decision]
    run_id: str | None
    thread_id: str | None


async def plan_round(calls: Iterable[ToolCall], ctx: RoundContext) -> RoundPlan:
    """Sort ``calls`` (see the module doc)."""
    plan = RoundPlan()
    started: dict[WriteKey, str] = {}
    for call in calls:
        decision = ctx.decisions.get(call.id)
        if decision is not None and not decision.approved:
            plan.answered.append(rejection_of(call, decision))
            continue
        tool = ctx.registry.get(call.name)
        if tool is not None and _plain(tool):
            plan.runnable.append(call)  # valid or not, it runs (the dispatcher validates)
            continue
        arguments = _validated(tool, call)
        if tool is None or arguments is None:
            plan.runnable.append(call)  # the dispatcher answers with the error
            continue
        key = _write_key(tool, arguments, ctx.scope)
        if key is not None:
            if key in started:
                plan.copies[call.id] = started[key]
                continue
            record = await ctx.ledger.lookup(key)
            if record is not None and (record.finished or tool.unknown_outcome == "report"):
                plan.answered.append(recorded_result(call, record))
                continue
        if decision is None and await _needs_approval(tool, call, arguments, ctx):
            plan.waiting.append(PendingCall(call.id, call.name, arguments, call.arguments))
            continue
        if key is not None and not await _start_write(plan, call, tool, key, ctx.ledger):
            continue
        if key is not None:
            started[key] = call.id
        plan.runnable.append(call)
    return plan


def signature(call: ToolCall) -> str:
    """``tool:arguments`` in canonical form: what makes two requests the same call."""
    return f"{call.name}:{canonical_arguments(call.arguments)}"


def copied(result: ToolCallResult, call_id: str) -> ToolCallResult:
    """``result`` as the output of the identical call ``call_id``."""
    return replace(result, tool_call_id=call_id, seconds=0.0)


def _plain(tool: Tool) -> bool:
    """Neither a write nor ever waiting for a person: its arguments change nothing here."""
    return tool.effects != "write" and tool.needs_approval is False


def _validated(tool: Tool | None, call: ToolCall) -> dict[str, Any] | None:
    if tool is None:
        return None
    try:
        model = tool.schema.validate(call.arguments)
    except ToolArgumentsError:
        return None
    return model.model_dump(mode="json", by_alias=True)


def _write_key(tool: Tool, arguments: Mapping[str, Any], scope: str) -> WriteKey | None:
    if tool.effects != "write":
        return None
    return WriteKey(scope, tool.name, canonical_arguments(arguments))


async def _needs_approval(
    tool: Tool, call: ToolCall, arguments: dict[str, Any], ctx: RoundContext
) -> bool:
    check = tool.needs_approval
    if isinstance(check, bool):
        return check
    context = ToolContext(
        tool_call_id=call.id, tool_name=call.name, run_id=ctx.run_id, thread_id=ctx.thread_id
    )
    try:
        answer: Any = check(context, dict(arguments))
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception as exc:
        # Fail closed: a check that cannot decide leaves the decision to a person.
        log.warning("run.approval_check_failed", tool=call.name, error=type(exc).__name__)
        return True
    return bool(answer)


async def _start_write(
    plan: RoundPlan, call: ToolCall, tool: Tool, key: WriteKey, ledger: WriteLedger
) -> bool:
    """Record the write as started; False (and an answer) when it must not run."""
    try:
        existing = await ledger.record_start(key, call.id)
    except Exception as exc:
        log.warning("run.write_not_recorded", tool=call.name, error=type(exc).__name__)
        message = "the write could not be recorded before it started, so it did not run"
        output = error_output("write_not_recorded", message, call.name)
        plan.answered.append(
            ToolCallResult(
                call.id, call.name, call.arguments, output, True, 0.0, "write_not_recorded"
            )
        )
        return False
    rerun = existing is not None and not existing.finished and tool.unknown_outcome == "rerun"
    if existing is not None and not rerun:  # recorded by someone else in the meantime
        plan.answered.append(recorded_result(call, existing))
        return False
    plan.writes[call.id] = key
    return True
