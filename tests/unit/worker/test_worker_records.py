"""Malformed job records: dead-lettered at once with the reason, never a crash of claim/jobs."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from runtime.worker import Job, JobState, Message
from runtime.worker.cli import jobs_main
from runtime.worker.models import JobResult, JobTimings
from runtime.worker.queue import JobQueue
from runtime.worker.redis import RedisQueue
from runtime.worker.sqlite import SqliteQueue

REDIS_URL = os.environ.get("RUNTIME_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")


def _job(job_id: str) -> Job:
    return Job(id=job_id, assistant_id="asst_1", messages=(Message(content="hi"),))


@dataclass
class Store:
    """A queue plus raw access to its storage, to plant records no submitter would write."""

    queue: JobQueue
    inject: Callable[..., None]
    raw_job: Callable[[str], str]
    config: Path | None = None


def _sqlite_store(tmp_path: Path) -> Store:
    db = tmp_path / "jobs.db"

    def inject(job_id: str, job_text: str, *, submitted_at: object = None) -> None:
        now = time.time()
        with sqlite3.connect(db) as conn:
            conn.execute(
                "INSERT INTO jobs (job_id, job, state, available_at, submitted_at, updated_at) "
                "VALUES (?, ?, 'queued', ?, ?, ?)",
                (job_id, job_text, now, now if submitted_at is None else submitted_at, now),
            )

    def raw_job(job_id: str) -> str:
        with sqlite3.connect(db) as conn:
            return str(
                conn.execute("SELECT job FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0]
            )

    config = tmp_path / "w.toml"
    config.write_text(f'[queue]\nbackend = "sqlite"\n[queue.sqlite]\npath = "{db}"\n')
    return Store(SqliteQueue(db), inject, raw_job, config)


def _redis_store(prefix: str) -> Store:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)

    def inject(job_id: str, job_text: str, *, submitted_at: object = None) -> None:
        now = repr(time.time())
        entry = client.xadd(f"{prefix}:jobs", {"job_id": job_id})
        client.hset(
            f"{prefix}:job:{job_id}",
            mapping={
                "job": job_text,
                "state": "queued",
                "attempt": 0,
                "submitted_at": now if submitted_at is None else str(submitted_at),
                "updated_at": now,
                "entry": entry,
                "run_seq": 0,
                "worker_cancelled": 0,
            },
        )
        client.zadd(f"{prefix}:recent", {job_id: time.time()})
        client.sadd(f"{prefix}:open", job_id)

    def raw_job(job_id: str) -> str:
        return str(client.hget(f"{prefix}:job:{job_id}", "job"))

    return Store(RedisQueue(REDIS_URL, prefix=prefix), inject, raw_job)


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A sqlite or redis queue with raw write access."""
    if request.param == "sqlite":
        made = _sqlite_store(tmp_path)
        yield made
        await made.queue.aclose()
        return
    probe = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        await probe.ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(f"no redis-server at {REDIS_URL} ({exc}); start one with .ci/redis.sh")
    finally:
        await probe.aclose()
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    made = _redis_store(prefix)
    yield made
    await made.queue.aclose()
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _result(job_id: str) -> JobResult:
    timings = JobTimings(
        submitted_at=0, started_at=0, finished_at=0, run_seconds=0, total_seconds=0
    )
    return JobResult(
        job_id=job_id,
        run_id=None,
        conversation_id=None,
        status="completed",
        timings=timings,
        attempts=1,
    )


async def test_malformed_records_are_dead_lettered_and_good_jobs_served(store: Store) -> None:
    """Bad JSON, missing fields and a non-numeric timestamp go to the dead-letter store at the
    first claim, with the reason; the good jobs around them are leased in the same claim."""
    queue = store.queue
    await queue.submit(_job("good-1"))
    store.inject("bad-json", "{not json")
    store.inject("missing-fields", '{"id": "missing-fields"}')
    store.inject("bad-time", _job("bad-time").model_dump_json(), submitted_at="yesterday")
    await queue.submit(_job("good-2"))
    with capture_logs() as logs:
        leases = await queue.claim("w1", 10, 0.5)
    assert sorted(lease.job.id for lease in leases) == ["good-1", "good-2"]
    assert await queue.claim("w1", 10, 0.1) == []
    reasons = {
        "bad-json": "job is not JSON",
        "missing-fields": "invalid job",
        "bad-time": "submitted_at is not a number",
    }
    for job_id, reason in reasons.items():
        record = await queue.get(job_id)
        assert record is not None and record.job_id == job_id and record.job is None
        assert record.state is JobState.DEAD
        assert record.last_error is not None and record.last_error.startswith("malformed job")
        assert reason in record.last_error, record.last_error
    dead = await queue.dead_letters()
    assert sorted(r.job_id for r in dead) == sorted(reasons)
    listed = await queue.recent(20)
    assert {r.job_id for r in listed} == {"good-1", "good-2", *reasons}
    buried = sorted(e["job_id"] for e in logs if e["event"] == "worker.record_dead_lettered")
    assert buried == sorted(reasons)
    assert (await queue.stats()).dead == 3


async def test_unknown_fields_from_a_newer_submitter_are_ignored_and_kept(store: Store) -> None:
    """A job with a field this version does not know runs (with a warning naming the field);
    the stored record keeps the field, and the result is stored and read back."""
    queue = store.queue
    await queue.submit(_job("good"))
    newer = json.loads(_job("newer").model_dump_json()) | {"priority": 7}
    store.inject("newer", json.dumps(newer))
    with capture_logs() as logs:
        leases = await queue.claim("w1", 10, 0.5)
    by_id = {lease.job.id: lease for lease in leases}
    assert sorted(by_id) == ["good", "newer"]
    warnings = [e for e in logs if e["event"] == "worker.job_unknown_fields"]
    assert [(e["job_id"], e["fields"]) for e in warnings] == [("newer", ["priority"])]
    assert await queue.complete(by_id["newer"], _result("newer"))
    record = await queue.get("newer")
    assert record is not None and record.state is JobState.DONE and record.job is not None
    assert json.loads(store.raw_job("newer"))["priority"] == 7


def test_jobs_cli_lists_a_malformed_record_as_dead_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m runtime jobs` lists, shows and dead-lists a malformed record instead of
    crashing (sqlite)."""
    made = _sqlite_store(tmp_path)
    asyncio.run(made.queue.submit(_job("good")))
    made.inject("bad-json", "[1, 2")
    assert jobs_main(["--config", str(made.config)]) == 0  # before any worker met it
    assert "job is not JSON" in capsys.readouterr().out

    async def claim_then_close() -> int:
        with capture_logs():
            leases = await made.queue.claim("w1", 10, 0.2)
        await made.queue.aclose()
        return len(leases)

    assert asyncio.run(claim_then_close()) == 1
    assert jobs_main(["--config", str(made.config), "--json"]) == 0
    rows = {row["job_id"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["bad-json"]["state"] == "dead"
    assert rows["bad-json"]["error"].startswith("malformed job record: job is not JSON")
    assert jobs_main(["--config", str(made.config), "--dead"]) == 0
    assert "bad-json" in capsys.readouterr().out
    assert jobs_main(["--config", str(made.config), "bad-json"]) == 0
    assert '"job": null' in capsys.readouterr().out


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_a_redis_job_key_of_the_wrong_type_is_dead_lettered(store: Store) -> None:
    """A job key that is not a hash (WRONGTYPE in the claim script) is dead-lettered from the
    stream; the claim still leases the good job, and listing shows the key as unreadable."""
    queue = store.queue
    assert isinstance(queue, RedisQueue)
    await queue.submit(_job("good"))
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    prefix = queue.stream.removesuffix(":jobs")
    await client.set(f"{prefix}:job:wrongtype", "not a hash")
    await client.xadd(queue.stream, {"job_id": "wrongtype"})
    await client.zadd(f"{prefix}:recent", {"wrongtype": time.time()})
    leases = await queue.claim("w1", 10, 0.5)
    listed = {r.job_id: r for r in await queue.recent(10)}
    assert listed["wrongtype"].state is JobState.DEAD and listed["wrongtype"].job is None
    assert "WRONGTYPE" in (listed["wrongtype"].last_error or "")
    assert [lease.job.id for lease in leases] == ["good"]
    dead = await client.xrange(queue.dead_stream)
    pending = await client.xpending(queue.stream, "workers")
    await client.aclose()
    assert [fields["job_id"] for _id, fields in dead] == ["wrongtype"]
    assert "WRONGTYPE" in dead[0][1]["error"]
    assert pending["pending"] == 1  # only the good job's entry is still pending


def test_a_tool_result_becomes_the_same_stored_output_validated_or_not() -> None:
    """A dispatcher result of plain types is stored as the validating constructor would
    store it (equal, same JSON, read back equal); one with other types still goes through
    validation: an int ``seconds`` becomes a float, a ``None`` name is refused as before."""
    from pydantic import ValidationError

    from runtime.worker.models import ToolOutput
    from runtime.worker.runner import _to_output
    from tools import ToolCallResult

    plain = ToolCallResult(
        tool_call_id="call_1",
        name="calculate",
        arguments='{"expression": "6*7"}',
        output="42",
        is_error=False,
        seconds=0.012,
    )
    made = _to_output(plain)
    validated = ToolOutput(
        id="call_1",
        name="calculate",
        arguments='{"expression": "6*7"}',
        output="42",
        is_error=False,
        seconds=0.012,
    )
    assert made == validated
    assert made.model_dump_json() == validated.model_dump_json()
    assert ToolOutput.model_validate_json(made.model_dump_json()) == validated

    odd = ToolCallResult(
        tool_call_id="call_2",
        name="calculate",
        arguments="{}",
        output="",
        is_error=True,
        seconds=1,  # type: ignore[arg-type]
    )
    assert type(_to_output(odd).seconds) is float
    broken = ToolCallResult(
        tool_call_id="call_3",
        name=None,
        arguments="{}",
        output="",
        is_error=True,  # type: ignore[arg-type]
        seconds=0.1,
    )
    with pytest.raises(ValidationError):
        _to_output(broken)
