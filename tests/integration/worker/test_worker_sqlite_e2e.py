"""End to end on the sqlite backend: worker processes on one node, SIGKILL, and the CLI."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from worker_harness import (
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

from runtime.emulator import Emulator
from runtime.worker import Job, JobState, Message
from runtime.worker.sqlite import SqliteQueue

from ..conftest import InProcess

pytestmark = pytest.mark.slow


async def test_sqlite_survives_a_worker_kill(
    emulator: Emulator, assistant_id: str, tmp_path: Path
) -> None:
    """Two workers share one sqlite file; one is SIGKILLed mid-round, its finished calls
    stored and one call in flight in each job; every job completes once, and only the calls
    cut off are executed again."""
    n_jobs = 30
    db = tmp_path / "jobs.db"
    tool_log = tmp_path / "tools.jsonl"
    gate = tmp_path / "gate"
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
        worker={"concurrency": 3},
    )
    for i in range(n_jobs):
        # Two parallel calls: one finishes (and is stored), one waits for the gate, so every
        # job a worker holds settles with a stored output and a call in flight, at any load.
        job_id = f"job-{i:03d}"
        content = (
            job_message(job_id, sleep_ms=40) + "\n/call gated_echo " + json.dumps({"text": job_id})
        )
        await queue.submit(
            Job(id=job_id, assistant_id=assistant_id, messages=(Message(content=content),))
        )
    env = {"WORKER_TEST_TOOL_LOG": str(tool_log), "WORKER_TEST_GATE": str(gate)}
    procs = [spawn_worker(config, f"s{i}", tmp_path, env=env) for i in range(2)]
    try:

        async def persisted(text: str, call_id: str) -> bool:
            record = await queue.get(text)
            return record is not None and (
                record.state is JobState.DONE or call_id in record.progress.tool_outputs
            )

        in_flight = await kill_mid_run(procs[0], tool_log, persisted, min_finished=3)
        assert procs[0].returncode == -signal.SIGKILL
        gate.touch()

        async def all_done() -> bool:
            assert procs[1].poll() is None, tail(tmp_path / "s1.log")
            return (await queue.stats()).unfinished == 0

        await wait_until(all_done, timeout=60, what="all jobs finished")
        procs[1].send_signal(signal.SIGTERM)
        assert await wait_exit(procs[1], timeout=15) == 0
    finally:
        stop_all(procs)

    records = [await queue.get(f"job-{i:03d}") for i in range(n_jobs)]
    await queue.aclose()
    assert all(r is not None and r.result is not None for r in records)
    assert all(r.result.status == "completed" for r in records if r and r.result)
    assert emulator.stats["runs_created"] == n_jobs
    assert emulator.stats["tool_output_submissions"] == n_jobs
    events = read_tool_log(tool_log)
    ends = Counter(e["call"] for e in events if e["event"] == "end")
    starts = Counter(e["call"] for e in events if e["event"] == "start")
    assert len(ends) == 2 * n_jobs and set(ends.values()) == {1}
    assert in_flight, "the killed worker had no call in flight"
    assert {call for call, n in starts.items() if n > 1} <= in_flight
    # The killed worker's stored outputs were kept: only its gated calls ran again.
    killed_pid = procs[0].pid
    killed_ended = {e["call"] for e in events if e["pid"] == killed_pid and e["event"] == "end"}
    assert len(killed_ended) >= 3 and all(starts[call] == 1 for call in killed_ended)
    assert any(r is not None and r.attempt > 1 for r in records)


async def test_cli_submit_wait_and_jobs(
    emulator: Emulator, assistant_id: str, tmp_path: Path, cli: InProcess
) -> None:
    """`submit --wait` prints one JSON document (the result), the same --job-id is one job,
    `jobs` lists it; at the shipped INFO the job's lines are its call's tool.finished and
    one worker.job_finished with the run's status, id, calls and rounds (the run loop's
    run.finished and the batch's start are DEBUG in a worker)."""
    db = tmp_path / "jobs.db"
    config = write_config(
        tmp_path / "worker.toml",
        base_url=emulator.base_url,
        queue={"backend": "sqlite", "sqlite": {"path": str(db)}},
        worker={"concurrency": 2},
        http={"enabled": True, "port": 0},
    )
    worker = spawn_worker(config, "cli-worker", tmp_path)
    try:
        msg = job_message("from the cli", 10)
        submit = ["submit", "--config", str(config), "--assistant", assistant_id]
        first = await asyncio.to_thread(
            run_cli, [*submit, "--job-id", "cli-1", "--metadata", "team=ops", "--wait", msg]
        )
        assert first.returncode == 0, first.stderr + tail(tmp_path / "cli-worker.log")
        record = json.loads(first.stdout)  # one document, not two back to back
        assert record["job_id"] == "cli-1"
        assert record["state"] == "done" and record["result"]["status"] == "completed"
        assert "FROM THE CLI" in record["result"]["text"]
        # The same job again, and the listing: their logic, in this process.
        again = await asyncio.to_thread(cli, *submit, "--job-id", "cli-1", msg)
        assert json.loads(again.stdout) == {"job_id": "cli-1", "created": False}
        listed = await asyncio.to_thread(cli, "jobs", "--config", str(config), "--json")
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [(r["job_id"], r["state"], r["status"]) for r in rows] == [
            ("cli-1", "done", "completed")
        ]
        worker.send_signal(signal.SIGTERM)
        assert await wait_exit(worker, timeout=15) == 0
    finally:
        stop_all([worker])
    assert emulator.stats["runs_created"] == 1
    log = (tmp_path / "cli-worker.log").read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    job_lines = [e["event"] for e in lines if e.get("job_id") == "cli-1"]
    assert job_lines == ["tool.finished", "worker.job_finished"], job_lines
    (finished,) = [e for e in lines if e["event"] == "worker.job_finished"]
    assert (finished["status"], finished["tool_calls"], finished["rounds"]) == ("completed", 1, 1)
    assert finished["run_id"] and finished["recoveries"] == 0 and finished["attempt"] == 1


@pytest.mark.parametrize("tuned", [True, False])
async def test_the_worker_freezes_its_start_up_heap_unless_told_not_to(
    tmp_path: Path, tuned: bool
) -> None:
    """A worker process freezes what start-up allocated before it takes jobs
    (``[worker] tune_collector``, on by default) and says how much; off, nothing is frozen."""
    queue = {"backend": "sqlite", "sqlite": {"path": str(tmp_path / "jobs.db")}}
    worker = {} if tuned else {"tune_collector": False}
    config = write_config(
        tmp_path / "w.toml", base_url="http://127.0.0.1:9/v1", queue=queue, worker=worker
    )
    proc = spawn_worker(config, "w", tmp_path, burst=True)
    assert await wait_exit(proc, timeout=30) == 0, tail(tmp_path / "w.log")
    lines = (tmp_path / "w.log").read_text(encoding="utf-8").splitlines()
    (starting,) = [json.loads(x) for x in lines if '"worker.starting"' in x]
    frozen = starting["frozen_objects"]
    assert frozen > 10_000 if tuned else frozen == 0
