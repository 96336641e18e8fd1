"""Long-running worker: jobs from a queue, run through the orchestrator, results stored.

Embedded in a service (memory backend, submit and await)::

    queue = MemoryQueue()
    worker = Worker(queue, RunExecutor(session), WorkerOptions("svc-1"))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(worker.run())
        await queue.submit(Job(id="order-42", assistant_id=asst, messages=[...]))
        record = await queue.result("order-42", timeout_s=60)
        worker.drain()

As a process: ``python -m runtime worker --config config/worker.toml`` (see ``app.serve``).
"""

from runtime.worker.memory import MemoryQueue
from runtime.worker.models import (
    Job,
    JobRecord,
    JobResult,
    JobState,
    JobTimings,
    Lease,
    Message,
    Progress,
    QueueStats,
    ToolOutput,
    UsageRecord,
)
from runtime.worker.queue import JobQueue, LeaseLost, QueueError, wait_for_result
from runtime.worker.runner import (
    JobContext,
    JobExecutor,
    JobFailed,
    RunExecutor,
    RunOutcome,
    executor_for,
)
from runtime.worker.service import Worker, WorkerOptions
from runtime.worker.settings import WorkerSettings, load_worker_settings

__all__ = [
    "Job",
    "JobContext",
    "JobExecutor",
    "JobFailed",
    "JobQueue",
    "JobRecord",
    "JobResult",
    "JobState",
    "JobTimings",
    "Lease",
    "LeaseLost",
    "MemoryQueue",
    "Message",
    "Progress",
    "QueueError",
    "QueueStats",
    "RunExecutor",
    "RunOutcome",
    "ToolOutput",
    "UsageRecord",
    "Worker",
    "WorkerOptions",
    "WorkerSettings",
    "executor_for",
    "load_worker_settings",
    "wait_for_result",
]
