"""CI-sized chaos for the worker: a Redis outage mid-claims, poison records, a clock step.

Worker processes (``python -m runtime worker``) run against the in-process emulator; the
queue is a private redis-server the test kills and restarts, or a sqlite file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

WORKER_TESTS = Path(__file__).resolve().parents[1] / "integration" / "worker"
sys.path.insert(0, str(WORKER_TESTS))

from redis_server import RedisServer, redis_server_missing  # noqa: E402
from worker_harness import (  # noqa: E402
    REPO,
    job_message,
    read_tool_log,
    run_cli,
    spawn_worker,
    stop_all,
    tail,
    wait_exit,
    wait_until,
    write_config,
)

from runtime import AssistantsClient  # noqa: E402
from runtime.emulator import Emulator  # noqa: E402
from runtime.worker import Job, JobState, Message  # noqa: E402
from runtime.worker.queue import JobQueue  # noqa: E402
from runtime.worker.redis import RedisQueue  # noqa: E402
from runtime.worker.sqlite import SqliteQueue  # noqa: E402

pytestmark = pytest.mark.slow

CLOCK_STEP_DIR = Path(__file__).resolve().parent / "clock_step"
needs_redis_server = pytest.mark.skipif(
    redis_server_missing() is not None, reason=str(redis_server_missing())
)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An emulator on a loopback port, serving the worker subprocesses."""
    async with Emulator() as emu:
        yield emu


@pytest.fixture
async def assistant_id(emulator: Emulator) -> str:
    """An assistant on the emulator."""
    async with AssistantsClient(base_url=emulator.base_url, api_key="sk-worker-test-key") as c:
        return (await c.create_assistant(model="gpt-4o", name="worker-chaos")).id


def _tool_job(job_id: str, assistant_id: str, sleep_ms: int) -> Job:
    message = Message(content=job_message(job_id, sleep_ms=sleep_ms))
    return Job(id=job_id, assistant_id=assistant_id, messages=(message,))


def _tool_ends(tool_log: Path) -> Counter[str]:
    return Counter(e["call"] for e in read_tool_log(tool_log) if e["event"] == "end")


@needs_redis_server
async def test_redis_outage_during_claims_gives_every_job_one_result_and_one_run(
    emulator: Emulator, assistant_id: str, tmp_path: Path
) -> None:
    """Redis is SIGKILLed for ~2 s while two workers claim, run and store 24 jobs, then comes
    back from its append-only file: every job ends completed with exactly one stored result,
    the emulator saw one run per job, and no tool call finished twice."""
    n_jobs = 24
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    queue = RedisQueue(server.url, prefix="chaos", lease_s=5.0, socket_timeout_s=1.0)
    tool_log = tmp_path / "tools.jsonl"
    config = write_config(
        tmp_path / "worker.toml",
        base_url=emulator.base_url,
        queue={
            "backend": "redis",
            "redis": {"url": server.url, "prefix": "chaos"},
            "lease_s": 5.0,
            "heartbeat_s": 0.5,
        },
        worker={"concurrency": 4},
    )
    job_ids = [f"job-{i:02d}" for i in range(n_jobs)]
    procs = []
    try:
        for job_id in job_ids:
            assert await queue.submit(_tool_job(job_id, assistant_id, sleep_ms=300))
        env = {"WORKER_TEST_TOOL_LOG": str(tool_log)}
        procs = [spawn_worker(config, f"w{i}", tmp_path, env=env) for i in range(2)]

        async def some_finished() -> bool:
            return sum(_tool_ends(tool_log).values()) >= 6

        await wait_until(some_finished, timeout=30, what="the first tool calls")
        server.kill()
        await asyncio.sleep(2.0)
        server.start()

        async def all_done() -> bool:
            for i, proc in enumerate(procs):
                assert proc.poll() is None, tail(tmp_path / f"w{i}.log")
            try:
                return (await queue.stats()).unfinished == 0
            except Exception:
                return False  # the test's own client reconnects on the next poll

        await wait_until(all_done, timeout=60, what="every job finished")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [await wait_exit(p, timeout=15) for p in procs] == [0, 0]
        records = [await queue.get(job_id) for job_id in job_ids]
        completed = await queue.completed_count()
    finally:
        stop_all(procs)
        await queue.aclose()
        server.kill()
    logs = "\n".join(tail(tmp_path / f"w{i}.log", 10) for i in range(2))
    assert all(r is not None and r.state is JobState.DONE for r in records), logs
    assert all(r.result is not None and r.result.status == "completed" for r in records if r)
    assert completed == n_jobs  # the fenced store counts each job's one result
    assert emulator.stats["runs_created"] == n_jobs, "a job's run was created twice"
    assert emulator.stats["tool_output_submissions"] == n_jobs
    ends = _tool_ends(tool_log)
    assert len(ends) == n_jobs and set(ends.values()) == {1}
    full_logs = "".join((tmp_path / f"w{i}.log").read_text(encoding="utf-8") for i in range(2))
    outage_events = ("worker.claim_failed", "worker.store_failed", "worker.heartbeat_failed")
    assert any(event in full_logs for event in outage_events), "the outage hit no worker"


def _plant_sqlite(db: Path, job_id: str, job_text: str, submitted_at: object) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO jobs (job_id, job, state, available_at, submitted_at, updated_at) "
            "VALUES (?, ?, 'queued', ?, ?, ?)",
            (job_id, job_text, time.time(), submitted_at, time.time()),
        )


async def _plant_redis(url: str, prefix: str, job_id: str, job_text: str, submitted: str) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    entry = await client.xadd(f"{prefix}:jobs", {"job_id": job_id})
    await client.hset(
        f"{prefix}:job:{job_id}",
        mapping={
            "job": job_text,
            "state": "queued",
            "attempt": 0,
            "submitted_at": submitted,
            "updated_at": repr(time.time()),
            "entry": entry,
            "run_seq": 0,
            "worker_cancelled": 0,
        },
    )
    await client.zadd(f"{prefix}:recent", {job_id: time.time()})
    await client.sadd(f"{prefix}:open", job_id)
    await client.aclose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=needs_redis_server)])
async def test_poison_records_among_good_jobs_never_stop_the_worker(
    backend: str, emulator: Emulator, assistant_id: str, tmp_path: Path
) -> None:
    """Bad JSON, a job missing its fields and a non-numeric timestamp among good jobs: one
    burst worker runs every good job (also one carrying a field from a newer submitter),
    exits 0, and `jobs` lists each bad record as dead with the reason."""
    server: RedisServer | None = None
    queue: JobQueue
    if backend == "redis":
        server = RedisServer(tmp_path / "redis", appendonly=False)
        server.start()
        queue_section = {"backend": "redis", "redis": {"url": server.url, "prefix": "poison"}}
        queue = RedisQueue(server.url, prefix="poison")
    else:
        db = tmp_path / "jobs.db"
        queue_section = {"backend": "sqlite", "sqlite": {"path": str(db)}}
        queue = SqliteQueue(db)
    config = write_config(
        tmp_path / "worker.toml",
        base_url=emulator.base_url,
        queue={**queue_section, "lease_s": 5.0, "heartbeat_s": 0.5},
        worker={"concurrency": 2},
    )
    good = [f"good-{i}" for i in range(4)]
    newer = json.loads(
        Job(
            id="newer", assistant_id=assistant_id, messages=(Message(content="hi"),)
        ).model_dump_json()
    )
    newer["priority"] = "high"
    poison = {
        "bad-json": ('{"id": "bad-json", "messages": [', repr(time.time())),
        "missing-fields": ('{"id": "missing-fields"}', repr(time.time())),
        "bad-time": (
            Job(
                id="bad-time", assistant_id=assistant_id, messages=(Message(content="x"),)
            ).model_dump_json(),
            "yesterday",
        ),
    }
    try:
        await queue.submit(_tool_job(good[0], assistant_id, sleep_ms=10))
        for job_id, (text, submitted) in [
            *poison.items(),
            ("newer", (json.dumps(newer), repr(time.time()))),
        ]:
            if server is not None:
                await _plant_redis(server.url, "poison", job_id, text, submitted)
            else:
                _plant_sqlite(db, job_id, text, submitted)
        for job_id in good[1:]:
            await queue.submit(_tool_job(job_id, assistant_id, sleep_ms=10))
        proc = spawn_worker(config, "w0", tmp_path, burst=True)
        try:
            code = await wait_exit(proc, timeout=60)
        finally:
            stop_all([proc])
        assert code == 0, tail(tmp_path / "w0.log")
        records = {job_id: await queue.get(job_id) for job_id in [*good, "newer", *poison]}
    finally:
        await queue.aclose()
    for job_id in [*good, "newer"]:
        record = records[job_id]
        assert record is not None and record.state is JobState.DONE, job_id
        assert record.result is not None and record.result.status == "completed"
    for job_id in poison:
        record = records[job_id]
        assert record is not None and record.state is JobState.DEAD, job_id
        assert record.last_error is not None and record.last_error.startswith("malformed")
    listed = await asyncio.to_thread(run_cli, ["jobs", "--config", str(config), "--json"])
    dead = await asyncio.to_thread(run_cli, ["jobs", "--config", str(config), "--dead", "--json"])
    if server is not None:
        server.kill()
    assert listed.returncode == 0 and dead.returncode == 0, listed.stderr + dead.stderr
    rows = {r["job_id"]: r for r in map(json.loads, listed.stdout.splitlines())}
    for job_id in poison:
        assert rows[job_id]["state"] == "dead"
        assert rows[job_id]["error"].startswith("malformed job record"), rows[job_id]
    assert {r["job_id"] for r in map(json.loads, dead.stdout.splitlines())} == set(poison)
    log = (tmp_path / "w0.log").read_text(encoding="utf-8")
    assert "worker.job_unknown_fields" in log and "priority" in log


async def test_a_wall_clock_step_on_an_idle_worker_takes_no_live_job(
    emulator: Emulator, assistant_id: str, tmp_path: Path
) -> None:
    """Worker A runs 10 jobs whose tools wait for a gate (lease 1 s, heartbeat 0.25 s);
    worker B on the same sqlite file has its wall clock 60 s ahead and polls for well over a
    lease meanwhile. B takes none of A's jobs: every tool call runs once, every job finishes
    on its first attempt, one run each."""
    n_jobs = 10
    db = tmp_path / "jobs.db"
    tool_log = tmp_path / "tools.jsonl"
    queue = SqliteQueue(db, lease_s=1.0)
    config = write_config(
        tmp_path / "worker.toml",
        base_url=emulator.base_url,
        queue={
            "backend": "sqlite",
            "sqlite": {"path": str(db)},
            "lease_s": 1.0,
            "heartbeat_s": 0.25,
        },
        worker={"concurrency": n_jobs},
    )
    job_ids = [f"job-{i:02d}" for i in range(n_jobs)]
    gate = tmp_path / "gate"
    for job_id in job_ids:
        message = Message(content="/call gated_echo " + json.dumps({"text": job_id}))
        await queue.submit(Job(id=job_id, assistant_id=assistant_id, messages=(message,)))
    base_env = {"WORKER_TEST_TOOL_LOG": str(tool_log), "WORKER_TEST_GATE": str(gate)}
    stepped_env = {
        **base_env,
        "CHAOS_WALL_CLOCK_OFFSET_S": "60",
        "PYTHONPATH": os.pathsep.join([str(CLOCK_STEP_DIR), str(WORKER_TESTS), str(REPO)]),
    }
    procs = [spawn_worker(config, "a", tmp_path, env=base_env)]
    try:

        async def a_runs_all() -> bool:
            starts = [e for e in read_tool_log(tool_log) if e["event"] == "start"]
            return len(starts) == n_jobs

        await wait_until(a_runs_all, timeout=30, what="worker A running every job")
        procs.append(spawn_worker(config, "b", tmp_path, env=stepped_env))

        async def b_started() -> bool:
            log = tmp_path / "b.log"
            return log.exists() and "worker.started" in log.read_text(encoding="utf-8")

        await wait_until(b_started, timeout=30, what="worker B started")
        await asyncio.sleep(1.5)  # B's claims poll for longer than lease_s
        assert (await queue.stats()).running == n_jobs, "A's jobs ended before B could poll"
        gate.touch()

        async def all_done() -> bool:
            assert all(p.poll() is None for p in procs), tail(tmp_path / "b.log")
            return (await queue.stats()).unfinished == 0

        await wait_until(all_done, timeout=60, what="every job finished")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [await wait_exit(p, timeout=15) for p in procs] == [0, 0]
        records = [await queue.get(job_id) for job_id in job_ids]
    finally:
        stop_all(procs)
        await queue.aclose()
    b_log = (tmp_path / "b.log").read_text(encoding="utf-8")
    starts = Counter(e["call"] for e in read_tool_log(tool_log) if e["event"] == "start")
    assert len(starts) == n_jobs and set(starts.values()) == {1}, "a tool call ran twice"
    assert all(r is not None and r.state is JobState.DONE and r.attempt == 1 for r in records)
    assert emulator.stats["runs_created"] == n_jobs
    assert "worker.job_started" not in b_log
