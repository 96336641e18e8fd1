"""The sqlite queue's claim: its work does not grow with the queue, and its order is kept."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from runtime.worker import Job, Message
from runtime.worker.sqlite import SqliteQueue


def _job(job_id: str) -> Job:
    return Job(id=job_id, assistant_id="asst_1", messages=(Message(content="hi"),))


async def _claim_steps(queue: SqliteQueue) -> int:
    """SQLite virtual-machine steps (in units of 10) one claim of one job takes."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    def install(conn: sqlite3.Connection) -> None:
        conn.set_progress_handler(count, 10)

    def remove(conn: sqlite3.Connection) -> None:
        conn.set_progress_handler(None, 0)

    await queue._call(install)
    try:
        (lease,) = await queue.claim("w1", 1, 0.0)
    finally:
        await queue._call(remove)
    assert lease.attempt == 1
    return steps[0]


async def test_a_claim_costs_the_same_on_a_deep_queue(tmp_path: Path) -> None:
    """Claiming one job of 1000 waiting takes about the work of claiming one of 10: the claim
    walks the (state, seq) index and stops, instead of collecting and sorting every queued
    job (which made each claim linear in the queue's depth)."""
    shallow = SqliteQueue(tmp_path / "shallow.db")
    deep = SqliteQueue(tmp_path / "deep.db")
    try:
        for i in range(10):
            await shallow.submit(_job(f"s{i}"))
        for i in range(400):
            await deep.submit(_job(f"d{i}"))
        await _claim_steps(shallow)  # the first claim prepares its statements
        await _claim_steps(deep)
        shallow_steps = await _claim_steps(shallow)
        deep_steps = await _claim_steps(deep)
        assert deep_steps < 2 * shallow_steps + 20, (shallow_steps, deep_steps)
    finally:
        await shallow.aclose()
        await deep.aclose()


async def test_a_claim_takes_lapsed_leases_and_queued_jobs_in_submission_order(
    tmp_path: Path,
) -> None:
    """Lapsed leases and waiting jobs are claimed together, oldest submission first, never
    more than asked for."""
    queue = SqliteQueue(tmp_path / "jobs.db", lease_s=0.1)
    try:
        for i in range(3):
            await queue.submit(_job(f"old{i}"))
        dead = await queue.claim("dead-worker", 2, 0.0)  # old0, old1: their leases lapse
        assert [lease.job.id for lease in dead] == ["old0", "old1"]
        for i in range(2):
            await queue.submit(_job(f"new{i}"))
        await asyncio.sleep(0.2)
        first = await queue.claim("w1", 3, 0.0)
        assert [lease.job.id for lease in first] == ["old0", "old1", "old2"]
        assert [lease.attempt for lease in first] == [2, 2, 1]
        rest = await queue.claim("w1", 5, 0.0)
        assert [lease.job.id for lease in rest] == ["new0", "new1"]
    finally:
        await queue.aclose()
