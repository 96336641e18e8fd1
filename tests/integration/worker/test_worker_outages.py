"""The worker loop against a real redis-server that the test kills and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from redis_server import RedisServer, redis_server_missing

from runtime.worker import (
    Job,
    JobContext,
    JobState,
    Message,
    QueueError,
    RunOutcome,
    Worker,
    WorkerOptions,
)
from runtime.worker.redis import RedisQueue

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(redis_server_missing() is not None, reason=str(redis_server_missing())),
]


def _job(job_id: str) -> Job:
    return Job(id=job_id, assistant_id="asst_1", messages=(Message(content="hi"),))


@contextmanager
def captured_events() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event, with the bound context merged in as the worker's logs show it."""
    events: list[dict[str, Any]] = []

    def capture(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        events.append({**event_dict, "level": method})
        raise structlog.DropEvent

    saved = structlog.get_config()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        cache_logger_on_first_use=False,
    )
    try:
        yield events
    finally:
        structlog.configure(**saved)


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def _options(**overrides: Any) -> WorkerOptions:
    values: dict[str, Any] = {
        "consumer": "w1",
        "concurrency": 1,
        "heartbeat_s": 0.3,
        "claim_wait_s": 0.2,
        "retry_delay_s": 0.0,
    }
    values.update(overrides)
    return WorkerOptions(**values)


class FinishThenOutage:
    """Ends the run at once, but kills Redis first (only on the first call): the result store
    then meets the outage."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.calls: list[int] = []

    async def __call__(self, ctx: JobContext) -> RunOutcome:
        self.calls.append(ctx.lease.attempt)
        if len(self.calls) == 1:
            self.server.kill()
        return RunOutcome(status="completed", run_id="run_1", conversation_id="thread_1", text="ok")


async def test_result_store_outlives_a_redis_outage_shorter_than_the_lease(
    tmp_path: Path,
) -> None:
    """A result store that meets a 2 s Redis outage (lease 4 s) is retried until Redis is back:
    the same attempt stores it, the job is not redelivered, and every store_failed line keeps
    the job's attempt number next to its own store_attempt counter."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    queue = RedisQueue(server.url, prefix="outage", lease_s=4.0, socket_timeout_s=1.0)
    try:
        await queue.submit(_job("j1"))
        executor = FinishThenOutage(server)
        worker = Worker(queue, executor, _options(lease_s=4.0))
        with captured_events() as events:
            task = asyncio.create_task(worker.run())
            await _until(lambda: bool(executor.calls), 10, "the job to run")
            await asyncio.sleep(2.0)
            server.start()
            await _until(lambda: worker.processed == 1, 15, "the result to be stored")
            worker.drain()
            await asyncio.wait_for(task, timeout=10)
        record = await queue.get("j1")
    finally:
        await queue.aclose()
        server.kill()
    assert executor.calls == [1], "the job was redelivered and run again"
    assert record is not None and record.state is JobState.DONE and record.attempt == 1
    assert record.result is not None and record.result.attempts == 1
    failed = [e for e in events if e["event"] == "worker.store_failed"]
    assert len(failed) >= 3, "the store was not retried through the outage"
    assert all(e["attempt"] == 1 and e["job_id"] == "j1" for e in failed)
    assert [e["store_attempt"] for e in failed] == list(range(1, len(failed) + 1))
    assert not [e for e in events if e["event"] == "worker.store_abandoned"]


async def test_result_store_stops_once_the_lease_lapsed_and_the_next_owner_stores_it(
    tmp_path: Path,
) -> None:
    """An outage longer than the lease ends the store retries (store_abandoned, nothing
    acknowledged); once Redis is back the job is delivered again and attempt 2 stores it."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    queue = RedisQueue(server.url, prefix="lapse", lease_s=1.0, socket_timeout_s=1.0)
    try:
        await queue.submit(_job("j1"))
        executor = FinishThenOutage(server)
        worker = Worker(queue, executor, _options(lease_s=1.0))
        with captured_events() as events:
            task = asyncio.create_task(worker.run())
            await _until(lambda: bool(executor.calls), 10, "the job to run")
            await _until(
                lambda: any(e["event"] == "worker.store_abandoned" for e in events),
                10,
                "the store to give up",
            )
            server.start()
            await _until(lambda: worker.processed == 1, 15, "the result to be stored")
            worker.drain()
            await asyncio.wait_for(task, timeout=10)
        record = await queue.get("j1")
    finally:
        await queue.aclose()
        server.kill()
    abandoned = [e for e in events if e["event"] == "worker.store_abandoned"]
    assert len(abandoned) == 1 and abandoned[0]["attempt"] == 1
    assert executor.calls == [1, 2]
    assert record is not None and record.state is JobState.DONE and record.attempt == 2


async def test_worker_recreates_its_consumer_group_after_a_restart_without_persistence(
    tmp_path: Path,
) -> None:
    """Redis restarts empty (no persistence): the worker's next claim meets NOGROUP, creates
    the group again and runs the jobs submitted after the restart."""
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    queue = RedisQueue(server.url, prefix="nogroup", lease_s=2.0, socket_timeout_s=1.0)
    submitter = RedisQueue(server.url, prefix="nogroup", socket_timeout_s=1.0)

    async def executor(ctx: JobContext) -> RunOutcome:
        return RunOutcome(status="completed", run_id="run_1", conversation_id="thread_1")

    try:
        await submitter.submit(_job("before"))
        worker = Worker(queue, executor, _options(lease_s=2.0))
        with captured_events() as events:
            task = asyncio.create_task(worker.run())
            await _until(lambda: worker.processed == 1, 10, "the first job")
            server.kill()
            server.start()
            # The submitter's pooled connection died with the server: its first command
            # fails, the next one reconnects. It created the group before and does not
            # look again, so only the worker can notice the group is gone.
            with contextlib.suppress(QueueError):
                await submitter.ping()
            assert await submitter.submit(_job("after"))
            await _until(lambda: worker.processed == 2, 10, "the job submitted after the restart")
            worker.drain()
            await asyncio.wait_for(task, timeout=10)
        record = await queue.get("after")
    finally:
        await queue.aclose()
        await submitter.aclose()
        server.kill()
    assert record is not None and record.state is JobState.DONE
    assert any(e["event"] == "worker.group_recreated" for e in events)
