"""The sqlite queue batches the calls made together: one hand-off and one commit for all of
them, and a call that fails in a batch fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from runtime.worker import Job, JobState, Message
from runtime.worker.models import JobResult, JobTimings, Lease, ToolOutput
from runtime.worker.queue import LeaseLost, QueueError
from runtime.worker.sqlite import SqliteQueue


def _job(job_id: str) -> Job:
    return Job(id=job_id, assistant_id="asst_1", messages=(Message(content="hi"),))


def _commits(db: Path) -> int:
    """Transactions committed to the write-ahead log since it was last restarted: the frames
    whose header carries the database size (only a transaction's last frame does)."""
    wal = db.with_name(db.name + "-wal").read_bytes()
    if len(wal) < 32:
        return 0
    page_size = int.from_bytes(wal[8:12], "big")
    salt = wal[16:24]
    commits, offset = 0, 32
    while offset + 24 + page_size <= len(wal):
        header = wal[offset : offset + 24]
        if header[8:16] != salt:  # a frame left from before the log restarted
            break
        commits += int.from_bytes(header[4:8], "big") != 0
        offset += 24 + page_size
    return commits


async def _leases(queue: SqliteQueue, count: int) -> list[Lease]:
    for i in range(count):
        await queue.submit(_job(f"j{i}"))
    leases = await queue.claim("w1", count, 0.0)
    assert len(leases) == count
    return leases


async def test_progress_writes_made_together_are_one_commit(tmp_path: Path) -> None:
    """Eight jobs' progress writes issued in one turn of the event loop reach the database in
    one transaction (one commit in the log, not eight), and every one of them is stored."""
    db = tmp_path / "q.db"
    queue = SqliteQueue(db)
    try:
        leases = await _leases(queue, 8)
        before = _commits(db)
        await asyncio.gather(
            *(
                queue.save_progress(lease, conversation_id=f"thread_{i}")
                for i, lease in enumerate(leases)
            )
        )
        assert _commits(db) - before == 1
        for i, lease in enumerate(leases):
            record = await queue.get(lease.job.id)
            assert record is not None
            assert record.progress.conversation_id == f"thread_{i}"
    finally:
        await queue.aclose()


async def test_a_result_is_reported_only_once_committed(tmp_path: Path) -> None:
    """When a caller hears its write succeeded, another connection (another worker process)
    already sees it: a batch reports after its commit, not before."""
    db = tmp_path / "q.db"
    queue = SqliteQueue(db)
    try:
        leases = await _leases(queue, 3)
        output = ToolOutput(id="call_1", name="calculate", arguments="{}", output="42")

        async def save_and_look(lease: Lease) -> str | None:
            await queue.save_progress(lease, run_id=f"run_{lease.job.id}", tool_outputs=[output])
            other = sqlite3.connect(db)
            try:
                row = other.execute(
                    "SELECT run_id FROM jobs WHERE job_id = ?", (lease.job.id,)
                ).fetchone()
            finally:
                other.close()
            return None if row is None else str(row[0])

        seen = await asyncio.gather(*(save_and_look(lease) for lease in leases))
        assert seen == [f"run_{lease.job.id}" for lease in leases]
    finally:
        await queue.aclose()


async def test_a_call_that_fails_in_a_batch_fails_alone(tmp_path: Path) -> None:
    """In one batch, a write the database refuses raises QueueError for its caller only, a
    fenced-off write raises LeaseLost for its caller only, and the others are stored."""
    db = tmp_path / "q.db"
    queue = SqliteQueue(db)
    try:
        good, refused, fenced = await _leases(queue, 3)
        stale = fenced.model_copy(update={"attempt": fenced.attempt + 1})
        setup = sqlite3.connect(db)
        setup.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE OF thread_id ON jobs "
            f"WHEN NEW.job_id = '{refused.job.id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        setup.commit()
        setup.close()
        outcomes = await asyncio.gather(
            queue.save_progress(good, conversation_id="thread_good"),
            queue.save_progress(refused, conversation_id="thread_refused"),
            queue.save_progress(stale, conversation_id="thread_stale"),
            return_exceptions=True,
        )
        assert outcomes[0] is None
        assert isinstance(outcomes[1], QueueError) and "refused" in str(outcomes[1])
        assert isinstance(outcomes[2], LeaseLost)
        stored = {
            lease.job.id: (await queue.get(lease.job.id)) for lease in (good, refused, fenced)
        }
        assert {k: r.progress.conversation_id for k, r in stored.items() if r} == {
            good.job.id: "thread_good",
            refused.job.id: None,
            fenced.job.id: None,
        }
    finally:
        await queue.aclose()


async def test_a_batch_that_cannot_begin_fails_each_call_and_the_queue_goes_on(
    tmp_path: Path,
) -> None:
    """A batch whose transaction cannot begin (another process holds the write lock past the
    busy timeout) fails each of its calls with QueueError, and the queue serves the next
    calls once the lock is free."""
    db = tmp_path / "q.db"
    queue = SqliteQueue(db, busy_timeout_s=0.05)
    try:
        leases = await _leases(queue, 2)
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            outcomes = await asyncio.gather(
                *(queue.save_progress(lease, conversation_id="t") for lease in leases),
                return_exceptions=True,
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert all(isinstance(o, QueueError) for o in outcomes), outcomes
        await asyncio.gather(
            *(queue.save_progress(lease, conversation_id="t2") for lease in leases)
        )
        for lease in leases:
            record = await queue.get(lease.job.id)
            assert record is not None and record.progress.conversation_id == "t2"
    finally:
        await queue.aclose()


@pytest.mark.parametrize("count", [1, 5])
async def test_closing_waits_for_the_calls_made_before(tmp_path: Path, count: int) -> None:
    """Calls issued just before ``aclose`` in the same turn of the loop still run and are
    stored; the queue is closed afterwards."""
    db = tmp_path / "q.db"
    queue = SqliteQueue(db)
    await queue.ping()
    submits = [asyncio.ensure_future(queue.submit(_job(f"c{i}"))) for i in range(count)]
    await asyncio.sleep(0)  # the submissions reach the queue's hand-over first
    await queue.aclose()
    assert all(await asyncio.gather(*submits))
    other = sqlite3.connect(db)
    try:
        assert other.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == count
    finally:
        other.close()


async def test_a_call_racing_the_close_fails_instead_of_waiting(tmp_path: Path) -> None:
    """A call that would reach the queue's thread after it was told to stop (a write racing
    ``aclose``) fails with QueueError at once instead of waiting forever for a thread that
    is gone."""
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.ping()
    thread = queue._thread
    assert thread is not None
    made_first = asyncio.ensure_future(queue._call(lambda conn: 1))
    late = asyncio.ensure_future(queue._call(lambda conn: 2))
    await asyncio.sleep(0)  # both calls are made; their hand-over is due at the turn's end
    thread.stop()
    for call in (made_first, late):
        with pytest.raises(QueueError):
            await asyncio.wait_for(call, 5.0)
    with pytest.raises(QueueError):  # the queue's thread is gone: nothing runs any more
        await queue.ping()


def _result(lease: Lease) -> JobResult:
    timings = JobTimings(
        submitted_at=1.0, started_at=2.0, finished_at=3.0, run_seconds=1.0, total_seconds=2.0
    )
    return JobResult(
        job_id=lease.job.id,
        run_id="run_1",
        conversation_id="thread_1",
        status="completed",
        text="done",
        timings=timings,
        attempts=lease.attempt,
    )


async def test_a_result_and_the_next_claim_are_one_commit(tmp_path: Path) -> None:
    """complete_and_claim stores the result and leases the next job in one transaction (one
    commit in the log): the job is done, its successor is running under the new lease."""
    db = tmp_path / "q.db"
    queue = SqliteQueue(db)
    try:
        (first,) = await _leases(queue, 1)
        await queue.submit(_job("next"))
        before = _commits(db)
        stored, successors = await queue.complete_and_claim(first, _result(first), "w1", 1)
        assert _commits(db) - before == 1
        assert stored and [s.job.id for s in successors] == ["next"]
        done, running = await queue.get(first.job.id), await queue.get("next")
        assert done is not None and done.state is JobState.DONE and done.result is not None
        assert running is not None and running.state is JobState.RUNNING
        assert (running.owner, running.attempt) == ("w1", successors[0].attempt) == ("w1", 1)
    finally:
        await queue.aclose()


async def test_a_fenced_off_result_claims_nothing(tmp_path: Path) -> None:
    """A result refused by the fence (another attempt owns the job) stores nothing and
    claims nothing: the next job stays queued."""
    queue = SqliteQueue(tmp_path / "q.db")
    try:
        (first,) = await _leases(queue, 1)
        await queue.submit(_job("next"))
        stale = first.model_copy(update={"attempt": first.attempt + 1})
        assert await queue.complete_and_claim(stale, _result(stale), "w1", 1) == (False, [])
        record, waiting = await queue.get(first.job.id), await queue.get("next")
        assert record is not None and record.state is JobState.RUNNING and record.result is None
        assert waiting is not None and waiting.state is JobState.QUEUED
    finally:
        await queue.aclose()


async def test_a_claim_that_fails_rolls_its_result_back(tmp_path: Path) -> None:
    """When the claim half of complete_and_claim fails, nothing of it stays: the result is
    not stored (the job still runs under its lease, so the worker's plain complete stores
    it once) and the next job is not leased, so no job is lost or leased twice."""
    db = tmp_path / "q.db"
    queue = SqliteQueue(db)
    try:
        (first,) = await _leases(queue, 1)
        await queue.submit(_job("next"))
        setup = sqlite3.connect(db)
        setup.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE OF owner ON jobs "
            "WHEN NEW.job_id = 'next' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        setup.commit()
        setup.close()
        with pytest.raises(QueueError, match="refused"):
            await queue.complete_and_claim(first, _result(first), "w1", 1)
        record, waiting = await queue.get(first.job.id), await queue.get("next")
        assert record is not None and record.state is JobState.RUNNING and record.result is None
        assert waiting is not None and waiting.state is JobState.QUEUED and waiting.attempt == 0
        assert await queue.complete(first, _result(first))
        done = await queue.get(first.job.id)
        assert done is not None and done.state is JobState.DONE
    finally:
        await queue.aclose()
