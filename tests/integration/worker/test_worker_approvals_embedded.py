"""Approvals in an embedded worker (memory queue, real orchestrator, emulator): a decided
pause goes on, an undecided one expires into timed-out rejections."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from runtime import AssistantsClient, Orchestrator, RunPolicy
from runtime.worker import (
    DecisionRecord,
    Job,
    JobState,
    MemoryQueue,
    Message,
    RunExecutor,
    StoreLedger,
    Worker,
    WorkerOptions,
    decide,
)
from tools import ToolRegistry

ran: Counter[str] = Counter()
registry = ToolRegistry()


@registry.tool(needs_approval=True, effects="write")
async def transfer(amount: int) -> str:
    """Send money.

    Args:
        amount: how much.
    """
    ran[f"transfer:{amount}"] += 1
    return f"sent {amount}"


def _worker(client: AssistantsClient, queue: MemoryQueue) -> Worker:
    orchestrator = Orchestrator(client, registry, policy=RunPolicy(), ledger=StoreLedger(queue))
    orchestrator.runner.pauses.watch = False  # the queue's sweep times pauses out
    options = WorkerOptions(
        consumer="svc-1", claim_wait_s=0.05, heartbeat_s=0.05, approval_expiry_s=0.5
    )
    return Worker(queue, RunExecutor(orchestrator.session()), options)


async def _wait_state(queue: MemoryQueue, job_id: str, state: JobState) -> None:
    async with asyncio.timeout(15):
        while (record := await queue.get(job_id)) is None or record.state is not state:
            await asyncio.sleep(0.02)


async def test_a_decided_pause_goes_on_and_an_undecided_one_expires(
    client: AssistantsClient, assistant_id: str
) -> None:
    """Both jobs pause without running the transfer; the approved one runs it once; the
    other, left undecided past approval_expiry_s, gets "rejected: approval timed out" from
    the worker's sweep; both runs complete."""
    queue = MemoryQueue()
    for job_id, amount in (("pay-1", 10), ("pay-2", 20)):
        msg = Message(content=f'/call transfer {{"amount": {amount}}}')
        await queue.submit(Job(id=job_id, assistant_id=assistant_id, messages=(msg,)))
    worker = _worker(client, queue)
    running = asyncio.create_task(worker.run())
    try:
        await _wait_state(queue, "pay-1", JobState.AWAITING_APPROVAL)
        await _wait_state(queue, "pay-2", JobState.AWAITING_APPROVAL)
        assert ran == Counter()
        record = await queue.get("pay-1")
        assert record is not None and record.progress.pause is not None
        (call_id,) = record.progress.pause.call_ids
        await decide(queue, "pay-1", call_id, DecisionRecord(approved=True, by="ann"))
        await _wait_state(queue, "pay-1", JobState.DONE)
        await _wait_state(queue, "pay-2", JobState.DONE)
    finally:
        worker.drain()
        await asyncio.wait_for(running, timeout=15)
    approved, expired = await queue.get("pay-1"), await queue.get("pay-2")
    assert approved is not None and approved.result is not None
    assert approved.result.status == "completed" and "sent 10" in approved.result.text
    assert expired is not None and expired.result is not None
    assert expired.result.status == "completed"
    (output,) = expired.result.tool_calls
    error = json.loads(output.output)["error"]
    assert error["type"] == "approval_timeout"
    assert error["message"] == "rejected: approval timed out"
    assert ran == Counter({"transfer:10": 1})
