"""The queue contract, run against every backend (memory, sqlite, redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from runtime.worker.memory import MemoryQueue
from runtime.worker.models import Job, JobResult, JobState, JobTimings, Lease, Message, ToolOutput
from runtime.worker.queue import JobQueue, LeaseLost, wait_for_result

QueueFactory = Callable[..., Awaitable[JobQueue]]


def _job(job_id: str) -> Job:
    return Job(id=job_id, assistant_id="asst_1", messages=(Message(content="hi"),))


def _result(lease: Lease, text: str) -> JobResult:
    now = time.time()
    return JobResult(
        job_id=lease.job.id,
        run_id="run_1",
        conversation_id="thread_1",
        status="completed",
        text=text,
        timings=JobTimings(
            submitted_at=now, started_at=now, finished_at=now, run_seconds=0, total_seconds=0
        ),
        attempts=lease.attempt,
    )


async def _claim_one(queue: object, consumer: str, wait_s: float = 0.5) -> Lease:
    leases = await queue.claim(consumer, 1, wait_s)  # type: ignore[attr-defined]
    assert len(leases) == 1, leases
    return leases[0]


async def test_submit_is_idempotent(make_queue: QueueFactory) -> None:
    """Submitting the same job id twice stores one job and reports the duplicate."""
    queue = await make_queue()
    assert await queue.submit(_job("j1")) is True
    assert await queue.submit(_job("j1")) is False
    leases = await queue.claim("w1", 5, 0.2)
    assert [lease.job.id for lease in leases] == ["j1"]
    assert (await queue.stats()).unfinished == 1


async def test_claim_respects_count_and_order(make_queue: QueueFactory) -> None:
    """A claim never returns more than the free slots, oldest jobs first."""
    queue = await make_queue()
    for i in range(5):
        await queue.submit(_job(f"j{i}"))
    first = await queue.claim("w1", 2, 0.2)
    second = await queue.claim("w1", 10, 0.2)
    assert [lease.job.id for lease in first] == ["j0", "j1"]
    assert sorted(lease.job.id for lease in second) == ["j2", "j3", "j4"]
    assert all(lease.attempt == 1 for lease in first + second)
    assert await queue.claim("w2", 1, 0.1) == []


async def test_complete_stores_result_once(make_queue: QueueFactory) -> None:
    """complete() stores the result and finishes the job; a second complete is refused."""
    queue = await make_queue()
    await queue.submit(_job("j1"))
    lease = await _claim_one(queue, "w1")
    assert await queue.complete(lease, _result(lease, "first")) is True
    assert await queue.complete(lease, _result(lease, "second")) is False
    record = await wait_for_result(queue, "j1", timeout_s=1)
    assert record is not None and record.state is JobState.DONE
    assert record.result is not None and record.result.text == "first"
    stats = await queue.stats()
    assert (stats.queued, stats.running) == (0, 0)


async def test_fencing_refuses_writes_of_a_superseded_worker(make_queue: QueueFactory) -> None:
    """After a successor reclaims an idle job, the old holder can no longer write anything."""
    queue = await make_queue(lease_s=0.2)
    await queue.submit(_job("j1"))
    old = await _claim_one(queue, "w-old")
    await asyncio.sleep(0.35)  # no heartbeat: the lease expires
    new = await _claim_one(queue, "w-new")
    assert (old.attempt, new.attempt) == (1, 2)
    assert await queue.heartbeat(old) is False
    with pytest.raises(LeaseLost):
        await queue.save_progress(old, run_id="run_stale")
    assert await queue.complete(old, _result(old, "stale")) is False
    assert await queue.release(old) is False
    assert await queue.complete(new, _result(new, "fresh")) is True
    record = await queue.get("j1")
    assert record is not None and record.result is not None
    assert record.result.text == "fresh" and record.progress.run_id is None


async def test_progress_survives_reclaim(make_queue: QueueFactory) -> None:
    """thread id, run id and tool outputs saved by a dead worker reach its successor."""
    queue = await make_queue(lease_s=0.2)
    await queue.submit(_job("j1"))
    old = await _claim_one(queue, "w-old")
    await queue.save_progress(old, conversation_id="thread_9")
    await queue.save_progress(old, run_id="run_9")
    out = ToolOutput(id="call_1", name="echo", arguments="{}", output="ok", seconds=0.1)
    await queue.save_progress(old, tool_output=out)
    await asyncio.sleep(0.35)
    new = await _claim_one(queue, "w-new")
    assert new.progress.conversation_id == "thread_9"
    assert new.progress.run_id == "run_9"
    assert new.progress.tool_outputs == {"call_1": out}


async def test_heartbeat_keeps_the_lease(make_queue: QueueFactory) -> None:
    """A job whose holder heartbeats is not handed to another worker after the lease time."""
    queue = await make_queue(lease_s=0.3)
    await queue.submit(_job("j1"))
    lease = await _claim_one(queue, "w1")
    for _ in range(6):
        await asyncio.sleep(0.1)
        assert await queue.heartbeat(lease) is True
    assert await queue.claim("w2", 1, 0.0) == []
    assert await queue.complete(lease, _result(lease, "ok")) is True


async def test_release_redelivers_and_drain_starts_a_new_generation(
    make_queue: QueueFactory,
) -> None:
    """A released job is claimable again; a drain-cancelled run is forgotten by the next holder."""
    queue = await make_queue(lease_s=5)
    await queue.submit(_job("j1"))
    first = await _claim_one(queue, "w1")
    await queue.save_progress(first, conversation_id="thread_1", run_id="run_1")
    await queue.save_progress(first, tool_output=ToolOutput(id="call_1", name="t"))
    assert await queue.release(first, error="drained", worker_cancelled=True) is True
    second = await _claim_one(queue, "w2")
    assert second.attempt == 2 and second.progress.worker_cancelled
    fresh = await queue.new_run_generation(second)
    assert fresh.progress.run_id is None and fresh.progress.run_seq == 1
    assert fresh.progress.conversation_id == "thread_1" and fresh.progress.tool_outputs == {}
    record = await queue.get("j1")
    assert record is not None and record.last_error == "drained"


async def test_flag_run_cancelled_only_marks_the_current_run(make_queue: QueueFactory) -> None:
    """flag_run_cancelled marks the job's current run and ignores a stale run id."""
    queue = await make_queue()
    await queue.submit(_job("j1"))
    lease = await _claim_one(queue, "w1")
    await queue.save_progress(lease, conversation_id="thread_1", run_id="run_2")
    assert await queue.flag_run_cancelled("j1", "run_1") is False
    record = await queue.get("j1")
    assert record is not None and not record.progress.worker_cancelled
    assert await queue.flag_run_cancelled("j1", "run_2") is True
    record = await queue.get("j1")
    assert record is not None and record.progress.worker_cancelled


async def test_release_with_delay_holds_the_job_back(make_queue: QueueFactory) -> None:
    """A job released with a delay is not claimable before the delay."""
    queue = await make_queue(lease_s=5)
    await queue.submit(_job("j1"))
    lease = await _claim_one(queue, "w1")
    assert await queue.release(lease, delay_s=0.4) is True
    assert await queue.claim("w1", 1, 0.0) == []
    again = await _claim_one(queue, "w1", wait_s=2.0)
    assert again.attempt == 2


async def test_job_dies_after_max_deliveries(make_queue: QueueFactory) -> None:
    """A job delivered max_deliveries times without a result lands in the dead-letter store."""
    queue = await make_queue(lease_s=5, max_deliveries=2)
    await queue.submit(_job("poison"))
    for attempt in (1, 2):
        lease = await _claim_one(queue, "w1")
        assert lease.attempt == attempt
        await queue.release(lease, error="boom")
    assert await queue.claim("w1", 1, 0.2) == []
    record = await queue.get("poison")
    assert record is not None and record.state is JobState.DEAD
    assert [r.job.id for r in await queue.dead_letters()] == ["poison"]
    assert (await queue.stats()).dead == 1


async def test_explicit_dead_letter(make_queue: QueueFactory) -> None:
    """dead_letter() moves a job to the dead-letter store with its error."""
    queue = await make_queue()
    await queue.submit(_job("j1"))
    lease = await _claim_one(queue, "w1")
    assert await queue.dead_letter(lease, "invalid job") is True
    dead = await queue.dead_letters()
    assert [r.job.id for r in dead] == ["j1"] and dead[0].last_error == "invalid job"
    assert await queue.claim("w1", 1, 0.1) == []


async def test_recent_lists_newest_first(make_queue: QueueFactory) -> None:
    """recent() lists jobs newest first with their states."""
    queue = await make_queue()
    for i in range(3):
        await queue.submit(_job(f"j{i}"))
        await asyncio.sleep(0.002)
    lease = await _claim_one(queue, "w1")
    records = await queue.recent(2)
    assert [r.job.id for r in records] == ["j2", "j1"]
    assert lease.job.id == "j0"
    assert (await queue.get("j0")) is not None
    assert await queue.get("missing") is None


async def test_two_queue_objects_share_one_store(make_queue: QueueFactory) -> None:
    """Two queue objects (two workers) never lease the same job twice."""
    a = await make_queue()
    b = await make_queue()
    for i in range(20):
        await a.submit(_job(f"j{i}"))
    got_a, got_b = await asyncio.gather(a.claim("wa", 20, 0.2), b.claim("wb", 20, 0.2))
    ids = [lease.job.id for lease in got_a + got_b]
    assert sorted(ids) == sorted(f"j{i}" for i in range(20))


async def test_save_progress_stores_several_tool_outputs_in_one_write(
    make_queue: QueueFactory,
) -> None:
    """One save_progress call stores every output it is given (fenced), next to earlier ones."""
    queue = await make_queue()
    await queue.submit(_job("j1"))
    lease = await _claim_one(queue, "w1")
    await queue.save_progress(lease, tool_output=ToolOutput(id="call_0", name="t", output="0"))
    batch = [ToolOutput(id=f"call_{i}", name="t", output=str(i)) for i in range(1, 4)]
    await queue.save_progress(lease, run_id="run_1", tool_outputs=batch)
    record = await (await make_queue()).get("j1")  # another queue object on the same store
    assert record is not None and record.progress.run_id == "run_1"
    stored = record.progress.tool_outputs
    assert sorted(stored) == ["call_0", "call_1", "call_2", "call_3"]
    assert stored["call_3"].output == "3"


class _CountingQueue:
    """A real queue that counts its save_progress calls (each is one fenced write)."""

    def __init__(self, inner: JobQueue) -> None:
        self._inner = inner
        self.writes: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def save_progress(self, lease: Lease, **fields: object) -> None:
        self.writes.append(len(fields.get("tool_outputs", ())))  # type: ignore[arg-type]
        await self._inner.save_progress(lease, **fields)  # type: ignore[arg-type]


async def test_outputs_finishing_together_share_a_write(make_queue: QueueFactory) -> None:
    """A round's calls finishing at once are stored in two writes, not one each, and every
    save_tool_output returns only once its own output is stored (what resuming relies on)."""
    from runtime.worker.runner import JobContext

    queue = await make_queue()
    await queue.submit(_job("j1"))
    lease = await _claim_one(queue, "w1")
    counting = _CountingQueue(queue)
    ctx = JobContext(queue=counting, lease=lease)  # type: ignore[arg-type]
    missing: list[str] = []

    async def finish(i: int) -> None:
        await ctx.save_tool_output(ToolOutput(id=f"call_{i}", name="t", output=str(i)))
        record = await queue.get("j1")
        if record is None or f"call_{i}" not in record.progress.tool_outputs:
            missing.append(f"call_{i}")

    await asyncio.gather(*(finish(i) for i in range(8)))
    assert missing == [] and sum(counting.writes) == 8
    if not isinstance(queue, MemoryQueue):  # a write that never suspends has no one to join
        assert len(counting.writes) == 2, counting.writes
    writes = len(counting.writes)
    await ctx.save_tool_output(ToolOutput(id="call_0", name="t"))  # already stored: no write
    assert len(counting.writes) == writes


async def test_save_progress_with_several_outputs_is_fenced(make_queue: QueueFactory) -> None:
    """A superseded holder's batch of outputs is refused whole: none of them is stored."""
    queue = await make_queue(lease_s=0.2)
    await queue.submit(_job("j1"))
    old = await _claim_one(queue, "w1")
    await asyncio.sleep(0.3)
    new = await _claim_one(queue, "w2", wait_s=1.0)
    assert new.attempt == 2
    batch = [ToolOutput(id=f"call_{i}", name="t") for i in range(3)]
    with pytest.raises(LeaseLost):
        await queue.save_progress(old, tool_outputs=batch)
    record = await queue.get("j1")
    assert record is not None and record.progress.tool_outputs == {}


async def test_a_deferred_run_id_goes_with_the_first_outputs(make_queue: QueueFactory) -> None:
    """On Assistants (defer_run_id) the run id costs no write of its own: it is stored in the
    same fenced write as the round's first outputs, so an output is never stored without its
    run, and a successor claiming after that write sees both."""
    from runtime.worker.runner import JobContext

    queue = await make_queue(lease_s=0.2)
    await queue.submit(_job("j1"))
    lease = await _claim_one(queue, "w1")
    counting = _CountingQueue(queue)
    ctx = JobContext(queue=counting, lease=lease, defer_run_id=True)  # type: ignore[arg-type]
    await ctx.save_conversation("thread_1")
    await ctx.save_run("run_1")
    assert len(counting.writes) == 1  # the conversation only
    record = await queue.get("j1")
    assert record is not None and record.progress.run_id is None
    await ctx.save_tool_output(ToolOutput(id="call_1", name="t", output="1"))
    assert len(counting.writes) == 2
    await asyncio.sleep(0.3)  # the worker "dies": its lease lapses
    successor = await _claim_one(queue, "w2", wait_s=1.0)
    assert successor.attempt == 2
    assert successor.progress.conversation_id == "thread_1"
    assert successor.progress.run_id == "run_1"
    assert list(successor.progress.tool_outputs) == ["call_1"]


async def test_flush_writes_a_deferred_run_id_once(make_queue: QueueFactory) -> None:
    """flush() (before a pause or a drain's release) stores a deferred run id, and only once;
    without a deferred id it writes nothing."""
    from runtime.worker.runner import JobContext

    queue = await make_queue()
    await queue.submit(_job("j1"))
    lease = await _claim_one(queue, "w1")
    counting = _CountingQueue(queue)
    ctx = JobContext(queue=counting, lease=lease, defer_run_id=True)  # type: ignore[arg-type]
    await ctx.save_run("run_1")
    await ctx.flush()
    await ctx.flush()
    assert len(counting.writes) == 1
    record = await queue.get("j1")
    assert record is not None and record.progress.run_id == "run_1"


async def test_run_id_is_written_at_once_without_deferral(make_queue: QueueFactory) -> None:
    """Without defer_run_id (Responses: a response has no idempotency key to be found by)
    the run id is stored the moment it is reported."""
    from runtime.worker.runner import JobContext

    queue = await make_queue()
    await queue.submit(_job("j1"))
    lease = await _claim_one(queue, "w1")
    ctx = JobContext(queue=queue, lease=lease)
    await ctx.save_run("resp_1")
    record = await queue.get("j1")
    assert record is not None and record.progress.run_id == "resp_1"
