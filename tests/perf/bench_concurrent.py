"""Benchmark: 1,000 concurrent multi-call runs: memory per in-flight run and event-loop stalls.

Run from the repository root:

    python tests/perf/bench_concurrent.py                      # both protocols, N=1000
    python tests/perf/bench_concurrent.py --protocol responses --runs 300 --calls 8 --tool-ms 50

Setup. The emulator runs as ``python -m runtime emulator`` in its own process (a fresh one per
protocol); the client runs in a fresh process per protocol, with logging as shipped (the
library's default: nothing configured). Every run is one tool round: the user message holds
``--calls`` lines ``/call ping {"n": K}``, the model asks for all of them at once, the async
tool sleeps ``--tool-ms`` and answers, the outputs go back in one request and the run follows
the stream to the reply that quotes every output (checked). On Assistants that is
``Orchestrator.create_thread_and_run`` (3 requests), on Responses ``ResponsesOrchestrator.run``
(2 requests). N runs are launched at once, after a warm-up batch. The emulator keeps every
object (``--max-retained 0``), so no response is evicted before its follow-up.

Reported per protocol:

* ``rss_per_inflight_kb``: (peak RSS during the batch - RSS before it) / runs in flight at the
  peak (psutil, sampled every 2 ms by a thread).
* ``heap_per_inflight_kb``: the same batch again under ``tracemalloc``: peak traced Python
  heap above the baseline / runs in flight (Python objects only).
* ``heartbeat_*``: a task sleeping 10 ms in a loop during the first batch, as the worker's
  lease heartbeats do; lag = how late each wake-up was (p50 / p99 / max, ms).
* ``slow_callbacks`` / ``slow_callback_max_ms``: event-loop callbacks (task steps, I/O
  callbacks, timers) that ran longer than 20 ms in one go (asyncio's ``slow_callback_duration``
  notion, timed by wrapping ``asyncio.Handle._run`` in this harness only), and the longest;
  ``slow_callback_where`` names the coroutines of the longest few.
* ``hb_cpu_lag_*``: the heartbeat lag in the loop thread's CPU time (see ``heartbeat``): what
  it would be on an idle core, about; the figure to compare on a shared machine.
* ``hb_lag_minus_gc_*`` and ``slow_callbacks_minus_gc``: the same without the time the cyclic
  garbage collector ran inside (``gc.callbacks``): what is left is the code's own stretches and
  the queue of ready callbacks. ``slow_callbacks_cpu*``: those of the slow callbacks that also
  took over 20 ms of CPU time (on a loaded machine a callback's wall time includes the time the
  process was not scheduled). ``gc_*``: full (generation 2) passes, the longest pass, total.
* ``runs_per_s``, ``client_cpu_ms_per_run``, ``latency_p50/p99_ms``: of the first batch.

* ``gc_collections``: young / middle / full collections during the batch.

* ``gc_total_cpu_ms``: the CPU time of all the collector's passes during the batch.

``--census`` replaces the timings by a count of what a run in flight holds: the batch runs
with the warm-up's objects frozen, a task lists the GC-tracked objects every
``--census-every-ms`` (100) and keeps the listing with the most; it prints the tracked
objects and their references (``gc.get_referents``) per run in flight, by type, the CPU
time of a full pass over them, and (unless ``--no-census-sites``) where the project
allocated them (tracemalloc, ``--frames`` deep: slow, use ``--runs 50 --frames 8``).

``--tune-collector`` calls ``runtime.fairness.tune_collector()`` after the warm-up, as a
service with many runs in flight may once after start-up (the worker does by default);
``--gc-freeze`` and ``--gc-threshold A,B,C`` set the collector up by hand (``gc.freeze()``,
``gc.set_threshold``). By default the library changes nothing.

Targets: <= 64 KB per in-flight run (RSS and heap), no callback over 20 ms, heartbeat lag
p99 <= 250 ms. The core count and the load average are printed. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.perf.bench_orchestrator import RssSampler, percentile, start_emulator  # noqa: E402

MODEL = "gpt-4o"
SLOW_CALLBACK_S = 0.020
HEARTBEAT_S = 0.010
PING_PARAMETERS = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
}
ASSISTANTS_TOOL = {
    "type": "function",
    "function": {"name": "ping", "description": "Answer pong.", "parameters": PING_PARAMETERS},
}

RunOnce = Callable[[int], Awaitable[bool]]


def user_message(i: int, calls: int) -> str:
    return "\n".join(f'/call ping {{"n": {i * 100 + k}}}' for k in range(calls))


def expected_reply(i: int, calls: int) -> str:
    return "\n".join(f"ping returned: pong {i * 100 + k}" for k in range(calls))


# --- instrumentation (this harness only) ------------------------------------------------------


class GcPauses:
    """Times the cyclic garbage collector's passes (``gc.callbacks``) while active."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float, float]] = []  # (generation, seconds, CPU seconds)
        self.total_s = 0.0
        self._started = (0.0, 0.0)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
            return
        elapsed = time.perf_counter() - self._started[0]
        self.total_s += elapsed
        self.pauses.append((info["generation"], elapsed, time.thread_time() - self._started[1]))


class SlowCallbacks:
    """Times every ``asyncio.Handle._run`` while active; keeps those over the threshold,
    with the share of that time spent in the cyclic garbage collector."""

    def __init__(self, gc_pauses: GcPauses, threshold_s: float = SLOW_CALLBACK_S) -> None:
        self.threshold_s = threshold_s
        self.slow: list[tuple[float, float, str]] = []  # (seconds, of which GC, where)
        self.slow_cpu: list[tuple[float, float]] = []  # (CPU seconds, of which GC)
        self.active = False
        self._gc = gc_pauses
        self._original = asyncio.events.Handle._run

    def install(self) -> None:
        original, probe = self._original, self

        def timed_run(handle: asyncio.Handle) -> None:
            if not probe.active:
                original(handle)
                return
            started, cpu, in_gc = time.perf_counter(), time.thread_time(), probe._gc.total_s
            original(handle)
            elapsed = time.perf_counter() - started
            if elapsed > probe.threshold_s:
                in_gc = probe._gc.total_s - in_gc
                probe.slow.append((elapsed, in_gc, _describe(handle)))
                cpu = time.thread_time() - cpu
                if cpu > probe.threshold_s:
                    probe.slow_cpu.append((cpu, in_gc))

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]

    def uninstall(self) -> None:
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]


def _describe(handle: asyncio.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", repr(coro))
        return f"task {name}"
    return repr(callback)[:120]


async def heartbeat(
    lags: list[float],
    lags_without_gc: list[float],
    cpu_lags: list[float],
    pauses: GcPauses,
    stop: asyncio.Event,
) -> None:
    """Sleep 10 ms in a loop; record how late each wake-up is, also minus the GC time in it,
    and in CPU time: the loop thread's CPU time over the sleep minus the 10 ms (a lower bound
    of the lag on an otherwise idle core; the wall-clock lag also counts the time this process
    waited for a CPU, which on a loaded machine is most of it)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due, in_gc, cpu = loop.time() + HEARTBEAT_S, pauses.total_s, time.thread_time()
        await asyncio.sleep(HEARTBEAT_S)
        lag = loop.time() - due
        lags.append(lag)
        lags_without_gc.append(max(0.0, lag - (pauses.total_s - in_gc)))
        cpu_lags.append(max(0.0, time.thread_time() - cpu - HEARTBEAT_S))


async def batch(run_once: RunOnce, runs: int) -> dict[str, Any]:
    """Launch ``runs`` runs at once; time each and the batch."""
    latencies: list[float] = []
    inflight = peak_inflight = errors = 0

    async def one(i: int) -> None:
        nonlocal inflight, peak_inflight, errors
        inflight += 1
        peak_inflight = max(peak_inflight, inflight)
        started = time.perf_counter()
        try:
            ok = await run_once(i)
        except Exception as exc:
            ok = False
            if errors < 3:
                print(f"run {i} failed: {exc!r}", file=sys.stderr)
            if errors == 0:
                traceback.print_exception(exc, file=sys.stderr)
        finally:
            inflight -= 1
        latencies.append(time.perf_counter() - started)
        errors += 0 if ok else 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for i in range(runs):
            group.create_task(one(i))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "runs": runs,
        "errors": errors,
        "wall_s": round(wall, 2),
        "runs_per_s": round((runs - errors) / wall, 1),
        "client_cpu_ms_per_run": round(cpu / runs * 1000, 2),
        "latency_p50_ms": round(percentile(latencies, 50) * 1000),
        "latency_p99_ms": round(percentile(latencies, 99) * 1000),
        "peak_inflight": peak_inflight,
    }


async def measure(run_once: RunOnce, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up; the timed batch (RSS, heartbeat, slow callbacks); the tracemalloc batch."""
    base_n = 1_000_000
    await batch(lambda i: run_once(base_n + i), min(50, args.runs))
    gc.collect()
    if args.tune_collector:
        from runtime.fairness import tune_collector

        tune_collector()
    if args.gc_freeze:
        gc.freeze()  # what an application may do after start-up: not the library's default
    if args.gc_threshold:
        gc.set_threshold(*args.gc_threshold)
    collections_before = [s["collections"] for s in gc.get_stats()]
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    probe = SlowCallbacks(pauses)
    probe.install()
    lags: list[float] = []
    lags_without_gc: list[float] = []
    cpu_lags: list[float] = []
    stop = asyncio.Event()
    beat = asyncio.create_task(heartbeat(lags, lags_without_gc, cpu_lags, pauses, stop))
    await asyncio.sleep(0.05)
    sampler = RssSampler()
    base_rss = sampler.rss()
    probe.active = True
    with sampler:
        report = await batch(run_once, args.runs)
    probe.active = False
    stop.set()
    await beat
    probe.uninstall()
    gc.callbacks.remove(pauses)
    report["gc_collections"] = "/".join(
        str(s["collections"] - before)
        for s, before in zip(gc.get_stats(), collections_before, strict=True)
    )
    report["rss_per_inflight_kb"] = round(
        (sampler.peak - base_rss) / report["peak_inflight"] / 1024, 1
    )
    report["rss_base_mb"] = round(base_rss / 2**20, 1)
    report["rss_peak_mb"] = round(sampler.peak / 2**20, 1)
    report["heartbeat_lag_p50_ms"] = round(percentile(lags, 50) * 1000, 1)
    report["heartbeat_lag_p99_ms"] = round(percentile(lags, 99) * 1000, 1)
    report["heartbeat_lag_max_ms"] = round(max(lags, default=0.0) * 1000, 1)
    report["heartbeat_samples"] = len(lags)
    report["hb_cpu_lag_p50_ms"] = round(percentile(cpu_lags, 50) * 1000, 1)
    report["hb_cpu_lag_p99_ms"] = round(percentile(cpu_lags, 99) * 1000, 1)
    report["hb_cpu_lag_max_ms"] = round(max(cpu_lags, default=0.0) * 1000, 1)
    report["hb_lag_minus_gc_p99_ms"] = round(percentile(lags_without_gc, 99) * 1000, 1)
    report["hb_lag_minus_gc_max_ms"] = round(max(lags_without_gc, default=0.0) * 1000, 1)
    outside_gc = [s for s, g, _ in probe.slow if s - g > SLOW_CALLBACK_S]
    report["slow_callbacks_minus_gc"] = len(outside_gc)
    report["slow_callbacks_cpu"] = len(probe.slow_cpu)
    report["slow_callbacks_cpu_minus_gc"] = sum(
        1 for c, g in probe.slow_cpu if c - g > SLOW_CALLBACK_S
    )
    report["slow_callback_cpu_max_ms"] = round(
        max((c for c, _ in probe.slow_cpu), default=0) * 1e3, 1
    )
    report["slow_callbacks"] = len(probe.slow)
    report["slow_callback_max_ms"] = round(max((s for s, _, _ in probe.slow), default=0.0) * 1e3, 1)
    report["slow_callback_gc_share"] = round(
        sum(g for _, g, _ in probe.slow) / max(1e-9, sum(s for s, _, _ in probe.slow)), 2
    )
    report["gc_passes_gen2"] = sum(1 for gen, _, _ in pauses.pauses if gen == 2)
    report["gc_pause_max_ms"] = round(max((p for _, p, _ in pauses.pauses), default=0.0) * 1e3, 1)
    report["gc_pause_cpu_max_ms"] = round(max((c for _, _, c in pauses.pauses), default=0) * 1e3, 1)
    report["gc_total_ms"] = round(pauses.total_s * 1e3)
    report["gc_total_cpu_ms"] = round(sum(c for _, _, c in pauses.pauses) * 1e3)
    report["gc_pause_cpu_max_ms_by_gen"] = "/".join(
        str(round(max((c for g, _, c in pauses.pauses if g == gen), default=0) * 1e3, 1))
        for gen in range(3)
    )
    worst = sorted(probe.slow, reverse=True)[:5]
    report["slow_callback_where"] = [
        f"{s * 1e3:.0f} ms ({g * 1e3:.0f} ms in GC) {where}" for s, g, where in worst
    ]
    if args.tracemalloc:
        gc.collect()
        tracemalloc.start(args.frames)
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        traced = await batch(lambda i: run_once(2 * base_n + i), args.runs)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        report["heap_per_inflight_kb"] = round((peak - base) / traced["peak_inflight"] / 1024, 1)
        report["heap_errors"] = traced["errors"]
    return report


# --- census: which objects a run in flight holds (--census) ------------------------------------


def _tracked_by_type() -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        counts[name] = counts.get(name, 0) + 1
    return counts


def _where(obj: object, depth: int) -> str:
    """The first frames inside the project that allocated ``obj`` (tracemalloc)."""
    trace = tracemalloc.get_object_traceback(obj)
    if trace is None:
        return "?"
    frames = [
        f
        for f in trace
        if f"{os.sep}runtime{os.sep}" in f.filename or f"{os.sep}tools{os.sep}" in f.filename
    ]
    chosen = frames[:depth] or list(trace)[:1]
    return " < ".join(f"{_short(f.filename)}:{f.lineno}" for f in chosen)


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("runtime", "tools", "site-packages", "python3.11"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) :])
    return filename


async def census(run_once: RunOnce, args: argparse.Namespace) -> dict[str, Any]:
    """Count the GC-tracked objects by type (and by where the project allocated them) at
    the moment the most were tracked, per run in flight, against the count before the batch."""
    await batch(lambda i: run_once(3_000_000 + i), min(50, args.runs))
    gc.collect()
    gc.freeze()  # the census counts only what the batch adds
    if args.census_sites:
        tracemalloc.start(args.frames)
    baseline = _tracked_by_type()
    best: dict[str, Any] = {"tracked": -1}
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            await asyncio.sleep(args.census_every_ms / 1000)
            objects = gc.get_objects()
            if len(objects) > best["tracked"]:
                by_type: dict[str, int] = {}
                by_site: dict[str, int] = {}
                edges: dict[str, int] = {}
                for obj in objects:
                    name = type(obj).__qualname__
                    by_type[name] = by_type.get(name, 0) + 1
                    edges[name] = edges.get(name, 0) + len(gc.get_referents(obj))
                    if args.census_sites:
                        site = f"{name} @ {_where(obj, args.census_depth)}"
                        by_site[site] = by_site.get(site, 0) + 1
                started = time.thread_time()
                gc.collect(2)  # finds nothing (no cycles): the time is the walk of the tracked
                full_s = time.thread_time() - started
                best.update(
                    tracked=len(objects),
                    by_type=by_type,
                    by_site=by_site,
                    inflight=inflight(),
                    edges=edges,
                    full_s=full_s,
                )
            del objects

    state = {"inflight": 0}

    def inflight() -> int:
        return state["inflight"]

    async def counted(i: int) -> bool:
        state["inflight"] += 1
        try:
            return await run_once(4_000_000 + i)
        finally:
            state["inflight"] -= 1

    sampler = asyncio.create_task(sample())
    report = await batch(counted, args.runs)
    done.set()
    await sampler
    if args.census_sites:
        tracemalloc.stop()
    gc.unfreeze()
    runs = max(1, best["inflight"])
    delta = {k: v - baseline.get(k, 0) for k, v in best["by_type"].items()}
    report["census_inflight"] = best["inflight"]
    report["census_tracked_per_run"] = round((best["tracked"]) / runs, 1)
    edges = best["edges"]
    report["census_edges_per_run"] = round(sum(edges.values()) / runs, 1)
    report["census_full_pass_us_per_run"] = round(best["full_s"] / runs * 1e6, 1)
    report["census_by_type"] = {
        f"{k} ({edges.get(k, 0) / runs:.1f} refs)": round(v / runs, 2)
        for k, v in sorted(delta.items(), key=lambda kv: -kv[1])[:45]
        if v
    }
    report["census_by_site"] = {
        k: round(v / runs, 2)
        for k, v in sorted(best["by_site"].items(), key=lambda kv: -kv[1])[:60]
    }
    return report


# --- the two protocols -----------------------------------------------------------------------


def _registry(tool_ms: int) -> Any:
    from tools import ToolRegistry

    async def ping(n: int) -> str:
        """Answer pong after a pause."""
        await asyncio.sleep(tool_ms / 1000)
        return f"pong {n}"

    registry = ToolRegistry()
    registry.register(ping)
    return registry


async def assistants(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from runtime import AssistantsClient, Orchestrator

    client = AssistantsClient(
        base_url=url + "/v1",
        api_key="sk-bench",
        max_connections=args.runs,
        timeout_s=600.0,
        stream_idle_timeout_s=600.0,
    )
    async with client:
        assistant = await client.create_assistant(model=MODEL, tools=[ASSISTANTS_TOOL])
        orchestrator = Orchestrator(client, _registry(args.tool_ms))

        async def run_once(i: int) -> bool:
            result = await orchestrator.create_thread_and_run(
                assistant.id, messages=[{"role": "user", "content": user_message(i, args.calls)}]
            )
            return result.ok and result.text == expected_reply(i, args.calls)

        return await (census if args.census else measure)(run_once, args)


async def responses(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from runtime.responses import ResponsesClient, ResponsesOrchestrator

    client = ResponsesClient(
        base_url=url + "/v1",
        api_key="sk-bench",
        max_connections=args.runs,
        timeout_s=600.0,
        stream_idle_timeout_s=600.0,
    )
    async with client:
        orchestrator = ResponsesOrchestrator(client, _registry(args.tool_ms))

        async def run_once(i: int) -> bool:
            result = await orchestrator.run(user_message(i, args.calls), model=MODEL)
            return result.ok and result.text == expected_reply(i, args.calls)

        return await (census if args.census else measure)(run_once, args)


PROTOCOLS: dict[str, Callable[[str, argparse.Namespace], Awaitable[dict[str, Any]]]] = {
    "assistants": assistants,
    "responses": responses,
}


# --- driver ----------------------------------------------------------------------------------


def run_client(protocol: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one protocol in a fresh process; return its report."""
    command = [
        sys.executable,
        __file__,
        "--client",
        protocol,
        "--url",
        url,
        "--runs",
        str(args.runs),
        "--calls",
        str(args.calls),
        "--tool-ms",
        str(args.tool_ms),
        "--frames",
        str(args.frames),
    ]
    if not args.tracemalloc:
        command.append("--no-tracemalloc")
    if args.gc_freeze:
        command.append("--gc-freeze")
    if args.tune_collector:
        command.append("--tune-collector")
    if args.census:
        command += ["--census", "--census-every-ms", str(args.census_every_ms)]
        command += ["--census-depth", str(args.census_depth)]
        command += [] if args.census_sites else ["--no-census-sites"]
    if args.gc_threshold:
        command += ["--gc-threshold", ",".join(map(str, args.gc_threshold))]
    proc = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    if proc.stderr:
        print(proc.stderr[-3000:], file=sys.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{protocol} client failed (exit {proc.returncode})")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


KEYS = [
    "runs",
    "errors",
    "wall_s",
    "runs_per_s",
    "client_cpu_ms_per_run",
    "latency_p50_ms",
    "latency_p99_ms",
    "peak_inflight",
    "rss_per_inflight_kb",
    "heap_per_inflight_kb",
    "heartbeat_lag_p50_ms",
    "heartbeat_lag_p99_ms",
    "heartbeat_lag_max_ms",
    "heartbeat_samples",
    "hb_cpu_lag_p50_ms",
    "hb_cpu_lag_p99_ms",
    "hb_cpu_lag_max_ms",
    "hb_lag_minus_gc_p99_ms",
    "hb_lag_minus_gc_max_ms",
    "slow_callbacks",
    "slow_callbacks_minus_gc",
    "slow_callbacks_cpu",
    "slow_callbacks_cpu_minus_gc",
    "slow_callback_cpu_max_ms",
    "slow_callback_max_ms",
    "slow_callback_gc_share",
    "gc_passes_gen2",
    "gc_pause_max_ms",
    "gc_pause_cpu_max_ms",
    "gc_total_ms",
    "gc_total_cpu_ms",
    "gc_pause_cpu_max_ms_by_gen",
    "gc_collections",
    "emulator_cpu_s",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("assistants", "responses", "both"), default="both")
    parser.add_argument("--runs", type=int, default=1000, help="runs launched at once")
    parser.add_argument("--calls", type=int, default=8, help="tool calls per run (one round)")
    parser.add_argument("--tool-ms", type=int, default=50, help="how long the async tool sleeps")
    parser.add_argument("--no-tracemalloc", dest="tracemalloc", action="store_false")
    parser.add_argument("--frames", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--tune-collector",
        action="store_true",
        help="runtime.fairness.tune_collector() after the warm-up, as the worker does",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after the warm-up, as an application may after start-up",
    )
    parser.add_argument(
        "--gc-threshold",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        help="gc.set_threshold(A, B, C) after the warm-up, e.g. 700,10,1000",
    )
    parser.add_argument(
        "--census",
        action="store_true",
        help="instead of the timings: GC-tracked objects per run in flight, by type and by where "
        "the project allocated them (tracemalloc; use --frames 25), at the peak",
    )
    parser.add_argument("--census-every-ms", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--census-depth", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-census-sites", dest="census_sites", action="store_false", help=argparse.SUPPRESS
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--client", choices=sorted(PROTOCOLS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(asyncio.run(PROTOCOLS[args.client](args.url, args))))
        return 0

    import psutil

    chosen = ("assistants", "responses") if args.protocol == "both" else (args.protocol,)
    results: dict[str, dict[str, Any]] = {}
    for protocol in chosen:
        # Keep every object: a response evicted mid-run would fail its follow-up request.
        emulator, url = start_emulator("--max-retained", "0")
        try:
            emu = psutil.Process(emulator.pid)
            results[protocol] = run_client(protocol, url, args)
            cpu = emu.cpu_times()
            results[protocol]["emulator_cpu_s"] = round(cpu.user + cpu.system, 1)
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)
        print(f"{protocol}: {json.dumps(results[protocol])}", file=sys.stderr)
    load = os.getloadavg()
    if args.census:
        for protocol in chosen:
            r = results[protocol]
            print(
                f"## {protocol}: {r['census_tracked_per_run']} tracked objects per run in flight"
                f" ({r['census_inflight']} in flight at the peak), "
                f"{r['census_edges_per_run']} references, a full pass "
                f"{r['census_full_pass_us_per_run']} us of CPU per run"
            )
            for name, per_run in r["census_by_type"].items():
                print(f"  {per_run:8.2f}  {name}")
            for site, per_run in r["census_by_site"].items():
                print(f"  {per_run:8.2f}  {site}")
        return 0
    print(
        f"# bench_concurrent: {args.runs} runs at once, {args.calls} calls x {args.tool_ms} ms "
        f"each; Python {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"| {'metric':<27} | " + " | ".join(f"{p:>10}" for p in chosen) + " |")
    print(f"|{'-' * 29}|" + "|".join("-" * 12 for _ in chosen) + "|")
    for key in KEYS:
        row = [str(results[p].get(key, "-")) for p in chosen]
        print(f"| {key:<27} | " + " | ".join(f"{v:>10}" for v in row) + " |")
    for protocol in chosen:
        for where in results[protocol].get("slow_callback_where", []):
            print(f"{protocol} slow callback: {where}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=2))
    met = all(
        r["errors"] == 0
        and r["rss_per_inflight_kb"] <= 64
        and r.get("heap_per_inflight_kb", 0) <= 64
        and r["slow_callbacks"] == 0
        and r["heartbeat_lag_p99_ms"] <= 250
        for r in results.values()
    )
    print("targets met" if met else "targets MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
