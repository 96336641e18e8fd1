"""Prometheus metrics of one worker process (its own registry, so tests can run several)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from runtime.worker.models import QueueStats

__all__ = ["UNKNOWN_TOOL", "WorkerMetrics"]

#: The ``tool`` label of a call whose name is not a registered tool: a model may make up
#: any name, and a label value per made-up name would grow the series without bound.
UNKNOWN_TOOL = "unknown"

_WAIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class WorkerMetrics:
    """The worker's counters, gauges and histograms.

    Series (all prefixed ``agent_worker_``): ``runs_total{status}``,
    ``tool_calls_total{tool,outcome}``, ``job_duration_seconds``,
    ``tool_duration_seconds{tool}``, ``retries_total{reason}``, ``dead_letters_total``,
    ``jobs_in_flight``, ``queue_depth{state}``, ``queue_lag_seconds``, ``draining``,
    ``tool_source_up{server}`` (configured MCP servers), ``pacing_wait_seconds`` (each
    paced model request's wait for its rate-limit bucket, 0 included; see
    :mod:`runtime.pacing`).

    Args:
        known_tool: tells a registered tool's name (e.g. ``name in registry``); every other
            name is counted as ``tool="unknown"``, so no label ever takes a value the model
            chose. Without it every call counts as unknown.
    """

    def __init__(self, known_tool: Callable[[str], bool] | None = None) -> None:
        self._known_tool = known_tool
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter(
            "agent_worker_runs", "Jobs finished, by final status.", ["status"], registry=r
        )
        self.tool_calls = Counter(
            "agent_worker_tool_calls",
            "Tool calls executed, by tool and outcome (ok, error).",
            ["tool", "outcome"],
            registry=r,
        )
        self.job_duration = Histogram(
            "agent_worker_job_duration_seconds",
            "Duration of the attempt that finished a job.",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.tool_duration = Histogram(
            "agent_worker_tool_duration_seconds",
            "Duration of tool calls.",
            ["tool"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "agent_worker_retries",
            "Jobs given back for another attempt (error, drain) or resumed after a crash "
            "(reclaimed).",
            ["reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "agent_worker_dead_letters", "Jobs moved to the dead-letter store.", registry=r
        )
        self.in_flight = Gauge(
            "agent_worker_jobs_in_flight", "Jobs this process is running.", registry=r
        )
        self.queue_depth = Gauge(
            "agent_worker_queue_depth", "Unfinished jobs in the queue.", ["state"], registry=r
        )
        self.queue_lag = Gauge(
            "agent_worker_queue_lag_seconds",
            "Age of the oldest job waiting for a worker.",
            registry=r,
        )
        self.draining = Gauge(
            "agent_worker_draining", "1 while the worker drains after SIGTERM.", registry=r
        )
        self.tool_source_up = Gauge(
            "agent_worker_tool_source_up",
            "Configured MCP tool servers: 1 connected, 0 otherwise.",
            ["server"],
            registry=r,
        )

        self.pacing_wait = Histogram(
            "agent_worker_pacing_wait_seconds",
            "Wait of each paced model request for its rate-limit bucket.",
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        # Label children by label values: ``labels()`` costs a lock and a tuple per call,
        # and each job updates several series. The values come from bounded sets (run
        # statuses, registered tool names), so these stay small.
        self._run_children: dict[str, Any] = {}
        self._tool_children: dict[tuple[str, bool], tuple[Any, Any]] = {}

    def count_run(self, status: str) -> None:
        """Count one finished (or paused, or dead) job under ``runs_total{status}``."""
        child = self._run_children.get(status)
        if child is None:
            child = self._run_children[status] = self.runs.labels(status=status)
        child.inc()

    def tool_label(self, name: str) -> str:
        """The ``tool`` label value of a call named ``name``: itself when registered."""
        if self._known_tool is not None and self._known_tool(name):
            return name
        return UNKNOWN_TOOL

    def observe_tool_call(self, name: str, *, is_error: bool, seconds: float) -> None:
        """Count one executed tool call and its duration."""
        tool = self.tool_label(name)
        children = self._tool_children.get((tool, is_error))
        if children is None:
            children = self._tool_children[(tool, is_error)] = (
                self.tool_calls.labels(tool=tool, outcome="error" if is_error else "ok"),
                self.tool_duration.labels(tool=tool),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_tool_sources(self, statuses: Mapping[str, str]) -> None:
        """One gauge per configured tool server (its name from the config, never from a
        model): 1 when connected, 0 otherwise."""
        for name, status in statuses.items():
            self.tool_source_up.labels(server=name).set(1 if status == "connected" else 0)

    def observe_queue(self, stats: QueueStats) -> None:
        """Copy queue statistics into the gauges."""
        self.queue_depth.labels(state="queued").set(stats.queued)
        self.queue_depth.labels(state="running").set(stats.running)
        self.queue_depth.labels(state="dead").set(stats.dead)
        self.queue_lag.set(stats.oldest_queued_age_s)

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return bytes(generate_latest(self.registry))
