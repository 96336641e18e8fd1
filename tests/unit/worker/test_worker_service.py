"""The worker loop on the memory queue with small executors: slots, burst, drain, retries."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import structlog

from runtime.worker import (
    Job,
    JobContext,
    JobFailed,
    JobState,
    MemoryQueue,
    Message,
    RunOutcome,
    ToolOutput,
    Worker,
    WorkerOptions,
)
from runtime.worker.http import HealthServer
from runtime.worker.metrics import WorkerMetrics
from runtime.worker.models import JobResult, Lease


def _job(job_id: str) -> Job:
    return Job(id=job_id, assistant_id="asst_1", messages=(Message(content="hi"),))


def _options(**overrides: object) -> WorkerOptions:
    values: dict[str, object] = {
        "consumer": "w1",
        "concurrency": 3,
        "grace_period_s": 5.0,
        "heartbeat_s": 0.05,
        "claim_wait_s": 0.05,
        "retry_delay_s": 0.0,
        "max_deliveries": 3,
        "burst": True,
    }
    values.update(overrides)
    return WorkerOptions(**values)  # type: ignore[arg-type]


class SleepExecutor:
    """Sleeps per job, records concurrency, stores run and tool progress like a real run."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds
        self.running = 0
        self.max_running = 0
        self.cancelled: list[str] = []

    async def __call__(self, ctx: JobContext) -> RunOutcome:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await ctx.save_run(f"run_{ctx.lease.job.id}")
            await asyncio.sleep(self.seconds)
            await ctx.save_tool_output(ToolOutput(id="call_1", name="echo", output="x"))
        except asyncio.CancelledError:
            self.cancelled.append(ctx.lease.job.id)
            raise
        finally:
            self.running -= 1
        return RunOutcome(
            status="completed", run_id=ctx.run_id, conversation_id="thread_1", text="done"
        )


async def test_burst_processes_everything_within_the_concurrency_bound() -> None:
    """Burst mode finishes every job, never running more than `concurrency` at once."""
    queue = MemoryQueue()
    for i in range(10):
        await queue.submit(_job(f"j{i}"))
    executor = SleepExecutor()
    worker = Worker(queue, executor, _options())
    await asyncio.wait_for(worker.run(), timeout=10)
    assert executor.max_running == 3
    records = await queue.recent(20)
    assert len(records) == 10 and all(r.state is JobState.DONE for r in records)
    result = records[0].result
    assert result is not None and result.status == "completed" and result.attempts == 1
    assert result.run_id == f"run_{records[0].job.id}"
    assert worker.processed == 10


async def test_the_in_flight_gauge_counts_the_jobs_running_when_scraped() -> None:
    """agent_worker_jobs_in_flight is the number of jobs running at the scrape: 2 while two
    long jobs run, 0 once they are over."""
    queue = MemoryQueue()
    await queue.submit(_job("a"))
    await queue.submit(_job("b"))
    metrics = WorkerMetrics()
    worker = Worker(queue, SleepExecutor(seconds=0.3), _options(), metrics)
    task = asyncio.create_task(worker.run())
    while worker.in_flight < 2:
        await asyncio.sleep(0.01)
    during = metrics.render().decode()
    await asyncio.wait_for(task, timeout=5)
    assert "agent_worker_jobs_in_flight 2.0" in during
    assert "agent_worker_jobs_in_flight 0.0" in metrics.render().decode()


async def test_drain_finishes_within_grace_and_releases_the_rest() -> None:
    """A drain completes short jobs and releases long ones unacknowledged, flagged as cancelled."""
    queue = MemoryQueue()
    await queue.submit(_job("short"))
    await queue.submit(_job("long"))

    class Mixed(SleepExecutor):
        async def __call__(self, ctx: JobContext) -> RunOutcome:
            self.seconds = 0.05 if ctx.lease.job.id == "short" else 30.0
            return await super().__call__(ctx)

    executor = Mixed()
    worker = Worker(queue, executor, _options(burst=False, grace_period_s=0.3))
    task = asyncio.create_task(worker.run())
    while worker.in_flight < 2:
        await asyncio.sleep(0.01)
    worker.drain()
    await asyncio.wait_for(task, timeout=5)
    short, long = await queue.get("short"), await queue.get("long")
    assert short is not None and short.state is JobState.DONE
    assert long is not None and long.state is JobState.QUEUED and long.result is None
    assert long.progress.worker_cancelled and long.progress.run_id == "run_long"
    assert long.last_error == "worker drained"
    assert executor.cancelled == ["long"]


async def test_second_drain_skips_the_grace_period() -> None:
    """A second drain() (second SIGTERM) cancels in-flight jobs without waiting for the grace."""
    queue = MemoryQueue()
    await queue.submit(_job("long"))
    executor = SleepExecutor(seconds=30.0)
    worker = Worker(queue, executor, _options(burst=False, grace_period_s=30.0))
    task = asyncio.create_task(worker.run())
    while worker.in_flight < 1:
        await asyncio.sleep(0.01)
    worker.drain()
    await asyncio.sleep(0.1)
    assert not task.done() and executor.cancelled == []
    worker.drain()
    await asyncio.wait_for(task, timeout=5)
    record = await queue.get("long")
    assert executor.cancelled == ["long"]
    assert record is not None and record.state is JobState.QUEUED and record.result is None


async def test_failing_job_is_retried_then_dead_lettered() -> None:
    """An attempt that raises is released for retry; after max_deliveries the job is dead."""
    queue = MemoryQueue(max_deliveries=3)
    await queue.submit(_job("poison"))
    await queue.submit(_job("fine"))
    attempts: list[int] = []

    async def executor(ctx: JobContext) -> RunOutcome:
        if ctx.lease.job.id == "poison":
            attempts.append(ctx.lease.attempt)
            raise RuntimeError("tool module exploded")
        return RunOutcome(status="completed", run_id="run_1", conversation_id="thread_1")

    worker = Worker(queue, executor, _options())
    await asyncio.wait_for(worker.run(), timeout=10)
    poison = await queue.get("poison")
    assert attempts == [1, 2, 3]
    assert poison is not None and poison.state is JobState.DEAD
    assert poison.last_error == "RuntimeError: tool module exploded"
    assert [r.job.id for r in await queue.dead_letters()] == ["poison"]
    fine = await queue.get("fine")
    assert fine is not None and fine.state is JobState.DONE


async def test_hopeless_job_stores_an_error_result() -> None:
    """JobFailed (e.g. unknown assistant) is a final result with status error, not a retry."""
    queue = MemoryQueue()
    await queue.submit(_job("bad"))

    async def executor(ctx: JobContext) -> RunOutcome:
        raise JobFailed("NotFoundError: no assistant asst_1")

    await asyncio.wait_for(Worker(queue, executor, _options()).run(), timeout=10)
    record = await queue.get("bad")
    assert record is not None and record.state is JobState.DONE and record.attempt == 1
    assert record.result is not None and record.result.status == "error"
    assert record.result.error == "NotFoundError: no assistant asst_1"


async def test_lost_lease_stops_the_attempt_and_writes_nothing() -> None:
    """When another worker took the job over, the old attempt is cancelled and stores nothing."""
    queue = MemoryQueue(lease_s=0.1)
    await queue.submit(_job("j1"))
    executor = SleepExecutor(seconds=5.0)
    # Heartbeats slower than the lease: the lease expires and a thief can claim the job.
    worker = Worker(queue, executor, _options(burst=False, heartbeat_s=0.4, concurrency=1))
    task = asyncio.create_task(worker.run())
    while worker.in_flight < 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.15)
    (stolen,) = await queue.claim("thief", 1, 1.0)
    assert stolen.attempt == 2
    while executor.cancelled != ["j1"]:
        assert await queue.heartbeat(stolen)
        await asyncio.sleep(0.02)
    worker.drain()
    await asyncio.wait_for(task, timeout=5)
    record = await queue.get("j1")
    assert record is not None and record.state is JobState.RUNNING and record.owner == "thief"
    # The stale attempt flagged its run before stopping (which cancels it on the server).
    assert record.last_error is None and record.progress.worker_cancelled
    assert await queue.complete(stolen, _outcome_result(stolen.job.id, stolen.attempt))


def _outcome_result(job_id: str, attempt: int) -> object:
    from runtime.worker.models import JobResult, JobTimings

    return JobResult(
        job_id=job_id,
        run_id=None,
        conversation_id=None,
        status="completed",
        timings=JobTimings(
            submitted_at=0, started_at=0, finished_at=0, run_seconds=0, total_seconds=0
        ),
        attempts=attempt,
    )


async def test_health_ready_and_metrics_endpoints() -> None:
    """/healthz answers, /readyz turns 503 on drain, /metrics shows runs, tools and queue depth."""
    queue = MemoryQueue()
    for i in range(2):
        await queue.submit(_job(f"j{i}"))
    metrics = WorkerMetrics(known_tool={"echo"}.__contains__)
    worker = Worker(queue, SleepExecutor(), _options(burst=False), metrics)
    server = HealthServer(worker, port=0)
    await server.start()
    task = asyncio.create_task(worker.run())
    try:
        while worker.processed < 2:
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ok"
            async with http.get(server.url + "/readyz") as resp:
                assert resp.status == 200
            async with http.get(server.url + "/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            worker.drain()
            async with http.get(server.url + "/readyz") as resp:
                assert resp.status == 503 and (await resp.json())["status"] == "draining"
    finally:
        worker.drain()
        await asyncio.wait_for(task, timeout=5)
        await server.aclose()
    assert 'agent_worker_runs_total{status="completed"} 2.0' in text
    assert 'agent_worker_tool_calls_total{outcome="ok",tool="echo"} 2.0' in text
    assert "agent_worker_job_duration_seconds_count 2.0" in text
    assert "agent_worker_jobs_in_flight" in text
    assert 'agent_worker_queue_depth{state="queued"} 0.0' in text
    assert "agent_worker_queue_lag_seconds 0.0" in text


async def test_readyz_reports_an_unreachable_queue() -> None:
    """/readyz answers 503 queue_unreachable when the queue's server is down."""
    from runtime.worker.redis import RedisQueue

    queue = RedisQueue("redis://127.0.0.1:1/0")  # nothing listens on port 1
    worker = Worker(queue, SleepExecutor(), _options())
    server = HealthServer(worker, port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/readyz") as resp:
                body = await resp.json()
            async with http.get(server.url + "/healthz") as health:
                assert health.status == 200
            async with http.get(server.url + "/metrics") as metrics:
                assert metrics.status == 200  # still served without queue statistics
    finally:
        await server.aclose()
        await queue.aclose()
    assert resp.status == 503 and body["status"] == "queue_unreachable"


async def test_readyz_is_503_while_a_tool_server_has_failed() -> None:
    """A failed MCP tool server makes the worker unready (503, named); connected ones are
    listed and ready; the up gauge follows."""
    states = {"files": "connected", "search": "failed"}
    queue = MemoryQueue()
    worker = Worker(queue, SleepExecutor(), _options())
    server = HealthServer(worker, port=0, tool_sources=lambda: dict(states))
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/readyz") as resp:
                body = await resp.json()
                assert resp.status == 503
                assert body["status"] == "tool_source_failed" and body["failed"] == ["search"]
            async with http.get(server.url + "/metrics") as resp:
                text = await resp.text()
                assert 'agent_worker_tool_source_up{server="search"} 0.0' in text
                assert 'agent_worker_tool_source_up{server="files"} 1.0' in text
            states["search"] = "connected"
            async with http.get(server.url + "/readyz") as resp:
                assert resp.status == 200 and (await resp.json())["mcp"] == states
    finally:
        await server.aclose()


def test_made_up_tool_names_share_one_series() -> None:
    """Calls of 200 random unregistered tool names count under one ``tool="unknown"`` series
    (a model-chosen name never becomes a label); a registered tool keeps its own."""
    metrics = WorkerMetrics(known_tool={"echo"}.__contains__)
    for _ in range(200):
        metrics.observe_tool_call(f"tool_{secrets.token_hex(6)}", is_error=True, seconds=0.01)
    metrics.observe_tool_call("echo", is_error=False, seconds=0.01)
    text = metrics.render().decode()
    series = [
        line for line in text.splitlines() if line.startswith("agent_worker_tool_calls_total{")
    ]
    assert sorted(series) == [
        'agent_worker_tool_calls_total{outcome="error",tool="unknown"} 200.0',
        'agent_worker_tool_calls_total{outcome="ok",tool="echo"} 1.0',
    ]
    durations = [
        line
        for line in text.splitlines()
        if line.startswith("agent_worker_tool_duration_seconds_count")
    ]
    assert len(durations) == 2


def test_repeated_label_values_keep_counting_in_their_own_series() -> None:
    """Runs and tool calls counted many times under the same labels (the series' children are
    looked up once and kept) still add up per status, tool and outcome, and a new label value
    later gets a series of its own."""
    metrics = WorkerMetrics(known_tool={"echo"}.__contains__)
    for _ in range(3):
        metrics.count_run("completed")
        metrics.observe_tool_call("echo", is_error=False, seconds=0.5)
    metrics.observe_tool_call("echo", is_error=True, seconds=0.25)
    metrics.count_run("failed")
    text = metrics.render().decode()
    assert 'agent_worker_runs_total{status="completed"} 3.0' in text
    assert 'agent_worker_runs_total{status="failed"} 1.0' in text
    assert 'agent_worker_tool_calls_total{outcome="ok",tool="echo"} 3.0' in text
    assert 'agent_worker_tool_calls_total{outcome="error",tool="echo"} 1.0' in text
    assert 'agent_worker_tool_duration_seconds_count{tool="echo"} 4.0' in text
    assert 'agent_worker_tool_duration_seconds_sum{tool="echo"} 1.75' in text


async def test_only_a_redelivered_jobs_start_is_logged_at_info() -> None:
    """A first delivery's worker.job_started is DEBUG (its worker.job_finished says it all);
    a redelivery's start stays INFO, so a crash's aftermath is visible at the shipped level."""
    from structlog.testing import capture_logs

    queue = MemoryQueue(lease_s=0.1)
    await queue.submit(_job("redelivered"))
    (dead,) = await queue.claim("dead-worker", 1, 1.0)
    await asyncio.sleep(0.2)  # its lease lapses
    await queue.submit(_job("fresh"))
    with capture_logs() as logs:
        await asyncio.wait_for(Worker(queue, SleepExecutor(), _options()).run(), timeout=10)
    started = sorted(e["log_level"] for e in logs if e["event"] == "worker.job_started")
    assert started == ["debug", "info"]
    finished = [e for e in logs if e["event"] == "worker.job_finished"]
    assert len(finished) == 2 and all(e["log_level"] == "info" for e in finished)
    record = await queue.get("redelivered")
    assert record is not None and record.attempt == dead.attempt + 1


class _Claims(MemoryQueue):
    """A memory queue that counts how the worker claims: the jobs its claim loop claimed,
    and those claimed with a stored result."""

    def __init__(self) -> None:
        super().__init__()
        self.loop_claims = 0
        self.handed_on: list[str] = []

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        leases = await super().claim(consumer, count, wait_s)
        self.loop_claims += len(leases)
        return leases

    async def complete_and_claim(
        self, lease: Lease, result: JobResult, consumer: str, count: int
    ) -> tuple[bool, list[Lease]]:
        stored, leases = await super().complete_and_claim(lease, result, consumer, count)
        self.handed_on += [successor.job.id for successor in leases]
        return stored, leases


async def test_a_finished_jobs_slot_goes_to_the_job_claimed_with_its_result() -> None:
    """The write storing a result also claims the next job for its slot: every job runs
    exactly once, never more than `concurrency` at once, and each starts without the
    finished job's log context (its run id)."""
    queue = _Claims()
    for i in range(12):
        await queue.submit(_job(f"j{i}"))
    seen: list[tuple[str, dict[str, object]]] = []

    class Executor(SleepExecutor):
        async def __call__(self, ctx: JobContext) -> RunOutcome:
            seen.append((ctx.lease.job.id, structlog.contextvars.get_contextvars()))
            structlog.contextvars.bind_contextvars(run_id=f"run_{ctx.lease.job.id}")
            return await super().__call__(ctx)

    executor = Executor(seconds=0.01)
    worker = Worker(queue, executor, _options(concurrency=2))
    await asyncio.wait_for(worker.run(), timeout=10)
    assert sorted(job_id for job_id, _ in seen) == sorted(f"j{i}" for i in range(12))
    assert executor.max_running == 2
    assert len(queue.handed_on) >= 8, queue.handed_on  # most slots refilled by the result write
    assert queue.loop_claims + len(queue.handed_on) == len(seen)
    for job_id, context in seen:
        assert context == {"job_id": job_id, "attempt": 1}, (job_id, context)
    records = await queue.recent(20)
    assert all(r.state is JobState.DONE and r.attempt == 1 for r in records)


async def test_a_job_claimed_with_a_result_while_draining_is_given_back() -> None:
    """Draining while a result (and the next claim) is being stored: the claimed job is
    released unexecuted, and runs once on the next worker."""
    queue = MemoryQueue()
    for i in range(2):
        await queue.submit(_job(f"j{i}"))
    ran: list[str] = []

    worker: Worker

    async def executor(ctx: JobContext) -> RunOutcome:
        ran.append(ctx.lease.job.id)
        return RunOutcome(status="completed", run_id="run_1", conversation_id="thread_1")

    original = queue.complete_and_claim

    async def drain_meanwhile(
        lease: Lease, result: JobResult, consumer: str, count: int
    ) -> tuple[bool, list[Lease]]:
        outcome = await original(lease, result, consumer, count)
        worker.drain()
        return outcome

    queue.complete_and_claim = drain_meanwhile  # type: ignore[method-assign]
    worker = Worker(queue, executor, _options(concurrency=1, burst=False))
    await asyncio.wait_for(worker.run(), timeout=10)
    assert ran == ["j0"]
    j1 = await queue.get("j1")
    assert (
        j1 is not None and j1.state is JobState.QUEUED and j1.last_error == "claimed while draining"
    )
    second = Worker(queue, executor, _options(concurrency=1))
    await asyncio.wait_for(second.run(), timeout=10)
    assert ran == ["j0", "j1"]
