"""End to end, sqlite and Redis: a job paused for approval survives SIGKILL of its worker,
during the pause and during the resumed round, and nothing runs twice."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from worker_harness import (
    REDIS_URL,
    read_tool_log,
    run_cli,
    spawn_worker,
    stop_all,
    tail,
    wait_until,
    write_config,
)

from runtime.emulator import Emulator
from runtime.worker import DecisionRecord, Job, JobQueue, JobState, Message, decide
from runtime.worker.redis import RedisQueue
from runtime.worker.sqlite import SqliteQueue

from ..conftest import InProcess

pytestmark = pytest.mark.slow


# Each scenario runs on both stores and both protocols, not on every pairing (the suite's time).
PAIRS = pytest.mark.parametrize(
    ("store", "protocol"), [("sqlite", "assistants"), ("redis", "responses")], indirect=True
)
SWAPPED = pytest.mark.parametrize(
    ("store", "protocol"), [("sqlite", "responses"), ("redis", "assistants")], indirect=True
)


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The queue section of one backend (Redis: a fresh prefix, skipped without a server)."""
    common = {"lease_s": 1.0, "heartbeat_s": 0.25}
    if request.param == "sqlite":
        return {"backend": "sqlite", "sqlite": {"path": str(tmp_path / "jobs.db")}, **common}
    prefix = request.getfixturevalue("redis_prefix")
    return {"backend": "redis", "redis": {"url": REDIS_URL, "prefix": prefix}, **common}


@pytest.fixture
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _job(job_id: str, protocol: str, assistant_id: str, write_ms: int) -> Job:
    msg = Message(content=_message(write_ms))
    if protocol == "responses":
        return Job(id=job_id, protocol="responses", messages=(msg,))
    return Job(id=job_id, assistant_id=assistant_id, messages=(msg,))


def _submissions(emulator: Emulator, protocol: str) -> int:
    """Tool-output submissions the server received (Responses: requests carrying outputs)."""
    if protocol == "assistants":
        return int(emulator.stats["tool_output_submissions"])
    return sum(
        1
        for r in emulator.requests
        if r["method"] == "POST"
        and r["path"].endswith("/responses")
        and '"function_call_output"' in json.dumps(r["json"] or {})
    )


def _queue(store: dict[str, Any]) -> JobQueue:
    if store["backend"] == "sqlite":
        return SqliteQueue(store["sqlite"]["path"], lease_s=1.0)
    return RedisQueue(REDIS_URL, prefix=store["redis"]["prefix"], lease_s=1.0)


def _message(write_ms: int) -> str:
    write = json.dumps({"text": "ledger", "sleep_ms": write_ms})
    echo = json.dumps({"text": "echo", "sleep_ms": 10})
    return f"/call approved_write {write}\n/call slow_echo {echo}"


async def _state(queue: JobQueue, job_id: str) -> JobState | None:
    record = await queue.get(job_id)
    return None if record is None else record.state


def _runs(tool_log: Path, text: str) -> tuple[int, int]:
    events = [e for e in read_tool_log(tool_log) if e["text"] == text]
    counts = Counter(e["event"] for e in events)
    return counts["start"], counts["end"]


@PAIRS
async def test_a_worker_killed_during_the_pause_loses_nothing(
    emulator: Emulator,
    assistant_id: str,
    tmp_path: Path,
    store: dict[str, Any],
    protocol: str,
    cli: InProcess,
) -> None:
    """The job pauses (the call needing no approval ran); its worker is SIGKILLed; the CLI
    approves (idempotently; a change of mind is refused); a new worker finishes the run with
    ONE submission, and each tool ran once."""
    queue = _queue(store)
    tool_log = tmp_path / "tools.jsonl"
    config = write_config(
        tmp_path / "w.toml", base_url=emulator.base_url, queue=store, protocol=protocol
    )
    await queue.submit(_job("job-a", protocol, assistant_id, write_ms=50))
    env = {"WORKER_TEST_TOOL_LOG": str(tool_log)}
    procs = [spawn_worker(config, "w1", tmp_path, env=env)]
    try:

        async def paused() -> bool:
            assert procs[0].poll() is None, tail(tmp_path / "w1.log")
            return await _state(queue, "job-a") is JobState.AWAITING_APPROVAL

        await wait_until(paused, timeout=30, what="the job to pause")
        procs[0].kill()
        procs[0].wait()
        record = await queue.get("job-a")
        assert record is not None and record.progress.pause is not None
        (call_id,) = record.progress.pause.call_ids
        assert _runs(tool_log, "echo") == (1, 1) and _runs(tool_log, "ledger") == (0, 0)
        approve = ["approve", "job-a", call_id, "--config", str(config), "--by", "tester"]
        done = await asyncio.to_thread(run_cli, approve)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["outcome"] == "queued"
        # The same command again, and a change of mind: their logic, in this process.
        again = await asyncio.to_thread(cli, *approve)
        assert again.returncode == 0 and json.loads(again.stdout)["outcome"] == "unchanged"
        refuse = ["reject", "job-a", call_id, "--config", str(config), "--reason", "no"]
        changed = await asyncio.to_thread(cli, *refuse)
        assert changed.returncode == 1 and "already approved" in changed.stderr
        procs.append(spawn_worker(config, "w2", tmp_path, env=env))

        async def finished() -> bool:
            assert procs[1].poll() is None, tail(tmp_path / "w2.log")
            return await _state(queue, "job-a") is JobState.DONE

        await wait_until(finished, timeout=30, what="the resumed job to finish")
    finally:
        stop_all(procs)
    record = await queue.get("job-a")
    await queue.aclose()
    assert record is not None and record.result is not None
    assert record.result.status == "completed", record.result.error
    assert record.progress.decisions[call_id].by == "tester"
    assert _runs(tool_log, "echo") == (1, 1) and _runs(tool_log, "ledger") == (1, 1)
    assert _submissions(emulator, protocol) == 1
    assert "approved_write returned: wrote ledger" in record.result.text


@SWAPPED
async def test_a_worker_killed_during_the_approved_write_never_runs_it_again(
    emulator: Emulator, assistant_id: str, tmp_path: Path, store: dict[str, Any], protocol: str
) -> None:
    """Approved by the library call, the write starts in the resumed round and its worker is
    SIGKILLed mid-write: the successor does not run it again but answers that its outcome
    is unknown (the ledger recorded its start); the round is still submitted once."""
    queue = _queue(store)
    tool_log = tmp_path / "tools.jsonl"
    config = write_config(
        tmp_path / "w.toml", base_url=emulator.base_url, queue=store, protocol=protocol
    )
    await queue.submit(_job("job-b", protocol, assistant_id, write_ms=30_000))
    env = {"WORKER_TEST_TOOL_LOG": str(tool_log)}
    procs = [spawn_worker(config, "w1", tmp_path, env=env)]
    try:

        async def paused() -> bool:
            assert procs[0].poll() is None, tail(tmp_path / "w1.log")
            return await _state(queue, "job-b") is JobState.AWAITING_APPROVAL

        await wait_until(paused, timeout=30, what="the job to pause")
        record = await queue.get("job-b")
        assert record is not None and record.progress.pause is not None
        (call_id,) = record.progress.pause.call_ids
        decision = DecisionRecord(approved=True, by="library")
        assert await decide(queue, "job-b", call_id, decision) == "queued"

        async def writing() -> bool:
            return _runs(tool_log, "ledger")[0] == 1

        await wait_until(writing, timeout=30, what="the approved write to start")
        procs[0].kill()
        procs[0].wait()
        procs.append(spawn_worker(config, "w2", tmp_path, env=env))

        async def finished() -> bool:
            assert procs[1].poll() is None, tail(tmp_path / "w2.log")
            return await _state(queue, "job-b") is JobState.DONE

        await wait_until(finished, timeout=30, what="the successor to finish the job")
    finally:
        stop_all(procs)
    record = await queue.get("job-b")
    await queue.aclose()
    assert record is not None and record.result is not None
    assert record.result.status == "completed", record.result.error
    assert _runs(tool_log, "ledger") == (1, 0)  # started once, never again
    assert _runs(tool_log, "echo") == (1, 1)
    (write,) = [c for c in record.result.tool_calls if c.id == call_id]
    assert write.is_error and json.loads(write.output)["error"]["type"] == "outcome_unknown"
    assert _submissions(emulator, protocol) == 1
