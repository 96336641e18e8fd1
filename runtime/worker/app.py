"""Composition root: build the queue, client, orchestrator, worker and HTTP server from settings."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Iterator
from typing import Any

from runtime.fairness import tune_collector
from runtime.logging import ModuleLogger
from runtime.pacing import RatePacer, RedisBuckets, pacer_from_settings
from runtime.transport import AiohttpTransport
from runtime.worker.approvals import ApprovalStore, StoreLedger
from runtime.worker.http import HealthServer
from runtime.worker.memory import MemoryQueue
from runtime.worker.metrics import WorkerMetrics
from runtime.worker.queue import JobQueue
from runtime.worker.redis import RedisQueue
from runtime.worker.runner import executor_for
from runtime.worker.service import Worker, WorkerOptions
from runtime.worker.settings import WorkerSettings, build_registry
from runtime.worker.sqlite import SqliteQueue
from runtime.worker.upstream import UpstreamTracker
from tools import ToolRegistry
from tools.mcp import MCPToolSource

__all__ = ["open_queue", "serve", "start_mcp_sources", "worker_options"]

log = ModuleLogger("runtime.worker")


def open_queue(settings: WorkerSettings) -> JobQueue:
    """The queue backend the settings name (not connected until first use).

    Args:
        settings: worker settings (``queue`` section).

    Returns:
        A memory, sqlite or redis queue.
    """
    q = settings.queue
    if q.backend == "memory":
        return MemoryQueue(lease_s=q.lease_s, max_deliveries=q.max_deliveries)
    if q.backend == "sqlite":
        return SqliteQueue(q.sqlite.path, lease_s=q.lease_s, max_deliveries=q.max_deliveries)
    return RedisQueue(
        q.redis.url,
        prefix=q.redis.prefix,
        group=q.redis.group,
        lease_s=q.lease_s,
        max_deliveries=q.max_deliveries,
        maxlen=q.redis.maxlen,
        dead_maxlen=q.redis.dead_maxlen,
        result_ttl_s=q.redis.result_ttl_s,
    )


def worker_options(settings: WorkerSettings, *, burst: bool | None = None) -> WorkerOptions:
    """The loop options from settings (``burst`` overrides the file when given)."""
    w, q = settings.worker, settings.queue
    return WorkerOptions(
        consumer=settings.consumer_name,
        concurrency=w.concurrency,
        grace_period_s=w.grace_period_s,
        heartbeat_s=q.heartbeat_s,
        lease_s=q.lease_s,
        claim_wait_s=w.claim_wait_s,
        retry_delay_s=w.retry_delay_s,
        max_deliveries=q.max_deliveries,
        burst=w.burst if burst is None else burst,
        cancel_wait_s=settings.policy.cancel_wait_s,
        approval_expiry_s=w.approval_expiry_s,
        expiry_margin_s=settings.policy.expiry_margin_s,
    )


async def serve(settings: WorkerSettings, *, burst: bool | None = None) -> int:
    """Run a worker process until SIGTERM/SIGINT (or, in burst mode, an empty queue).

    Args:
        settings: worker settings.
        burst: override ``worker.burst``.

    Returns:
        The process exit code (0).
    """
    from runtime.backends import create_backend

    queue = open_queue(settings)
    registry = build_registry(settings.worker.tools)
    mcp, sources = await start_mcp_sources(settings, registry)
    try:
        shared = settings.runtime_settings()
        upstream = UpstreamTracker(
            AiohttpTransport(
                connect_timeout_s=settings.api.connect_timeout_s,
                max_connections=settings.api.max_connections,
            )
        )
        ledger = StoreLedger(queue) if isinstance(queue, ApprovalStore) else None
        pacing_redis = _pacing_redis(settings)
        backend = create_backend(
            shared,
            registry,
            model=settings.worker.model,
            transport=upstream,
            ledger=ledger,
            pacer=_fleet_pacer(settings, pacing_redis),
        )
        # A pause is the job's state here: its timeout is swept by the workers, not by a
        # watchdog of this process.
        backend.runner.pauses.watch = False
        # worker.job_finished says what run.finished says (status, run, calls, rounds), once
        # the result is stored: one INFO line a job.
        backend.runner.quiet_finish = True
        try:
            executor = executor_for(backend)
            # MCP tools join the registry later: ask it at each call, not once.
            metrics = WorkerMetrics(known_tool=registry.__contains__)
            if backend.client.pacer is not None:
                backend.client.pacer.on_wait = metrics.pacing_wait.observe
            worker = Worker(queue, executor, worker_options(settings, burst=burst), metrics)
            http = HealthServer(
                worker,
                host=settings.http.host,
                port=settings.http.port,
                tool_sources=lambda: {s.server.name: s.state.status for s in sources},
                upstream=upstream,
                approval_token=settings.http.approval_token,
            )
            frozen = tune_collector() if settings.worker.tune_collector else 0
            log.info("worker.starting", protocol=backend.protocol, frozen_objects=frozen)
            with _drain_on_signals(worker):
                if settings.http.enabled:
                    await http.start()
                try:
                    await worker.run()
                finally:
                    await _bounded("http", http.aclose())
                    # Background server-side cancels of aborted runs: bounded by the policy.
                    await _bounded(
                        "runner",
                        backend.runner.aclose(),
                        shared.policy.cancel_wait_s + 5,
                    )
        finally:
            await backend.client.aclose()
            await upstream.aclose()
            if pacing_redis is not None:
                await pacing_redis.aclose()
    finally:
        await _bounded("queue", queue.aclose())
        await _bounded("mcp", mcp.aclose())
    log.info("worker.exit")
    return 0


def _pacing_redis(settings: WorkerSettings) -> Any:
    """A Redis client for the fleet's rate buckets (``[pacing] store = "redis"``), or None."""
    if not settings.pacing.enabled or settings.pacing.store != "redis":
        return None
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(settings.queue.redis.url)


def _fleet_pacer(settings: WorkerSettings, client: Any) -> RatePacer | None:
    if client is None:
        return None  # none, or the process's own buckets from [pacing]
    return pacer_from_settings(settings, RedisBuckets(client, prefix=settings.queue.redis.prefix))


async def start_mcp_sources(
    settings: WorkerSettings, registry: ToolRegistry
) -> tuple[contextlib.AsyncExitStack, list[MCPToolSource]]:
    """Start the ``[[mcp]]`` servers and register their tools; close the stack to stop them.

    Raises:
        ConfigError: a table does not describe a usable server.
        ToolUnavailableError: a server did not start (those already started are stopped).
    """
    stack = contextlib.AsyncExitStack()
    sources: list[MCPToolSource] = []
    try:
        for table in settings.mcp:
            sources.append(
                await stack.enter_async_context(MCPToolSource(table.to_server(), registry))
            )
    except BaseException:
        await stack.aclose()
        raise
    return stack, sources


async def _bounded(what: str, closing: Awaitable[None], timeout_s: float = 5.0) -> None:
    """Await a clean-up step, but never let it keep the process from exiting."""
    try:
        await asyncio.wait_for(closing, timeout=timeout_s)
    except TimeoutError:
        log.error("worker.cleanup_timeout", step=what, timeout_s=timeout_s)


@contextlib.contextmanager
def _drain_on_signals(worker: Worker) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _on_signal, worker, sig)
            installed.append(sig)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        installed.append(signal.SIGUSR1)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _dump_tasks() -> None:

    for task in asyncio.all_tasks():
        print("TASK", task.get_name(), file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


def _on_signal(worker: Worker, sig: signal.Signals) -> None:
    log.info("worker.signal", signal=sig.name)
    worker.drain()
