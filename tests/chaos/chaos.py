"""Chaos driver: many runs against a faulty emulator, compared with the fault-free outcome.

Usage::

    python -m tests.chaos.chaos --runs 1000            # the full run (figures in tests/README.md)
    python -m tests.chaos.chaos --runs 100 --json      # machine-readable report

Each run is one of three shapes, chosen deterministically from the seed:

* ``text``: no tools; the scripted model answers ``You said: <message>``;
* ``one_round``: two ``/call`` lines answered in one ``requires_action`` (parallel calls);
* ``two_rounds``: the same two calls with ``parallel_tool_calls=false``: the model asks for one
  call per step, so the run goes through two ``requires_action`` rounds.

The same workload first runs without faults (the baseline), then with seeded random faults
on every API request of the emulator. For each run the driver checks that the faulted run
reached the baseline's terminal status, text and number of rounds; it counts duplicate runs
(more than one run per thread, or two runs carrying the same idempotency key), tools executed
more than once (per ``tool_call_id`` and per logical call), unhandled exceptions (anything
outside :class:`~runtime.errors.RuntimeAPIError`, plus whatever reaches the event loop's
exception handler), and reports the client's retries, the orchestrator's recoveries, the
recovery events it logged and the emulator's fault counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import structlog

from runtime import AssistantsClient, Orchestrator, RunPolicy
from runtime.assistants.backend import IDEMPOTENCY_METADATA_KEY
from runtime.core.result import RunResult
from runtime.emulator import Emulator, FaultSpec
from runtime.errors import RuntimeAPIError
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from runtime.retry import RetryPolicy
from tools import ToolContext, ToolRegistry

KINDS = ("text", "one_round", "two_rounds", "hostile")
# What the model reads when a tool raises SystemExit: the run and the process go on.
BAIL_OUTPUT = (
    '{"error": {"type": "tool_exit", "message": "tool \'bail\' raised SystemExit(3); '
    'the process keeps running", "tool": "bail"}}'
)
# A cancelled caller leaves its run cancelled on the server, or completed when the run won the
# race, or never created at all.
_CANCEL_OK = frozenset({"cancelled", "completed", "no run created yet"})

# 10% of requests draw a fault; "cut" only applies to streamed answers (a draw landing on it
# for a plain request is no fault), so the measured fraction is reported next to this one.
DEFAULT_FAULTS = (
    "429=0.02,500=0.02,503=0.02,reset=0.015,cut=0.015,slow=0.01,"
    "retry_after_ms=20,slow_ms=150,cut_after=3"
)

# Five attempts at the non-idempotent steps (create thread, create run, submit) instead of
# the default three: with 10% faults, three ambiguous failures in a row (p ~ 0.055^3 per
# step) would fail about one run in 2,000 with a typed error, enough to make a CI run flaky.
# ``--attempts 3`` measures the defaults.
CHAOS_ATTEMPTS = 5


def chaos_policy(attempts: int = CHAOS_ATTEMPTS) -> RunPolicy:
    """Fast polling, and ``attempts`` attempts at each non-idempotent step."""
    return RunPolicy(
        poll_interval_s=0.05,
        max_poll_interval_s=0.2,
        cancel_wait_s=5.0,
        busy_wait_s=60.0,
        create_attempts=attempts,
        submit_attempts=attempts,
    )


# Short, so that "stall" faults (not in the default mix) are detected quickly.
STREAM_IDLE_TIMEOUT_S = 2.0
CHAOS_RETRY = RetryPolicy(max_attempts=5, initial_wait_s=0.02, max_wait_s=0.2, jitter_s=0.02)

# Log events that show a policy at work (counted, then dropped: the run is noisy).
RECOVERY_EVENTS = (
    "runtime.retry_scheduled",
    "run.thread_create_ambiguous",
    "run.create_ambiguous",
    "run.adopted",
    "run.stream_lost",
    "run.stream_error_event",
    "run.submit_ambiguous",
    "run.submit_rejected",
    "run.rerun",
    "run.aborting",
    "responses.create_ambiguous",
    "responses.stream_lost",
    "responses.rerun",
    "responses.aborting",
)


@dataclass(frozen=True)
class Job:
    """One run of the workload.

    Attributes:
        index: position in the workload.
        kind: ``text``, ``one_round``, ``two_rounds`` or ``hostile`` (one tool of the round
            raises SystemExit).
        message: the user message.
        params: extra run parameters.
        expected_text: the scripted model's answer without faults.
        expected_rounds: tool rounds without faults.
        tags: the logical tool calls the run makes (each must execute exactly once).
        cancel_after_s: cancel the caller's task after this long (None: never).
    """

    index: int
    kind: str
    message: str
    params: dict[str, Any]
    expected_text: str
    expected_rounds: int
    tags: tuple[str, ...]
    cancel_after_s: float | None = None


@dataclass
class Outcome:
    """What one run produced (or the exception it raised)."""

    index: int
    kind: str
    status: str | None = None
    text: str | None = None
    rounds: int | None = None
    recoveries: int = 0
    thread_id: str | None = None
    run_id: str | None = None
    error: str | None = None
    unhandled: bool = False
    cancelled: bool = False

    def signature(self) -> tuple[Any, ...]:
        """What must be equal to the fault-free run: status, text, rounds, error kind."""
        return (self.status, self.text, self.rounds, self.error)


@dataclass
class ToolLedger:
    """Counts executions per tool_call_id and per logical call (thread, tag)."""

    by_call_id: Counter[str] = field(default_factory=Counter)
    by_tag: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, ctx: ToolContext, tag: str) -> None:
        """Count one execution (sync tools run in threads, hence the lock)."""
        with self.lock:
            self.by_call_id[ctx.tool_call_id] += 1
            self.by_tag[f"{ctx.thread_id}:{tag}"] += 1


@dataclass
class ChaosReport:
    """The figures of one chaos phase."""

    runs: int
    faults_spec: str
    seed: int
    concurrency: int
    attempts: int = CHAOS_ATTEMPTS
    seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)
    completed: int = 0
    matched_expected: int = 0
    matched_baseline: int | None = None
    baseline_comparable: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    typed_errors: dict[str, int] = field(default_factory=dict)
    unhandled_exceptions: int = 0
    unhandled_details: list[str] = field(default_factory=list)
    loop_exceptions: int = 0
    duplicate_runs: int = 0
    duplicate_idempotency_keys: int = 0
    runs_created: int = 0
    runs_not_terminal: int = 0
    tool_executions: int = 0
    tools_executed_twice: int = 0
    logical_calls_executed_twice: int = 0
    logical_calls_missing: int = 0
    tool_output_submissions: int = 0
    expected_submissions: int = 0
    client_retries: int = 0
    run_recoveries: int = 0
    log_events: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    faulted_requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    emulator_internal_errors: int = 0
    error_logs: dict[str, int] = field(default_factory=dict)
    protocol: str = "assistants"
    shared_threads: int = 0
    duplicate_responses: int = 0
    cancel_planned: int = 0
    cancelled: int = 0
    cancelled_server_status: dict[str, int] = field(default_factory=dict)

    @property
    def fault_fraction(self) -> float:
        """Faulted requests / all API requests."""
        return self.faulted_requests / self.requests if self.requests else 0.0

    def problems(self) -> list[str]:
        """Broken promises, empty when the run upholds every one of them."""
        not_cancelled = sum(
            n for status, n in self.cancelled_server_status.items() if status not in _CANCEL_OK
        )
        checks = {
            "runs not matching the fault-free outcome": (
                self.runs - self.matched_expected - self.cancelled
            ),
            "cancelled runs not cancelled on the server": not_cancelled,
            "duplicate runs": self.duplicate_runs + self.duplicate_idempotency_keys,
            "tools executed twice": self.tools_executed_twice + self.logical_calls_executed_twice,
            "tool calls never executed": self.logical_calls_missing,
            "unhandled exceptions": self.unhandled_exceptions + self.loop_exceptions,
            "runs left active on the server": self.runs_not_terminal,
            "emulator internal errors": self.emulator_internal_errors,
            "error-level log events": sum(self.error_logs.values()),
        }
        if self.matched_baseline is not None:
            checks["runs differing from the baseline"] = (
                self.baseline_comparable - self.matched_baseline
            )
        return [f"{name}: {count}" for name, count in checks.items() if count]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        data = asdict(self)
        data["fault_fraction"] = round(self.fault_fraction, 4)
        data["problems"] = self.problems()
        return data


def plan(runs: int, seed: int, cancel_rate: float = 0.0, cancel_window_s: float = 0.3) -> list[Job]:
    """The workload: a deterministic mix of the run shapes.

    Args:
        runs: number of runs.
        seed: seed of the mix.
        cancel_rate: fraction of runs whose caller cancels them, at a random moment within
            ``cancel_window_s`` of their start.
        cancel_window_s: the window of those cancellations.

    Returns:
        One Job per run.
    """
    rng = random.Random(f"chaos-plan:{seed}")
    kinds = [KINDS[index % len(KINDS)] for index in range(runs)]
    rng.shuffle(kinds)
    jobs = []
    for index, kind in enumerate(kinds):
        job = _job(index, kind)
        if rng.random() < cancel_rate:
            job = replace(job, cancel_after_s=round(rng.uniform(0.0, cancel_window_s), 3))
        jobs.append(job)
    return jobs


def _job(index: int, kind: str) -> Job:
    if kind == "text":
        message = f"chaos run {index}: hello there"
        return Job(index, kind, message, {}, f"You said: {message}", 0, ())
    tags = (f"r{index}a", f"r{index}b")
    if kind == "hostile":
        message = "\n".join(
            [f"/call echo {json.dumps({'tag': tags[0]})}", '/call bail {"code": 3}']
        )
        expected = f"echo returned: echo:{tags[0]}\nbail returned: {BAIL_OUTPUT}"
        return Job(index, kind, message, {}, expected, 1, tags[:1])
    message = "\n".join(
        [
            f"/call echo {json.dumps({'tag': tags[0]})}",
            f"/call shout {json.dumps({'tag': tags[1]})}",
        ]
    )
    expected = f"echo returned: echo:{tags[0]}\nshout returned: SHOUT:{tags[1].upper()}"
    if kind == "one_round":
        return Job(index, kind, message, {}, expected, 1, tags)
    return Job(index, kind, message, {"parallel_tool_calls": False}, expected, 2, tags)


def build_registry(ledger: ToolLedger) -> ToolRegistry:
    """The chaos tools: one async, one sync, both counting their executions."""
    registry = ToolRegistry()

    @registry.tool
    async def echo(tag: str, ctx: ToolContext) -> str:
        """Echo a tag back.

        Args:
            tag: any text.
        """
        ledger.record(ctx, tag)
        await asyncio.sleep(0.005)
        return f"echo:{tag}"

    @registry.tool
    def shout(tag: str, ctx: ToolContext) -> str:
        """Upper-case a tag (a sync tool, run in the thread pool).

        Args:
            tag: any text.
        """
        ledger.record(ctx, tag)
        return f"SHOUT:{tag.upper()}"

    @registry.tool
    def bail(code: int) -> str:
        """Exit the process (a hostile tool: the runtime must contain it).

        Args:
            code: the exit code.
        """
        raise SystemExit(code)

    return registry


@contextmanager
def count_log_events(counter: Counter[str]) -> Iterator[None]:
    """Count structlog events by name (and drop them) for the duration of the block.

    Error-level events are also counted under ``"level:error"`` (names listed under
    ``"error:<event>"``): an error log is a crash someone noticed only in the logs.
    """

    def count(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        name = str(event_dict.get("event"))
        counter[name] += 1
        if method in ("error", "exception", "critical", "fatal"):
            counter["level:error"] += 1
            counter[f"error:{name}"] += 1
        raise structlog.DropEvent

    saved = structlog.get_config()
    structlog.configure(processors=[count], cache_logger_on_first_use=False)
    try:
        yield
    finally:
        structlog.configure(**saved)


async def run_phase(
    jobs: Sequence[Job],
    *,
    faults: FaultSpec | None,
    seed: int,
    concurrency: int,
    attempts: int = CHAOS_ATTEMPTS,
    azure: bool = False,
    protocol: str = "assistants",
    threads: int = 0,
    timeout_s: float = 60.0,
) -> tuple[ChaosReport, list[Outcome]]:
    """Run every job against a fresh emulator with ``faults`` and return the figures.

    Args:
        jobs: the workload.
        faults: random faults applied once setup is done (None: no faults).
        seed: seed of emulator ids and faults.
        concurrency: runs in flight at once.
        attempts: attempts at each non-idempotent step (RunPolicy create/submit_attempts).
        azure: talk to the emulator in the Azure style.
        protocol: ``assistants`` (threads and runs) or ``responses`` (the Responses API).
        threads: Assistants runs share this many threads (0: a thread per run).
        timeout_s: a run taking longer counts as a failure (never hangs the phase).

    Returns:
        The report and one Outcome per job, in job order.
    """
    report = ChaosReport(
        runs=len(jobs),
        faults_spec=faults.to_string() if faults else "",
        seed=seed,
        concurrency=concurrency,
        attempts=attempts,
        by_kind=dict(Counter(job.kind for job in jobs)),
        cancel_planned=sum(1 for job in jobs if job.cancel_after_s is not None),
        protocol=protocol,
        shared_threads=threads,
    )
    ledger = ToolLedger()
    events: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    loop_errors: list[str] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(_describe_loop_error(ctx)))
    started = time.monotonic()
    try:
        with count_log_events(events):
            async with (
                Emulator(seed=seed) as emu,
                _backend(
                    emu, protocol, azure, build_registry(ledger), attempts, threads
                ) as backend,
            ):
                emu.faults = faults
                outcomes = await _run_all(backend.start, jobs, concurrency, timeout_s)
                emu.faults = None
                await backend.aclose()
                report.client_retries = backend.retries()
                await _settle(emu)
                _audit_server(report, emu, outcomes)
                if protocol == "responses":
                    # No threads to list: leftovers show in runs_not_terminal instead.
                    report.cancelled_server_status = {}
                    _audit_responses(report, emu, jobs, outcomes)
    finally:
        loop.set_exception_handler(previous_handler)
    report.seconds = round(time.monotonic() - started, 2)
    report.loop_exceptions = len(loop_errors)
    report.unhandled_details.extend(loop_errors[:10])
    report.log_events = {name: events[name] for name in RECOVERY_EVENTS if events[name]}
    report.error_logs = {
        name.removeprefix("error:"): n for name, n in events.items() if name.startswith("error:")
    }
    _audit_runs(report, jobs, outcomes)
    _audit_tools(report, jobs, outcomes, ledger)
    return report, outcomes


@dataclass
class _Backend:
    """One protocol's way to start a job's run, plus its client's counters."""

    start: Callable[[Job], Awaitable[RunResult]]
    retries: Callable[[], int]
    aclose: Callable[[], Awaitable[None]]


@asynccontextmanager
async def _backend(
    emu: Emulator,
    protocol: str,
    azure: bool,
    registry: ToolRegistry,
    attempts: int,
    threads: int = 0,
) -> AsyncIterator[_Backend]:
    """An orchestrator for ``protocol`` (assistants or responses) on the emulator.

    With ``threads``, Assistants runs share that many threads (busy-thread policy at work);
    otherwise each run gets its own thread.
    """
    address = {"azure_endpoint": emu.azure_endpoint} if azure else {"base_url": emu.base_url}
    options: dict[str, Any] = {
        **address,
        "api_key": "sk-chaos-driver-0000000000",
        "retry": CHAOS_RETRY,
        "stream_idle_timeout_s": STREAM_IDLE_TIMEOUT_S,
    }
    policy = chaos_policy(attempts)
    if protocol == "responses":
        async with ResponsesClient(**options) as rc:
            responses = ResponsesOrchestrator(rc, registry, policy=policy)

            def respond(job: Job) -> Awaitable[RunResult]:
                metadata = {"chaos_job": str(job.index)}
                return responses.run(job.message, metadata=metadata, **job.params)

            yield _Backend(respond, lambda: rc.retries, responses.aclose)
        return
    async with AssistantsClient(**options) as client:
        orch = Orchestrator(client, registry, policy=policy)
        assistant = await client.create_assistant(model="gpt-4o", tools=registry.definitions())
        shared = [(await client.create_thread()).id for _ in range(threads)]

        def run(job: Job) -> Awaitable[RunResult]:
            metadata = {"chaos_job": str(job.index)}
            message = {"role": "user", "content": job.message}
            if shared:  # the message comes with the run: a busy thread refuses new messages
                thread_id = shared[job.index % len(shared)]
                return orch.run(
                    thread_id,
                    assistant.id,
                    additional_messages=[message],
                    metadata=metadata,
                    **job.params,
                )
            return orch.create_thread_and_run(
                assistant.id, messages=[message], metadata=metadata, **job.params
            )

        yield _Backend(run, lambda: client.retries, orch.aclose)


async def _run_all(
    start: Callable[[Job], Awaitable[RunResult]],
    jobs: Sequence[Job],
    concurrency: int,
    timeout_s: float,
) -> list[Outcome]:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Job) -> Outcome:
        async with gate:
            return await run_job(start, job, timeout_s)

    results = await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)
    outcomes = []
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, BaseException):  # run_job catches everything: a driver bug
            outcomes.append(Outcome(job.index, job.kind, error=repr(result), unhandled=True))
        else:
            outcomes.append(result)
    return outcomes


async def run_job(
    start: Callable[[Job], Awaitable[RunResult]], job: Job, timeout_s: float
) -> Outcome:
    """Run one job (cancelling it if the job says so); every exception is caught and classified."""
    outcome = Outcome(job.index, job.kind)
    task = asyncio.ensure_future(start(job))
    try:
        async with asyncio.timeout(timeout_s):
            if job.cancel_after_s is not None:
                await asyncio.wait({task}, timeout=job.cancel_after_s)
                task.cancel()  # no effect when the run already ended
            result = await task
    except asyncio.CancelledError:
        if job.cancel_after_s is None or not task.cancelled():
            raise  # the driver itself is being cancelled
        outcome.cancelled = True
        outcome.error = "CancelledError"
    except RuntimeAPIError as exc:
        outcome.error = type(exc).__name__
        outcome.text = exc.message
    except TimeoutError:
        outcome.error = "TimeoutError (chaos driver)"
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.unhandled = True
    else:
        outcome.status = result.status
        outcome.text = result.text
        outcome.rounds = result.rounds
        outcome.recoveries = result.recoveries
        outcome.thread_id = result.thread_id
        outcome.run_id = result.run_id
    return outcome


async def _settle(emu: Emulator, timeout_s: float = 5.0) -> None:
    """Give runs the server still drives (e.g. after an abort) a moment to end."""
    deadline = time.monotonic() + timeout_s
    while emu.stats["active_runs"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def _audit_server(report: ChaosReport, emu: Emulator, outcomes: Sequence[Outcome]) -> None:
    stats = emu.stats
    report.requests = sum(1 for r in emu.requests if str(r["path"]).startswith(("/v1", "/openai")))
    report.faults = {k: v for k, v in stats["faults"].items() if v}
    report.faulted_requests = int(stats["faults_total"])
    report.runs_created = int(stats.get("runs_created", 0))
    report.tool_output_submissions = int(stats.get("tool_output_submissions", 0))
    report.runs_not_terminal = int(stats["active_runs"])
    report.emulator_internal_errors = int(stats.get("internal_errors", 0))
    keys: Counter[str] = Counter()
    per_job: Counter[str] = Counter()
    for thread_id in _thread_ids(emu, outcomes):
        for run in emu.runs(thread_id):
            metadata = run.get("metadata") or {}
            per_job[str(metadata.get("chaos_job"))] += 1
            if metadata.get(IDEMPOTENCY_METADATA_KEY):
                keys[metadata[IDEMPOTENCY_METADATA_KEY]] += 1
    report.duplicate_runs = sum(n - 1 for n in per_job.values() if n > 1)
    report.duplicate_idempotency_keys = sum(n - 1 for n in keys.values() if n > 1)
    _audit_cancelled(report, emu, outcomes)


def _audit_cancelled(report: ChaosReport, emu: Emulator, outcomes: Sequence[Outcome]) -> None:
    """Server-side status of the runs whose caller cancelled them."""
    cancelled = {str(o.index) for o in outcomes if o.cancelled}
    if not cancelled:
        return
    statuses: Counter[str] = Counter()
    seen = set()
    for thread_id in _thread_ids(emu, outcomes):
        for run in emu.runs(thread_id):
            job = (run.get("metadata") or {}).get("chaos_job")
            if job in cancelled:
                seen.add(job)
                statuses[str(run["status"])] += 1
                if run["status"] not in _CANCEL_OK and len(report.mismatches) < 10:
                    report.mismatches.append(
                        {"index": int(job), "cancelled_run": run["id"], "status": run["status"]}
                    )
    statuses["no run created yet"] = len(cancelled - seen)
    report.cancelled_server_status = {k: v for k, v in statuses.items() if v}


def _audit_responses(
    report: ChaosReport, emu: Emulator, jobs: Sequence[Job], outcomes: Sequence[Outcome]
) -> None:
    """Responses have no threads: count them from the emulator's counters instead."""
    stats = emu.stats
    created = int(stats.get("responses_created", 0))
    ended = sum(
        int(stats.get(f"responses_{status}", 0))
        for status in ("completed", "failed", "incomplete", "cancelled")
    )
    report.runs_created = created
    report.runs_not_terminal += created - ended
    needed = sum(
        1 + job.expected_rounds
        for job, outcome in zip(jobs, outcomes, strict=True)
        if outcome.status == "completed"
    )
    if not any(o.cancelled or o.error for o in outcomes):
        report.duplicate_responses = created - needed
    report.tool_output_submissions = created - len(jobs)


def _thread_ids(emu: Emulator, outcomes: Sequence[Outcome]) -> set[str]:
    """Every thread the phase touched: from the results and from the request log."""
    threads = {o.thread_id for o in outcomes if o.thread_id}
    for entry in emu.requests:
        parts = str(entry["path"]).split("/")
        threads.update(p for p in parts if p.startswith("thread_"))
    return threads


def _audit_runs(report: ChaosReport, jobs: Sequence[Job], outcomes: Sequence[Outcome]) -> None:
    errors: Counter[str] = Counter()
    for job, outcome in zip(jobs, outcomes, strict=True):
        report.run_recoveries += outcome.recoveries
        if outcome.status == "completed":
            report.completed += 1
        if outcome.unhandled:
            report.unhandled_exceptions += 1
            report.unhandled_details.append(f"run {job.index}: {outcome.error}")
        elif outcome.cancelled:
            report.cancelled += 1
            continue
        elif outcome.error:
            errors[outcome.error] += 1
        expected = ("completed", job.expected_text, job.expected_rounds, None)
        if outcome.signature() == expected:
            report.matched_expected += 1
        elif len(report.mismatches) < 10:
            report.mismatches.append(
                {"index": job.index, "kind": job.kind, "expected": expected}
                | {"got": outcome.signature(), "thread_id": outcome.thread_id}
            )
    report.typed_errors = dict(errors)
    report.expected_submissions = sum(job.expected_rounds for job in jobs)


def _audit_tools(
    report: ChaosReport, jobs: Sequence[Job], outcomes: Sequence[Outcome], ledger: ToolLedger
) -> None:
    report.tool_executions = sum(ledger.by_call_id.values())
    report.tools_executed_twice = sum(1 for n in ledger.by_call_id.values() if n > 1)
    report.logical_calls_executed_twice = sum(1 for n in ledger.by_tag.values() if n > 1)
    for job, outcome in zip(jobs, outcomes, strict=True):
        if outcome.status != "completed" or outcome.thread_id is None:
            continue
        for tag in job.tags:
            if ledger.by_tag[f"{outcome.thread_id}:{tag}"] == 0:
                report.logical_calls_missing += 1


def _describe_loop_error(context: dict[str, Any]) -> str:
    exc = context.get("exception")
    return f"{context.get('message')}: {exc!r}" if exc else str(context.get("message"))


async def run_chaos(
    runs: int,
    *,
    faults: str = DEFAULT_FAULTS,
    seed: int = 7,
    concurrency: int = 50,
    attempts: int = CHAOS_ATTEMPTS,
    baseline: bool = True,
    cancel_rate: float = 0.0,
    azure: bool = False,
    protocol: str = "assistants",
    threads: int = 0,
) -> tuple[ChaosReport | None, ChaosReport]:
    """The whole experiment: a fault-free baseline, then the same workload with faults.

    Args:
        runs: number of runs per phase.
        faults: fault spec (see :mod:`runtime.emulator.faults`); its seed defaults to ``seed``.
        seed: seed of the workload mix, the emulator ids and the faults.
        concurrency: runs in flight at once.
        attempts: attempts at each non-idempotent step.
        baseline: run the fault-free phase first and compare against it.
        cancel_rate: fraction of runs their caller cancels after 0-300 ms.
        azure: talk to the emulator in the Azure style.
        protocol: ``assistants`` or ``responses``.
        threads: Assistants runs share this many threads (0: a thread per run).

    Returns:
        (baseline report or None, chaos report).
    """
    jobs = plan(runs, seed, cancel_rate)
    spec = FaultSpec.parse(faults)
    if spec.seed == 0:
        spec = FaultSpec.parse(f"{faults},seed={seed}")
    base_report = None
    base_outcomes: list[Outcome] = []
    if baseline:
        base_report, base_outcomes = await run_phase(
            jobs,
            faults=None,
            seed=seed,
            concurrency=concurrency,
            attempts=attempts,
            azure=azure,
            protocol=protocol,
            threads=threads,
        )
    report, outcomes = await run_phase(
        jobs,
        faults=spec,
        seed=seed,
        concurrency=concurrency,
        attempts=attempts,
        azure=azure,
        protocol=protocol,
        threads=threads,
    )
    if baseline:
        pairs = [
            (a, b)
            for a, b in zip(base_outcomes, outcomes, strict=True)
            if not (a.cancelled or b.cancelled)
        ]
        report.baseline_comparable = len(pairs)
        report.matched_baseline = sum(1 for a, b in pairs if a.signature() == b.signature())
    return base_report, report


def render_markdown(report: ChaosReport, baseline: ChaosReport | None = None) -> str:
    """A Markdown table of the figures (what goes into tests/README.md)."""
    rows = [
        ("runs (text / one round / two rounds / hostile tool)", _kinds(report)),
        ("concurrency / create+submit attempts", f"{report.concurrency} / {report.attempts}"),
        ("fault spec", f"`{report.faults_spec}`"),
        ("API requests / faulted", f"{report.requests} / {report.faulted_requests}"),
        ("faulted fraction", f"{report.fault_fraction:.1%}"),
        ("faults by kind", _kv(report.faults)),
        ("same outcome as fault-free expectation", f"{report.matched_expected}/{report.runs}"),
    ]
    if report.matched_baseline is not None:
        rows.append(
            (
                "same outcome as the baseline run",
                f"{report.matched_baseline}/{report.baseline_comparable}",
            )
        )
    if report.cancel_planned:
        rows.append(("runs the caller cancels / actually cancelled", _cancels(report)))
        rows.append(("server status of cancelled runs", _kv(report.cancelled_server_status) or "-"))
    rows += [
        ("completed", report.completed),
        ("typed errors raised to the caller", _kv(report.typed_errors) or 0),
        ("unhandled exceptions reaching the caller", report.unhandled_exceptions),
        ("event-loop exception handler calls", report.loop_exceptions),
        ("error-level log events", _kv(report.error_logs) or 0),
        ("runs created on the server", report.runs_created),
        ("shared threads (0: one per run)", report.shared_threads),
        ("duplicate runs (per job / per idempotency key)", _dups(report)),
        *(
            [("duplicate responses (no idempotency key exists)", report.duplicate_responses)]
            if report.protocol == "responses"
            else []
        ),
        ("tool executions", report.tool_executions),
        ("tools executed twice (per call id / per logical call)", _twice(report)),
        (
            "tool-output submissions accepted / expected",
            f"{report.tool_output_submissions} / {report.expected_submissions}",
        ),
        ("client retries", report.client_retries),
        ("stream losses recovered by polling", report.run_recoveries),
        ("recovery log events", _kv(report.log_events) or 0),
        ("runs left active on the server", report.runs_not_terminal),
        ("wall time (s)", report.seconds),
    ]
    if baseline is not None:
        rows.append(("baseline wall time (s)", baseline.seconds))
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _kinds(report: ChaosReport) -> str:
    k = report.by_kind
    return (
        f"{report.runs} ({k.get('text', 0)} / {k.get('one_round', 0)} / {k.get('two_rounds', 0)}"
        f" / {k.get('hostile', 0)})"
    )


def _cancels(report: ChaosReport) -> str:
    return f"{report.cancel_planned} / {report.cancelled}"


def _kv(mapping: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(mapping.items()))


def _dups(report: ChaosReport) -> str:
    return f"{report.duplicate_runs} / {report.duplicate_idempotency_keys}"


def _twice(report: ChaosReport) -> str:
    return f"{report.tools_executed_twice} / {report.logical_calls_executed_twice}"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exits 1 when a promise is broken."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.chaos", description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--attempts", type=int, default=CHAOS_ATTEMPTS, help="create/submit attempts per step"
    )
    parser.add_argument("--faults", default=DEFAULT_FAULTS, help="emulator fault spec")
    parser.add_argument(
        "--cancel-rate", type=float, default=0.0, help="fraction of runs cancelled by the caller"
    )
    parser.add_argument("--azure", action="store_true", help="Azure-style requests")
    parser.add_argument("--protocol", choices=["assistants", "responses"], default="assistants")
    parser.add_argument(
        "--threads", type=int, default=0, help="runs share this many threads (0: one each)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the fault-free phase")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    base, report = asyncio.run(
        run_chaos(
            args.runs,
            faults=args.faults,
            seed=args.seed,
            concurrency=args.concurrency,
            attempts=args.attempts,
            baseline=not args.no_baseline,
            cancel_rate=args.cancel_rate,
            azure=args.azure,
            protocol=args.protocol,
            threads=args.threads,
        )
    )
    if args.json:
        out = {"chaos": report.as_dict(), "baseline": base.as_dict() if base else None}
        print(json.dumps(out, indent=2, default=str))
    else:
        print(render_markdown(report, base))
        for mismatch in report.mismatches:
            print("mismatch:", mismatch)
        for detail in report.unhandled_details:
            print("unhandled:", detail)
    problems = report.problems() + (base.problems() if base else [])
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
