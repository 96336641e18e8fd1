"""Pauses for approval in every queue backend: state, decisions, expiry, the write ledger,
and the worker's decision endpoint."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from runtime.core.ledger import WriteKey
from runtime.worker import (
    DecisionError,
    DecisionRecord,
    Job,
    JobState,
    Lease,
    MemoryQueue,
    Message,
    PauseRecord,
    StoreLedger,
    Worker,
    WorkerOptions,
    decide,
    expire_pauses,
)
from runtime.worker.approvals import ApprovalStore
from runtime.worker.http import HealthServer
from runtime.worker.runner import JobContext, RunOutcome

from .conftest import QueueFactory

CALLS = ("call_a", "call_b")


def _pause(expires_in_s: float = 3600.0) -> PauseRecord:
    pending = {"protocol": "assistants", "turn_id": "run_1", "conversation": "thread_1"}
    return PauseRecord(
        pending={**pending, "calls": []}, call_ids=CALLS, expires_at=time.time() + expires_in_s
    )


async def _paused_job(make_queue: QueueFactory, expires_in_s: float = 3600.0) -> Any:
    queue = await make_queue()
    assert isinstance(queue, ApprovalStore)
    await queue.submit(Job(id="job-1", assistant_id="asst", messages=(Message(content="hi"),)))
    (lease,) = await queue.claim("w1", 1, 0.5)
    assert await queue.pause(lease, _pause(expires_in_s))
    return queue, lease


async def test_a_paused_job_waits_for_every_decision_then_is_queued_again(
    make_queue: QueueFactory,
) -> None:
    """A paused job is neither claimable nor unfinished; decisions are recorded with who and
    when; the same decision again changes nothing; the last one queues the job, and the
    next lease carries the pause and the decisions."""
    queue, lease = await _paused_job(make_queue)
    record = await queue.get("job-1")
    assert record.state is JobState.AWAITING_APPROVAL
    assert record.progress.pause.call_ids == CALLS
    stats = await queue.stats()
    assert stats.awaiting_approval == 1 and stats.unfinished == 0
    assert await queue.claim("w2", 1, 0.2) == []
    assert not await queue.heartbeat(lease)  # the pause ended the lease
    ann = DecisionRecord(approved=True, by="ann")
    assert await decide(queue, "job-1", "call_a", ann) == "recorded"
    assert await decide(queue, "job-1", "call_a", DecisionRecord(approved=True)) == "unchanged"
    assert await queue.claim("w2", 1, 0.2) == []
    no = DecisionRecord(approved=False, reason="not today", by="bob")
    assert await decide(queue, "job-1", "call_b", no) == "queued"
    (again,) = await queue.claim("w2", 1, 1.0)
    assert again.progress.pause is not None and again.progress.pause.call_ids == CALLS
    decisions = again.progress.decisions
    assert decisions["call_a"].by == "ann" and decisions["call_a"].approved
    assert decisions["call_b"].reason == "not today" and decisions["call_b"].at > 0


@pytest.mark.parametrize(
    ("call_id", "decision", "message"),
    [
        ("call_zz", DecisionRecord(approved=True), "no call call_zz awaits approval"),
        ("call_a", DecisionRecord(approved=False, reason="no"), "already approved"),
        ("call_a", DecisionRecord(approved=False, reason=" "), "needs a reason"),
    ],
)
async def test_a_decision_the_job_cannot_take_is_refused(
    make_queue: QueueFactory, call_id: str, decision: DecisionRecord, message: str
) -> None:
    """An unknown call, a changed decision, or a rejection without a reason raise
    DecisionError naming the problem, and change nothing."""
    queue, _lease = await _paused_job(make_queue)
    await decide(queue, "job-1", "call_a", DecisionRecord(approved=True, by="ann"))
    with pytest.raises(DecisionError, match=message):
        await decide(queue, "job-1", call_id, decision)
    record = await queue.get("job-1")
    assert set(record.progress.decisions) == {"call_a"}
    assert record.state is JobState.AWAITING_APPROVAL


async def test_decisions_for_a_job_that_is_not_paused_are_refused(
    make_queue: QueueFactory,
) -> None:
    """No such job, or a job that never paused: DecisionError."""
    queue = await make_queue()
    await queue.submit(Job(id="job-2", assistant_id="asst", messages=(Message(content="hi"),)))
    with pytest.raises(DecisionError, match="not awaiting approval"):
        await decide(queue, "job-2", "call_a", DecisionRecord(approved=True))
    with pytest.raises(DecisionError, match="no such job"):
        await decide(queue, "job-nope", "call_a", DecisionRecord(approved=True))


async def test_an_expired_pause_rejects_its_undecided_calls(make_queue: QueueFactory) -> None:
    """Past its expires_at a pause's undecided calls are rejected as timed out (a decision
    made before stays) and the job is queued again."""
    queue, _lease = await _paused_job(make_queue, expires_in_s=-1.0)
    await decide(queue, "job-1", "call_a", DecisionRecord(approved=True, by="ann"))
    assert await expire_pauses(queue) == ["job-1"]
    record = await queue.get("job-1")
    assert record.state is JobState.QUEUED
    assert record.progress.decisions["call_a"].approved
    timed_out = record.progress.decisions["call_b"]
    assert not timed_out.approved and timed_out.by == "approval_timeout"
    assert await expire_pauses(queue) == []


async def test_the_write_ledger_lives_in_the_store(make_queue: QueueFactory) -> None:
    """A write started in one queue object is seen by another on the same store; the first
    start wins; the finish is kept with its output."""
    first, second = await make_queue(), await make_queue()
    assert isinstance(first, ApprovalStore) and isinstance(second, ApprovalStore)
    key = WriteKey("job-1", "send", '{"to":"x"}')
    assert await StoreLedger(first).record_start(key, "call_1") is None
    existing = await StoreLedger(second).record_start(key, "call_2")
    assert existing is not None and existing.call_id == "call_1" and not existing.finished
    await StoreLedger(first).record_finish(key, "sent", False)
    done = await StoreLedger(second).lookup(key)
    assert done is not None and done.output == "sent" and done.call_id == "call_1"


async def _outcome(ctx: JobContext) -> RunOutcome:
    raise AssertionError("not run")


@pytest.mark.parametrize("token", ["", "s3cret-token"])
async def test_the_decision_endpoint_records_decisions_behind_its_token(token: str) -> None:
    """POST /jobs/J/calls/C/approve|reject records the decision (who from the body); with a
    token configured a request without it gets 401; a bad decision gets 409."""
    queue = MemoryQueue()
    await queue.submit(Job(id="job-1", assistant_id="asst", messages=(Message(content="hi"),)))
    (lease,) = await queue.claim("w1", 1, 0.5)
    assert isinstance(lease, Lease) and await queue.pause(lease, _pause())
    worker = Worker(queue, _outcome, WorkerOptions("w1"))
    server = HealthServer(worker, port=0, approval_token=token)
    await server.start()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession() as http:
            base = f"{server.url}/jobs/job-1/calls"
            if token:
                async with http.post(f"{base}/call_a/approve", json={}) as answer:
                    assert answer.status == 401
                assert (await queue.get("job-1")).progress.decisions == {}  # type: ignore[union-attr]
            async with http.post(
                f"{base}/call_a/approve", json={"by": "ann"}, headers=headers
            ) as answer:
                assert answer.status == 200 and (await answer.json())["outcome"] == "recorded"
            async with http.post(f"{base}/call_b/reject", json={}, headers=headers) as answer:
                assert answer.status == 409 and "reason" in (await answer.json())["error"]
            async with http.post(
                f"{base}/call_b/reject", json={"reason": "no", "by": "bob"}, headers=headers
            ) as answer:
                assert (await answer.json())["outcome"] == "queued"
    finally:
        await server.aclose()
    record = await queue.get("job-1")
    assert record is not None and record.state is JobState.QUEUED
    assert record.progress.decisions["call_a"].by == "ann"
    assert record.progress.decisions["call_b"].reason == "no"


async def test_resuming_after_pauses_is_not_counted_as_redelivery(
    make_queue: QueueFactory,
) -> None:
    """A job that pauses and resumes more often than max_deliveries is still delivered (a
    resume is no redelivery), while the attempt counter keeps fencing."""
    queue = await make_queue(max_deliveries=2)
    assert isinstance(queue, ApprovalStore)
    await queue.submit(Job(id="job-p", assistant_id="asst", messages=(Message(content="hi"),)))
    attempts = []
    for _ in range(4):
        (lease,) = await queue.claim("w1", 1, 1.0)
        attempts.append(lease.attempt)
        one = PauseRecord(
            pending={"turn_id": "run_1"}, call_ids=("c",), expires_at=time.time() + 60
        )
        assert await queue.pause(lease, one)
        assert await decide(queue, "job-p", "c", DecisionRecord(approved=True)) == "queued"
    assert attempts == [1, 2, 3, 4]
    (lease,) = await queue.claim("w1", 1, 1.0)
    assert lease.attempt == 5
    record = await queue.get("job-p")
    assert record is not None and record.state is JobState.RUNNING


def test_the_approval_token_never_shows_in_a_repr() -> None:
    """http.approval_token is masked in the settings' repr."""
    from runtime.worker.settings import HttpSettings

    settings = HttpSettings(approval_token="tok-3f9a7c1e")
    assert "tok-3f9a7c1e" not in repr(settings) and "***" in repr(settings)
