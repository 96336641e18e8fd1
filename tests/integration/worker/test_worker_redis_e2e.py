"""End to end on a real redis-server: worker processes, the emulator, SIGKILL, SIGTERM, poison."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from worker_harness import (
    REDIS_URL,
    job_message,
    kill_mid_run,
    read_tool_log,
    run_cli,
    spawn_worker,
    stop_all,
    tail,
    wait_exit,
    wait_until,
    write_config,
)

from runtime import AssistantsClient
from runtime.emulator import Emulator
from runtime.worker import Job, JobState, Message
from runtime.worker.redis import RedisQueue

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _redis_queue(prefix: str, **kw: object) -> dict[str, object]:
    return {"backend": "redis", "redis": {"url": REDIS_URL, "prefix": prefix}, **kw}


async def test_three_workers_one_sigkilled_every_job_exactly_once(
    emulator: Emulator,
    client: AssistantsClient,
    assistant_id: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    """300 jobs, 3 workers, one SIGKILLed mid-run: all complete, one run each, no tool run twice."""
    n_jobs = 300
    tool_log = tmp_path / "tools.jsonl"
    queue = RedisQueue(REDIS_URL, prefix=redis_prefix, lease_s=1.0)
    config = write_config(
        tmp_path / "worker.toml",
        base_url=emulator.base_url,
        queue=_redis_queue(redis_prefix, lease_s=1.0, heartbeat_s=0.25),
        worker={"concurrency": 4},
    )
    texts = {f"job-{i:03d}": f"job-{i:03d}" for i in range(n_jobs)}
    for job_id, text in texts.items():
        msg = Message(content=job_message(text, sleep_ms=40))
        assert await queue.submit(Job(id=job_id, assistant_id=assistant_id, messages=(msg,)))
    env = {"WORKER_TEST_TOOL_LOG": str(tmp_path / "tools.jsonl")}
    procs = [spawn_worker(config, f"w{i}", tmp_path, env=env) for i in range(3)]
    try:

        async def persisted(text: str, call_id: str) -> bool:
            record = await queue.get(text)
            return record is not None and (
                record.state is JobState.DONE or call_id in record.progress.tool_outputs
            )

        in_flight = await kill_mid_run(procs[0], tool_log, persisted)
        assert procs[0].returncode == -signal.SIGKILL

        async def all_done() -> bool:
            assert all(p.poll() is None for p in procs[1:]), tail(tmp_path / "w1.log")
            return (await queue.stats()).unfinished == 0

        await wait_until(all_done, timeout=60, what="all jobs finished")
        for proc in procs[1:]:
            proc.send_signal(signal.SIGTERM)
        assert [await wait_exit(p, timeout=15) for p in procs[1:]] == [0, 0]
    finally:
        stop_all(procs)

    records = {job_id: await queue.get(job_id) for job_id in texts}
    assert all(r is not None and r.state is JobState.DONE for r in records.values())
    results = {job_id: r.result for job_id, r in records.items() if r is not None}
    assert all(r is not None and r.status == "completed" for r in results.values())
    for job_id, result in results.items():
        assert result is not None and job_id.upper() in result.text
    # Every result was stored exactly once (the fenced store counts its successes).
    assert await queue.completed_count() == n_jobs
    # One run per job, one tool-output submission per run: nothing was created or sent twice.
    stats = emulator.stats
    assert stats["runs_created"] == n_jobs
    assert stats["tool_output_submissions"] == n_jobs
    # No tool call finished twice; only the calls cut off by the kill were started again.
    events = read_tool_log(tool_log)
    ends = Counter(e["call"] for e in events if e["event"] == "end")
    starts = Counter(e["call"] for e in events if e["event"] == "start")
    assert len(ends) == n_jobs and set(ends.values()) == {1}
    assert {call for call, n in starts.items() if n > 1} <= in_flight
    # The killed worker's jobs were reclaimed and resumed (same run, attempt 2).
    resumed = [r for r in records.values() if r is not None and r.attempt > 1]
    assert resumed, "no job was reclaimed from the killed worker"
    assert all(r.result is not None and r.result.run_id == r.progress.run_id for r in resumed)
    assert (await queue.stats()).dead == 0
    r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    pending = await r.xpending(queue.stream, "workers")
    await r.aclose()
    await queue.aclose()
    assert pending["pending"] == 0


async def test_sigterm_drain_acknowledges_no_half_done_job(
    emulator: Emulator,
    client: AssistantsClient,
    assistant_id: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    """SIGTERM: a short job finishes, long ones are cancelled server-side and stay pending,
    and a later worker completes them with a fresh run."""
    tool_log = tmp_path / "tools.jsonl"
    queue = RedisQueue(REDIS_URL, prefix=redis_prefix, lease_s=1.0)
    config = write_config(
        tmp_path / "worker.toml",
        base_url=emulator.base_url,
        queue=_redis_queue(redis_prefix, lease_s=1.0, heartbeat_s=0.25),
        worker={"concurrency": 4, "grace_period_s": 0.5},
    )
    jobs = {"short": 50, "long-1": 20_000, "long-2": 20_000, "long-3": 20_000}
    for job_id, sleep_ms in jobs.items():
        msg = Message(content=job_message(job_id, sleep_ms))
        await queue.submit(Job(id=job_id, assistant_id=assistant_id, messages=(msg,)))
    env = {"WORKER_TEST_TOOL_LOG": str(tool_log)}
    procs = [spawn_worker(config, "drainer", tmp_path, env=env)]
    try:

        async def long_tools_running() -> bool:
            started = {e["text"] for e in read_tool_log(tool_log) if e["event"] == "start"}
            record = await queue.get("short")
            return started >= set(jobs) and record is not None and record.finished

        await wait_until(long_tools_running, timeout=20, what="all tools started")
        procs[0].send_signal(signal.SIGTERM)
        assert await wait_exit(procs[0], timeout=15) == 0, tail(tmp_path / "drainer.log")

        short = await queue.get("short")
        assert short is not None and short.result is not None
        assert short.result.status == "completed"
        first_runs: dict[str, str] = {}
        for job_id in ("long-1", "long-2", "long-3"):
            record = await queue.get(job_id)
            assert record is not None and record.state is JobState.QUEUED
            assert record.result is None and record.progress.worker_cancelled
            assert (
                record.progress.run_id is not None and record.progress.conversation_id is not None
            )
            run = await client.retrieve_run(record.progress.conversation_id, record.progress.run_id)
            assert run.status == "cancelled"
            first_runs[job_id] = run.id
        r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        pending = await r.xpending(queue.stream, "workers")
        await r.aclose()
        assert pending["pending"] == 3  # left unacknowledged for another worker

        env["WORKER_TEST_SLEEP_SCALE"] = "0.001"
        procs.append(spawn_worker(config, "successor", tmp_path, burst=True, env=env))
        assert await wait_exit(procs[1], timeout=30) == 0, tail(tmp_path / "successor.log")
    finally:
        stop_all(procs)

    for job_id, old_run in first_runs.items():
        record = await queue.get(job_id)
        assert record is not None and record.result is not None
        assert record.result.status == "completed" and record.attempt == 2
        assert record.result.run_id != old_run
        assert record.progress.run_seq == 1
    await queue.aclose()


async def test_poison_job_lands_in_the_dead_letter_stream(
    emulator: Emulator, assistant_id: str, redis_prefix: str, tmp_path: Path
) -> None:
    """A job that kills its worker every time is dead-lettered after max_deliveries; others go on."""
    queue = RedisQueue(REDIS_URL, prefix=redis_prefix)
    config = write_config(
        tmp_path / "worker.toml",
        base_url=emulator.base_url,
        queue=_redis_queue(redis_prefix, lease_s=0.5, heartbeat_s=0.1, max_deliveries=2),
        worker={"concurrency": 1},
    )
    poison = Message(content='/call crash_worker {"reason": "poison"}')
    await queue.submit(Job(id="poison", assistant_id=assistant_id, messages=(poison,)))
    fine = Message(content=job_message("fine", 10))
    await queue.submit(Job(id="fine", assistant_id=assistant_id, messages=(fine,)))
    procs = []
    exit_codes = []
    try:
        for i in range(4):  # a supervisor restarting crashed workers
            procs.append(spawn_worker(config, f"w{i}", tmp_path, burst=True))
            exit_codes.append(await wait_exit(procs[-1], timeout=30))
            if exit_codes[-1] == 0:
                break
    finally:
        stop_all(procs)
    logs = "\n".join(f"--- w{i}\n{tail(tmp_path / f'w{i}.log', 15)}" for i in range(len(procs)))
    assert exit_codes == [3, 3, 0], logs
    record = await queue.get("poison")
    assert record is not None and record.state is JobState.DEAD
    assert record.last_error == "delivered 2 times without a result"
    r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    dead = await r.xrange(queue.dead_stream)
    await r.aclose()
    assert [(fields["job_id"], fields["attempts"]) for _id, fields in dead] == [("poison", "2")]
    fine_record = await queue.get("fine")
    assert fine_record is not None and fine_record.state is JobState.DONE
    await queue.aclose()

    listed = await _cli_dead(config)
    assert [row["job_id"] for row in listed] == ["poison"]


async def _cli_dead(config: Path) -> list[dict[str, object]]:
    import asyncio

    proc = await asyncio.to_thread(run_cli, ["jobs", "--config", str(config), "--dead", "--json"])
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
