"""Benchmark: our Orchestrator vs the official SDK loop, on runs with one tool round each.

Run from the repository root:

    python tests/perf/bench_orchestrator.py                    # 1000 concurrent runs, both loops
    python tests/perf/bench_orchestrator.py --runs 200 --impl ours --json out.json

Setup. The emulator runs as ``python -m runtime emulator`` in a separate process; each client
loop runs in its own fresh process, so memory baselines and CPU counters are not shared
(``--pin`` puts the emulator on CPU 0 and the clients on the other CPUs). Every run is the same
conversation: create a thread with ``/call ping {"n": I}``, stream a run to
``requires_action``, execute the one call with a trivial async tool, submit its output in a
streaming request and follow the stream to ``completed`` (3 HTTP requests, 2 event streams).

* ``ours``: ``Orchestrator.create_thread_and_run`` on an ``AssistantsClient``.
* ``sdk``: ``AsyncOpenAI`` (the official SDK): ``beta.threads.create``, then
  ``beta.threads.runs.stream`` and ``beta.threads.runs.submit_tool_outputs_stream`` with the
  SDK's stream manager, executing the calls with ``asyncio.gather`` (the loop from the SDK's
  docs). Both get the same connection pool size and the same tool definitions per run.

What is reported, per loop:

* ``runs_per_s``: N runs launched at once (``--concurrency`` caps the runs in flight,
  default N), completed runs divided by the wall time of the batch. With one emulator
  process this is usually bounded by the emulator (see ``emulator_cpu_s``), so it is the
  same for both loops unless a client is slower than the server.
* ``client_cpu_ms_per_run``: CPU time of the client process (``time.process_time``, all
  threads) during the concurrent batch, divided by the runs: everything the client spends
  per run (HTTP, SSE decoding, models, snapshots, tool dispatch, submitting).
* ``overhead_p50_ms`` / ``overhead_p99_ms``: the orchestration overhead of one run, measured
  exactly on ``--sequential`` runs executed one at a time: the CPU time of the event-loop
  thread (``time.thread_time``) from starting the run to its result. With one run in flight
  every CPU cycle of that thread belongs to that run; the time spent waiting for the server
  is not CPU time, so it is excluded.
* ``latency_p50_ms`` / ``latency_p99_ms``: end-to-end time of each run in the concurrent batch
  (includes queueing at the server), and ``seq_latency_p50_ms`` for the sequential runs.
* ``rss_per_inflight_kb``: (peak RSS during the concurrent batch - RSS before it) / runs in
  flight at the peak (all N are in flight when ``--concurrency`` is N: every run is launched
  before the first one finishes). Sampled by a thread every 2 ms (psutil).
* ``heap_per_inflight_kb``: the same batch again under ``tracemalloc``: peak traced Python
  heap above the baseline / N (Python objects only; ``--no-tracemalloc`` to skip).

Logging is configured at WARNING for our loop (the default INFO logs cost CPU per event).
``--profile`` prints a cProfile of the sequential runs (event-loop thread CPU time) per loop.
Wall-clock figures (runs/s, latencies) depend on what else the machine runs; the CPU-time
figures much less: the 1-minute load average at the end is printed with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

PING_TOOL = {
    "type": "function",
    "function": {
        "name": "ping",
        "description": "Answer pong.",
        "parameters": {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        },
    },
}


async def ping(n: int) -> str:
    """The benchmark's tool: trivial, async."""
    await asyncio.sleep(0)
    return f"pong {n}"


def message(i: int) -> str:
    return f'/call ping {{"n": {i}}}'


# --- the emulator process ---------------------------------------------------------------


PIN = False  # --pin: emulator on the first CPU, clients on the others


def _pin(cpus: set[int]) -> Callable[[], None] | None:
    if not PIN or not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def client_cpus() -> set[int]:
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else {0}
    return (cpus - {min(cpus)}) or cpus


def start_emulator(*extra: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m runtime emulator --port 0`` (pinned to the first CPU); return its URL."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else {0}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "emulator", "--port", "0", "--run-ttl", "3600", *extra],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pin({min(cpus)}),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    return proc, match.group(1)


# --- measuring -------------------------------------------------------------------------------


class RssSampler:
    """Samples this process's RSS in a thread; ``peak`` is the highest value seen."""

    def __init__(self, interval_s: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval_s = interval_s
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


RunOnce = Callable[[int], Awaitable[bool]]


async def concurrent_batch(run_once: RunOnce, runs: int, concurrency: int) -> dict[str, Any]:
    """Launch ``runs`` runs (at most ``concurrency`` in flight); time each and the batch."""
    limit = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    inflight = 0
    peak_inflight = 0
    errors = 0

    async def one(i: int) -> None:
        nonlocal inflight, peak_inflight, errors
        async with limit:
            inflight += 1
            peak_inflight = max(peak_inflight, inflight)
            started = time.perf_counter()
            try:
                ok = await run_once(i)
            except Exception as exc:
                ok = False
                if errors < 3:
                    print(f"run {i} failed: {exc!r}", file=sys.stderr)
            finally:
                inflight -= 1
            latencies.append(time.perf_counter() - started)
            errors += 0 if ok else 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for i in range(runs):
            group.create_task(one(i))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    completed = runs - errors
    return {
        "runs": runs,
        "errors": errors,
        "wall_s": round(wall, 3),
        "runs_per_s": round(completed / wall, 1),
        "client_cpu_ms_per_run": round(cpu / runs * 1000, 3),
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "peak_inflight": peak_inflight,
    }


async def sequential_runs(run_once: RunOnce, runs: int) -> dict[str, Any]:
    """Run one at a time; per-run event-loop thread CPU (the overhead) and latency."""
    cpu: list[float] = []
    wall: list[float] = []
    for i in range(runs):
        c0, w0 = time.thread_time(), time.perf_counter()
        ok = await run_once(100_000 + i)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
        if not ok:
            raise RuntimeError(f"sequential run {i} did not complete")
    return {
        "sequential_runs": runs,
        "overhead_p50_ms": round(percentile(cpu, 50) * 1000, 3),
        "overhead_p99_ms": round(percentile(cpu, 99) * 1000, 3),
        "overhead_mean_ms": round(statistics.fmean(cpu) * 1000, 3),
        "seq_latency_p50_ms": round(percentile(wall, 50) * 1000, 2),
        "seq_latency_p99_ms": round(percentile(wall, 99) * 1000, 2),
    }


async def measure(run_once: RunOnce, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then the concurrent batch (RSS), the sequential runs, the tracemalloc batch."""
    await concurrent_batch(run_once, min(50, args.runs), args.concurrency)
    for i in range(5):
        await run_once(200_000 + i)
    gc.collect()
    sampler = RssSampler()
    base_rss = sampler.rss()
    with sampler:
        report = await concurrent_batch(run_once, args.runs, args.concurrency)
    report["rss_base_mb"] = round(base_rss / 2**20, 1)
    report["rss_peak_mb"] = round(sampler.peak / 2**20, 1)
    report["rss_per_inflight_kb"] = round(
        (sampler.peak - base_rss) / report["peak_inflight"] / 1024, 1
    )
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    if profiler is not None:
        profiler.enable()
    report.update(await sequential_runs(run_once, args.sequential))
    if profiler is not None:
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
    if args.tracemalloc:
        gc.collect()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        traced = await concurrent_batch(run_once, args.runs, args.concurrency)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        report["heap_per_inflight_kb"] = round((peak - base) / traced["peak_inflight"] / 1024, 1)
    return report


# --- the two loops ---------------------------------------------------------------------------


async def ours(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from runtime import AssistantsClient, Orchestrator, RunPolicy
    from runtime.logging import configure_logging
    from tools import ToolRegistry

    configure_logging("WARNING")
    registry = ToolRegistry()
    registry.register(ping)
    client = AssistantsClient(
        base_url=url + "/v1",
        api_key="sk-bench",
        max_connections=args.concurrency,
        timeout_s=300.0,
        stream_idle_timeout_s=300.0,
    )
    async with client:
        assistant = await client.create_assistant(model="gpt-4o", tools=[PING_TOOL])
        orchestrator = Orchestrator(client, registry, policy=RunPolicy())

        async def run_once(i: int) -> bool:
            result = await orchestrator.create_thread_and_run(
                assistant.id, messages=[{"role": "user", "content": message(i)}]
            )
            return result.ok and result.text == f"ping returned: pong {i}"

        return await measure(run_once, args)


async def sdk(url: str, args: argparse.Namespace) -> dict[str, Any]:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import httpx2
    import openai

    http = openai.DefaultAsyncHttpxClient(
        limits=httpx2.Limits(
            max_connections=args.concurrency, max_keepalive_connections=args.concurrency
        ),
        timeout=300.0,
    )
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-bench", http_client=http)
    async with client:
        assistant = await client.beta.assistants.create(model="gpt-4o", tools=[PING_TOOL])  # type: ignore[list-item]

        async def execute(call: Any) -> dict[str, str]:
            arguments = json.loads(call.function.arguments or "{}")
            return {"tool_call_id": call.id, "output": await ping(**arguments)}

        async def run_once(i: int) -> bool:
            thread = await client.beta.threads.create(
                messages=[{"role": "user", "content": message(i)}]
            )
            async with client.beta.threads.runs.stream(
                thread_id=thread.id,
                assistant_id=assistant.id,
                tools=[PING_TOOL],  # type: ignore[list-item]
            ) as stream:
                await stream.until_done()
                run = await stream.get_final_run()
            text = ""
            while run.status == "requires_action" and run.required_action is not None:
                calls = run.required_action.submit_tool_outputs.tool_calls
                outputs = await asyncio.gather(*(execute(c) for c in calls))
                async with client.beta.threads.runs.submit_tool_outputs_stream(
                    thread_id=thread.id,
                    run_id=run.id,
                    tool_outputs=outputs,  # type: ignore[arg-type]
                ) as stream:
                    await stream.until_done()
                    run = await stream.get_final_run()
                    messages = await stream.get_final_messages()
                    text = "".join(
                        part.text.value
                        for m in messages
                        for part in m.content
                        if part.type == "text"
                    )
            return run.status == "completed" and text == f"ping returned: pong {i}"

        return await measure(run_once, args)


LOOPS: dict[str, Callable[[str, argparse.Namespace], Awaitable[dict[str, Any]]]] = {
    "ours": ours,
    "sdk": sdk,
}


# --- driver ----------------------------------------------------------------------------------


def run_worker(impl: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one loop in a fresh process (pinned to the client CPUs); return its report."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        impl,
        "--url",
        url,
        "--runs",
        str(args.runs),
        "--concurrency",
        str(args.concurrency),
        "--sequential",
        str(args.sequential),
    ]
    if not args.tracemalloc:
        command.append("--no-tracemalloc")
    if args.profile:
        command.append("--profile")
    proc = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        preexec_fn=_pin(client_cpus()),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} worker failed:\n{proc.stderr[-3000:]}")
    if args.profile:
        print(
            f"--- profile of {impl} (sequential runs, CPU time) ---\n{proc.stderr}", file=sys.stderr
        )
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def print_table(results: dict[str, dict[str, Any]]) -> None:
    keys = [
        "runs",
        "errors",
        "wall_s",
        "runs_per_s",
        "client_cpu_ms_per_run",
        "latency_p50_ms",
        "latency_p99_ms",
        "overhead_p50_ms",
        "overhead_p99_ms",
        "seq_latency_p50_ms",
        "rss_per_inflight_kb",
        "heap_per_inflight_kb",
        "emulator_cpu_s",
    ]
    impls = list(results)
    print(f"| {'metric':<24} | " + " | ".join(f"{i:>10}" for i in impls) + " |")
    print(f"|{'-' * 26}|" + "|".join("-" * 12 for _ in impls) + "|")
    for key in keys:
        row = [str(results[i].get(key, "-")) for i in impls]
        print(f"| {key:<24} | " + " | ".join(f"{v:>10}" for v in row) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in the concurrent batch")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="max in flight (default: runs)"
    )
    parser.add_argument("--sequential", type=int, default=200, help="runs measured one at a time")
    parser.add_argument("--impl", default="ours,sdk", help="comma-separated: ours, sdk")
    parser.add_argument("--no-tracemalloc", dest="tracemalloc", action="store_false")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile (CPU time) the sequential runs"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the emulator to the first CPU and the clients to the others (only on a "
        "quiet machine: on a shared one a pinned process waits for its CPU, ~10 ms a request)",
    )
    parser.add_argument("--worker", choices=sorted(LOOPS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.concurrency = args.concurrency or args.runs
    global PIN
    PIN = args.pin
    if args.worker:
        report = asyncio.run(LOOPS[args.worker](args.url, args))
        print(json.dumps(report))
        return 0

    import psutil

    emulator, url = start_emulator()
    results: dict[str, dict[str, Any]] = {}
    try:
        emu_proc = psutil.Process(emulator.pid)
        for impl in args.impl.split(","):
            before = emu_proc.cpu_times()
            results[impl] = run_worker(impl, url, args)
            after = emu_proc.cpu_times()
            results[impl]["emulator_cpu_s"] = round(
                after.user + after.system - before.user - before.system, 2
            )
            print(f"{impl}: {json.dumps(results[impl])}", file=sys.stderr)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    meta = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "runs": args.runs,
        "concurrency": args.concurrency,
        "sequential": args.sequential,
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "pinned": args.pin,
    }
    print(f"# bench_orchestrator {json.dumps(meta)}")
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
