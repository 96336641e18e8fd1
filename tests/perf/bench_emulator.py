"""Benchmark: how many concurrent streaming runs one emulator process serves on one core.

Run from the repository root:

    python tests/perf/bench_emulator.py                       # 2000 runs, 500 at a time
    python tests/perf/bench_emulator.py --runs 1000 --concurrency 1000 --delta-delay-ms 10
    python tests/perf/bench_emulator.py --tool-round          # /call -> requires_action -> submit

The emulator is started as ``python -m runtime emulator`` in a separate process pinned to one
CPU (``os.sched_setaffinity``); this process (the load generator) is pinned to the other CPUs
when there are any. Each run is one streaming ``POST /v1/threads/runs`` (create thread and
run, ~20 events); with ``--tool-round`` it is a ``/call`` run streamed to ``requires_action``
plus a streaming ``submit_tool_outputs`` to ``completed``. A run counts as an error unless its
stream ends with ``thread.run.completed`` and ``done``. ``--delta-delay-ms`` makes every stream
last longer, so that the concurrency is real at the server (see ``streams_open_peak``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[2]
DONE = b"event: done\ndata: [DONE]\n\n"


def start_emulator(cpu: int, delta_delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m runtime emulator`` pinned to ``cpu``; return it and its URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime",
            "emulator",
            "--port",
            "0",
            "--delta-delay-ms",
            str(delta_delay_ms),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, match.group(1)


async def one_run(
    session: aiohttp.ClientSession, base: str, assistant_id: str, index: int, tool_round: bool
) -> float:
    """One streaming run to completion; returns its latency in seconds (raises on error)."""
    started = time.perf_counter()
    content = f'/call lookup {{"n": {index}}}' if tool_round else f"hello number {index}"
    body = {
        "assistant_id": assistant_id,
        "stream": True,
        "thread": {"messages": [{"role": "user", "content": content}]},
    }
    async with session.post(base + "/threads/runs", json=body) as resp:
        resp.raise_for_status()
        data = await resp.read()
    if tool_round:
        if not data.endswith(DONE) or b"thread.run.requires_action" not in data:
            raise RuntimeError("no requires_action")
        run = json.loads(data.rsplit(b"\n\n", 3)[-3].split(b"data: ", 1)[1])
        calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        outputs = [{"tool_call_id": c["id"], "output": f"value {index}"} for c in calls]
        url = f"{base}/threads/{run['thread_id']}/runs/{run['id']}/submit_tool_outputs"
        async with session.post(url, json={"tool_outputs": outputs, "stream": True}) as resp:
            resp.raise_for_status()
            data = await resp.read()
    if not data.endswith(DONE) or b"event: thread.run.completed" not in data:
        raise RuntimeError("stream did not complete")
    return time.perf_counter() - started


async def drive(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Run the load and collect figures."""
    base = url + "/v1"
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    headers = {"Authorization": "Bearer sk-bench"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as s:
        async with s.post(base + "/assistants", json={"model": "gpt-4o"}) as resp:
            assistant_id = (await resp.json())["id"]
        gate = asyncio.Semaphore(args.concurrency)
        latencies: list[float] = []
        errors: list[str] = []

        async def guarded(index: int) -> None:
            async with gate:
                try:
                    latencies.append(await one_run(s, base, assistant_id, index, args.tool_round))
                except Exception as exc:  # counted, not raised: the figure is the error count
                    errors.append(type(exc).__name__)

        started = time.perf_counter()
        await asyncio.gather(*(guarded(i) for i in range(args.runs)))
        wall = time.perf_counter() - started
        async with s.get(url + "/_emulator/stats") as resp:
            stats = await resp.json()
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(int(p * len(latencies)), len(latencies) - 1)] * 1000 if latencies else 0
        )

    return {
        "runs": args.runs,
        "concurrency": args.concurrency,
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "wall_s": round(wall, 2),
        "runs_per_s": round(len(latencies) / wall, 1),
        "latency_ms_p50": round(pct(0.50), 1),
        "latency_ms_p95": round(pct(0.95), 1),
        "latency_ms_p99": round(pct(0.99), 1),
        "latency_ms_max": round(latencies[-1] * 1000 if latencies else 0, 1),
        "latency_ms_mean": round(statistics.fmean(latencies) * 1000 if latencies else 0, 1),
        "server_streams": stats.get("streams", 0),
        "server_streams_open_peak": stats.get("streams_open_peak", 0),
        "server_runs_completed": stats.get("runs_completed", 0),
    }


def main() -> int:
    """Parse flags, start the pinned emulator, drive it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--delta-delay-ms", type=float, default=0.0)
    parser.add_argument("--tool-round", action="store_true")
    parser.add_argument("--server-cpu", type=int, default=0)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    proc, url = start_emulator(args.server_cpu, args.delta_delay_ms)
    others = set(cpus) - {args.server_cpu}
    if others:
        os.sched_setaffinity(0, others)
    try:
        import psutil

        server = psutil.Process(proc.pid)
        cpu_before = sum(server.cpu_times()[:2])
        figures = asyncio.run(drive(args, url))
        figures["server_cpu_s"] = round(sum(server.cpu_times()[:2]) - cpu_before, 2)
        figures["server_pinned_to_cpu"] = sorted(server.cpu_affinity())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    figures["machine_cpus"] = os.cpu_count()
    figures["delta_delay_ms"] = args.delta_delay_ms
    figures["tool_round"] = args.tool_round
    print(json.dumps(figures, indent=2))
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
