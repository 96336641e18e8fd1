"""Leases and retry delays run on the monotonic clock: a wall-clock step moves nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from runtime.worker import Job, JobState, MemoryQueue, Message
from runtime.worker.sqlite import SqliteQueue


def _job(job_id: str) -> Job:
    return Job(id=job_id, assistant_id="asst_1", messages=(Message(content="hi"),))


def _stepped(seconds: float) -> object:
    """A wall clock that runs `seconds` ahead of the real one (an NTP or operator step)."""
    return lambda: time.time() + seconds


async def test_a_wall_clock_step_never_displaces_a_live_owner(tmp_path: Path) -> None:
    """A claimer whose wall clock jumped 60 s ahead finds no expired lease while the owner
    heartbeats; once the owner stops, the lease expires after lease_s and is taken over."""
    db = tmp_path / "jobs.db"
    owner = SqliteQueue(db, lease_s=0.5)
    claimer = SqliteQueue(db, lease_s=0.5, wall_clock=_stepped(60.0))  # type: ignore[arg-type]
    try:
        await owner.submit(_job("j1"))
        (lease,) = await owner.claim("owner", 1, 0.0)
        for _ in range(4):  # 0.8 s: longer than the lease, heartbeats keep it
            assert await claimer.claim("stepped", 1, 0.0) == []
            assert await owner.heartbeat(lease)
            await asyncio.sleep(0.2)
        record = await owner.get("j1")
        assert record is not None and record.owner == "owner" and record.attempt == 1
        await asyncio.sleep(0.6)  # the owner is silent for longer than lease_s
        (taken,) = await claimer.claim("stepped", 1, 0.0)
        assert taken.attempt == 2
        assert not await owner.heartbeat(lease)
    finally:
        await owner.aclose()
        await claimer.aclose()


async def test_a_wall_clock_step_does_not_cut_a_retry_delay_short(tmp_path: Path) -> None:
    """A job released for retry in 30 s is not offered early to a worker whose clock jumped."""
    db = tmp_path / "jobs.db"
    owner = SqliteQueue(db)
    claimer = SqliteQueue(db, wall_clock=_stepped(60.0))  # type: ignore[arg-type]
    try:
        await owner.submit(_job("j1"))
        (lease,) = await owner.claim("owner", 1, 0.0)
        assert await owner.release(lease, delay_s=30.0, error="boom")
        assert await claimer.claim("stepped", 1, 0.0) == []
    finally:
        await owner.aclose()
        await claimer.aclose()


async def test_a_lease_written_on_another_boot_expires_by_the_wall_clock(tmp_path: Path) -> None:
    """Monotonic deadlines only mean something on the boot that wrote them: a lease from a
    previous boot (the node restarted) is judged by its wall-clock deadline."""
    db = tmp_path / "jobs.db"
    owner = SqliteQueue(db, lease_s=30.0)
    try:
        await owner.submit(_job("j1"))
        await owner.claim("owner", 1, 0.0)
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE jobs SET clock_boot = 'an-earlier-boot', lease_until = 1")
        (taken,) = await owner.claim("after-reboot", 1, 0.0)
        assert taken.attempt == 2
    finally:
        await owner.aclose()


async def test_a_database_of_the_previous_schema_is_upgraded(tmp_path: Path) -> None:
    """A queue file written before the clock columns existed opens, and its jobs run."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            """
            CREATE TABLE jobs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL UNIQUE,
                job TEXT NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,
                owner TEXT, available_at REAL NOT NULL, lease_until REAL NOT NULL DEFAULT 0,
                submitted_at REAL NOT NULL, updated_at REAL NOT NULL, last_error TEXT,
                result TEXT, thread_id TEXT, run_id TEXT, run_seq INTEGER NOT NULL DEFAULT 0,
                worker_cancelled INTEGER NOT NULL DEFAULT 0, dead_at REAL
            );
            """
        )
        now = time.time()
        conn.execute(
            "INSERT INTO jobs (job_id, job, state, available_at, submitted_at, updated_at) "
            "VALUES ('old', ?, 'queued', ?, ?, ?)",
            (_job("old").model_dump_json(), now, now, now),
        )
    queue = SqliteQueue(db, lease_s=0.5)
    try:
        (lease,) = await queue.claim("w", 1, 0.0)
        assert lease.job.id == "old"
        assert await queue.heartbeat(lease)
        record = await queue.get("old")
        assert record is not None and record.state is JobState.RUNNING
    finally:
        await queue.aclose()


async def test_memory_queue_leases_ignore_a_wall_clock_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The in-process queue judges leases and retry delays on the monotonic clock too: after
    the wall clock jumps 60 s, a live lease and a pending retry delay still hold."""
    queue = MemoryQueue(lease_s=30.0)
    await queue.submit(_job("leased"))
    await queue.submit(_job("retry"))
    leased, retry = await queue.claim("owner", 2, 0.0)
    assert await queue.release(retry, delay_s=30.0)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 60.0)
    assert await queue.claim("other", 2, 0.0) == []
    assert await queue.heartbeat(leased)
