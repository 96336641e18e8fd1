"""Long-running worker: jobs from a queue, run through the orchestrator, results stored.

Embedded in a service (memory backend, submit and await)::

    queue = MemoryQueue()
    worker = Worker(queue, RunExecutor(orchestrator.session()), WorkerOptions("svc-1"))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(worker.run())
        await queue.submit(Job(id="order-42", assistant_id=asst, messages=[...]))
        record = await queue.result("order-42", timeout_s=60)
        worker.drain()

As a process: ``python -m runtime worker --config config/worker.toml`` (see ``app.serve``);
``python -m runtime submit`` enqueues a job and ``python -m runtime jobs`` lists them.
``config/worker.toml`` documents every setting with its default; environment variables
override it as ``RUNTIME_WORKER_<SECTION>__<KEY>`` (e.g.
``RUNTIME_WORKER_QUEUE__BACKEND=redis``), and ``protocol`` picks Assistants or Responses.

Queues (:class:`JobQueue`): memory, SQLite (one node) and Redis Streams (consumer groups,
several hosts). A job is acknowledged only after its result is stored. A lease carries the
job's attempt counter as a fencing token: every write of a lease holder checks it, so a
worker wrongly declared dead cannot overwrite its successor's work. A job delivered
``max_deliveries`` times without a result is dead-lettered; an unreadable record is
dead-lettered at its first delivery with the reason.

Crash recovery: each tool output is stored as soon as its tool finishes, in the same write
as the run id when that is new. On Responses the response id is stored as soon as the first
event names it; on Assistants it waits for that next write (a run without tool calls has it
stored with its result), since the run is found by its idempotency key anyway. A reclaimed job
resumes its stored run with the stored outputs as ``known_results`` (never executed again); a
run created before its id was stored is found by its idempotency key (Assistants). Storing a result is retried, with heartbeats, for
as long as the lease lives. On Responses, a response whose id was never stored cannot be
found again (no idempotency key, no list endpoint): the successor creates it again and the
orphan runs to its end on the server, with the ``job_id`` in its metadata.

Shutdown: SIGTERM/SIGINT stops claiming and lets in-flight jobs finish for
``grace_period_s``; the rest are cancelled on the server and released unacknowledged, so the
next worker starts a fresh run. A second signal ends the grace at once; ``--burst`` exits
once the queue has no unfinished job; SIGUSR1 prints every task's stack to stderr.

Health and metrics on ``127.0.0.1:9464``: ``/healthz``, ``/readyz`` (503 while draining, the
queue is unreachable or a tool server has failed) and ``/metrics`` (``agent_worker_runs_total``,
``agent_worker_tool_calls_total``, ``agent_worker_job_duration_seconds``,
``agent_worker_tool_duration_seconds``, ``agent_worker_retries_total``,
``agent_worker_dead_letters_total``, ``agent_worker_jobs_in_flight``,
``agent_worker_queue_depth``, ``agent_worker_queue_lag_seconds``, ``agent_worker_draining``,
``agent_worker_tool_source_up``, ``agent_worker_pacing_wait_seconds``).

Tracing (``[tracing]``, the ``otel`` extra): a job made while a span is current stores its
W3C trace context (``Job.trace_context``), and the job's run continues that trace, so
``submit`` -> queue -> run -> tools is one trace (see :mod:`runtime.core.tracing`). Rate
pacing (``[pacing]``, ``store = "redis"``): one token bucket per model and key for the
whole fleet (see :mod:`runtime.pacing`).

Approvals: a run that pauses for a person (a tool with ``needs_approval``) makes its job
``awaiting_approval`` with its pending calls; ``python -m runtime approve JOB CALL`` /
``reject JOB CALL --reason ...``, ``POST /jobs/JOB/calls/CALL/approve|reject`` on the HTTP
port (``http.approval_token``) or :func:`decide` record decisions (idempotent; who, when);
the last one queues the job again (:mod:`runtime.worker.approvals`). ``write`` tools are
recorded in the queue's store before they start (:class:`StoreLedger`): a successor never
runs one again blindly.

Limits: a read tool that finished but whose output was not stored yet when its worker died
runs again (tools with side effects should be declared ``effects="write"``); Redis
``maxlen`` trims the oldest entries whether processed or not; finished records expire after
``result_ttl_s`` (7 days); a worker stalled longer than ``lease_s`` loses its jobs.
"""

from runtime.worker.approvals import DecisionError, StoreLedger, decide, expire_pauses
from runtime.worker.memory import MemoryQueue
from runtime.worker.models import (
    DecisionRecord,
    Job,
    JobRecord,
    JobResult,
    JobState,
    JobTimings,
    Lease,
    Message,
    PauseRecord,
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
    "DecisionError",
    "DecisionRecord",
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
    "PauseRecord",
    "Progress",
    "QueueError",
    "QueueStats",
    "RunExecutor",
    "RunOutcome",
    "StoreLedger",
    "ToolOutput",
    "UsageRecord",
    "Worker",
    "WorkerOptions",
    "WorkerSettings",
    "decide",
    "executor_for",
    "expire_pauses",
    "load_worker_settings",
    "wait_for_result",
]
