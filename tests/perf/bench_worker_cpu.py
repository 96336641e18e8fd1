"""Worker CPU per job vs the in-process orchestrator's, on the same one-round runs.

Each job (and each orchestrator run) creates a thread with ``/call calculate {...}``, streams
a run to ``requires_action``, executes the builtin ``calculate``, submits the output in a
streaming request and follows the stream to ``completed``. The emulator runs in its own
process, shared by both sides.

* worker: one ``python -m runtime worker`` process (concurrency 8) over the chosen queue, with
  the shipped log settings (``[log] level = "INFO"``, JSON lines to stderr, here /dev/null).
  Its CPU (user + system, all threads) from the first submission until the queue has no
  unfinished job, divided by the jobs. The queue server itself (redis) is not counted.
* orchestrator: a fresh process running the same runs through
  ``Orchestrator.create_thread_and_run`` (the same tools, concurrency 8, an idempotency key
  and metadata per run like the worker's), with the library's shipped logging (nothing
  configured); its ``time.process_time`` during the batch, divided by the runs. With
  ``BENCH_ORCHESTRATOR_LOGS=worker`` it logs as the worker does (INFO JSON lines, to
  /dev/null), which shows the share of the gap that is logging.

The two alternate (worker, orchestrator, worker, ...) so drifting machine load hits both; the
figures are medians over the pairs. With ``--together`` each pair runs both sides at the same
time, on the same emulator: load from other processes then hits both sides alike, and the
per-pair ratios spread less. The emulator's CPU per job is printed for each side, with
the core count: both client and emulator share the cores, and the last line turns the worker's
and the emulator's CPU per job into the ceiling on jobs/s of those cores (the emulator's share
stated).

    python tests/perf/bench_worker_cpu.py                  # sqlite, 300 jobs, 5 pairs
    python tests/perf/bench_worker_cpu.py --backend redis  # redis at $RUNTIME_TEST_REDIS_URL
    python tests/perf/bench_worker_cpu.py --calls 4        # four calls in the one round
    python tests/perf/bench_worker_cpu.py --together       # each pair's sides at the same time
    python tests/perf/bench_worker_cpu.py --instructions   # instructions a job (callgrind)

``--instructions`` counts user-space instructions instead of CPU time, which the machine's load
does not move: both sides run under ``valgrind --tool=callgrind`` (every thread of the
process) against one emulator process (not traced), each with ``--jobs`` jobs and with a
fifth of them, and the difference of the two counts divided by the difference in jobs is the
side's work a job (start-up, imports and shutdown cancel out). The worker is a
``python -m runtime worker --burst`` process (same config as above) over a queue filled
before it starts, so it claims at full concurrency and exits when the queue is empty; the
orchestrator is the same child process as above. It needs valgrind on PATH and takes
minutes (a job runs about 50 times slower under callgrind, so lease heartbeats, every 10 s,
happen more often a job than at full speed: at most a few thousand instructions a job). Run
from another checkout's root (e.g. ``git archive`` of the code before a change) to compare.
``--cache-sim`` adds callgrind's cache and branch simulation (``--instructions --cache-sim``):
each side's cache misses and mispredicted branches a job, and each per thousand instructions.

``--baseline DIR`` compares two workers instead of a worker and the orchestrator: each pair
runs a worker of the code in DIR (e.g. ``git archive`` of the code before a change) and one of
this checkout side by side, on one emulator, each over its own queue, the same jobs submitted
to both in turn (which one first alternates). Both meet the same machine load at the same
time, so a pair's ratio (this / baseline) moves far less than the worker / orchestrator
ratio across runs; the median of the pairs' ratios is printed.

    python tests/perf/bench_worker_cpu.py --baseline /tmp/base --pairs 8 --jobs 200
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.perf.callgrind import (  # noqa: E402
    counts,
    difference,
    print_simulated,
    require_valgrind,
)
from tests.perf.worker_procs import (  # noqa: E402
    API_KEY,
    cpu_seconds,
    cpu_split,
    drop_keys,
    free_port,
    start_emulator,
    start_worker,
    stop,
    thread_cpu,
    thread_switches,
    wait_port,
    wait_ready,
    worker_setup,
)


def _message(calls: int) -> str:
    """The job's message: ``calls`` calculate calls in its one tool round."""
    return "\n".join(f'/call calculate {{"expression": "6*{i + 7}"}}' for i in range(calls))


CONCURRENCY = 8


async def _bench_assistant(port: int, base_url: str) -> str:
    """Wait for the emulator on ``port`` and create the benchmark's assistant: its id."""
    from runtime import AssistantsClient

    await wait_port(port)
    async with AssistantsClient(base_url=base_url, api_key=API_KEY) as client:
        assistant = await client.create_assistant(model="gpt-4o", name="bench-cpu")
    return assistant.id


async def _check_completed(queue: Any, jobs: int) -> None:
    """Every one of the last ``jobs`` jobs ended ``completed`` (else the figure means nothing)."""
    records = await queue.recent(jobs)
    failed = [r.job.id for r in records if r.result is None or r.result.status != "completed"]
    if failed or len(records) != jobs:
        raise RuntimeError(f"{len(failed)} of {jobs} jobs did not complete, e.g. {failed[:3]}")


async def _worker_cpu(
    args: argparse.Namespace, base_url: str, assistant_id: str, tmp: Path, n: int
) -> float:
    from runtime.worker import Job, Message

    # [log] as shipped in config/worker.toml: INFO, JSON lines.
    config, store, queue = worker_setup(
        tmp,
        f"cpu-{n}",
        backend=args.backend,
        redis_url=args.redis_url,
        base_url=base_url,
        concurrency=CONCURRENCY,
        log_level="INFO",
    )
    port = free_port()
    proc = start_worker(config, "cpu", port)
    try:
        await wait_ready([port])
        await queue.ping()
        cpu0 = cpu_seconds(proc.pid)
        split0, threads0 = cpu_split(proc.pid), thread_cpu(proc.pid)
        switches0 = thread_switches(proc.pid)
        message = Message(content=_message(args.calls))
        for i in range(args.jobs):
            await queue.submit(
                Job(id=f"cpu-{n}-{i}", assistant_id=assistant_id, messages=(message,))
            )
        while (await queue.stats()).unfinished:
            await asyncio.sleep(0.02)
        cpu = cpu_seconds(proc.pid) - cpu0
        _SPLITS.append(_split_line(proc.pid, split0, threads0, switches0, args.jobs))
        await _check_completed(queue, args.jobs)
    finally:
        stop([proc])
        await queue.aclose()
        if args.backend == "redis":
            await drop_keys(store, config)
    return cpu / args.jobs


async def _side_by_side_pair(
    args: argparse.Namespace, base_url: str, assistant_id: str, tmp: Path, n: int
) -> tuple[float, float]:
    """CPU seconds a job of the baseline's worker and of this checkout's, run at once."""
    from runtime.worker import Job, Message

    trees = (Path(args.baseline).resolve(), REPO)
    sides: list[tuple[subprocess.Popen[bytes], Any, int]] = []
    for tree, name in zip(trees, ("base", "this"), strict=True):
        config, _store, queue = worker_setup(
            tmp,
            f"{name}-{n}",
            backend="sqlite",
            redis_url=args.redis_url,
            base_url=base_url,
            concurrency=CONCURRENCY,
            log_level="INFO",
        )
        port = free_port()
        sides.append((start_worker(config, name, port, tree), queue, port))
    cpu: dict[int, float] = {}
    try:
        await wait_ready([port for _proc, _queue, port in sides])
        for _proc, queue, _port in sides:
            await queue.ping()
        cpu0 = [cpu_seconds(proc.pid) for proc, _queue, _port in sides]
        order = (0, 1) if n % 2 == 0 else (1, 0)
        message = Message(content=_message(args.calls))
        for i in range(args.jobs):
            for side in order:
                job = Job(id=f"{side}-{n}-{i}", assistant_id=assistant_id, messages=(message,))
                await sides[side][1].submit(job)
        while len(cpu) < len(sides):
            for side, (proc, queue, _port) in enumerate(sides):
                if side not in cpu and not (await queue.stats()).unfinished:
                    cpu[side] = (cpu_seconds(proc.pid) - cpu0[side]) / args.jobs
            await asyncio.sleep(0.02)
        for _proc, queue, _port in sides:
            await _check_completed(queue, args.jobs)
    finally:
        stop([proc for proc, _queue, _port in sides])
        for _proc, queue, _port in sides:
            await queue.aclose()
    return cpu[0], cpu[1]


async def _compare_trees(args: argparse.Namespace) -> None:
    """``--baseline``: the baseline's worker and this checkout's, side by side, pair by pair."""

    load_before = os.getloadavg()[0]
    emulator, port = start_emulator()
    base_url = f"http://127.0.0.1:{port}/v1"
    ratios: list[float] = []
    try:
        assistant_id = await _bench_assistant(port, base_url)
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(args.pairs):
                base, this = await _side_by_side_pair(args, base_url, assistant_id, Path(tmp), n)
                ratios.append(this / base)
                print(
                    f"  pair {n + 1}: baseline {1000 * base:.2f} ms/job, this checkout "
                    f"{1000 * this:.2f} ms/job ({ratios[-1]:.3f}x)",
                    flush=True,
                )
    finally:
        stop([emulator], timeout=10)
    print(
        f"\nsqlite jobs={args.jobs} calls/round={args.calls} concurrency={CONCURRENCY} "
        f"pairs={args.pairs} cores={os.cpu_count()} load average before/after="
        f"{load_before:.1f}/{os.getloadavg()[0]:.1f}"
    )
    print(
        f"this checkout / baseline: {statistics.median(ratios):.3f}x (median of the pairs; "
        f"{min(ratios):.3f}x-{max(ratios):.3f}x)"
    )


def _orchestrator_cpu(base_url: str, assistant_id: str, jobs: int, n: int, calls: int) -> float:
    child = [base_url, assistant_id, str(jobs), str(n), str(calls)]
    out = subprocess.run(
        [sys.executable, __file__, "--child", *child],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    _SPLITS.append(
        f"orchestrator user {1000 * figures['user']:.2f} sys {1000 * figures['system']:.2f} ms/run"
    )
    return float(figures["cpu_per_run"])


#: Per side and pair: user and system CPU (the worker's by thread, with its context switches a
#: job), printed with the pair.
_SPLITS: list[str] = []


def _split_line(
    pid: int,
    split0: tuple[float, float],
    threads0: dict[int, tuple[float, float]],
    switches0: dict[int, int],
    jobs: int,
) -> str:
    user, system = (b - a for a, b in zip(split0, cpu_split(pid), strict=True))
    parts = [f"worker user {1000 * user / jobs:.2f} sys {1000 * system / jobs:.2f} ms/job"]
    switches = thread_switches(pid)
    for tid, (u1, s1) in sorted(thread_cpu(pid).items()):
        u0, s0 = threads0.get(tid, (0.0, 0.0))
        if u1 - u0 + s1 - s0 > 0:
            name = "main" if tid == pid else f"thread {tid}"
            cs = (switches.get(tid, 0) - switches0.get(tid, 0)) / jobs
            parts.append(
                f"{name} {1000 * (u1 - u0) / jobs:.2f}+{1000 * (s1 - s0) / jobs:.2f} ({cs:.1f} cs)"
            )
    return "; ".join(parts)


async def _child(base_url: str, assistant_id: str, jobs: int, n: str, calls: int) -> None:
    from runtime import AssistantsClient, Orchestrator, RunPolicy
    from tools import ToolRegistry
    from tools.builtin import register_builtins

    if os.environ.get("BENCH_ORCHESTRATOR_LOGS") == "worker":
        from runtime.logging import configure_logging

        # The worker's shipped logging, to measure how much of the gap it is.
        configure_logging("INFO", "json", stream=open(os.devnull, "w"))  # noqa: SIM115
    registry = ToolRegistry()
    register_builtins(registry)
    limit = asyncio.Semaphore(CONCURRENCY)
    failed = 0
    async with AssistantsClient(base_url=base_url, api_key=API_KEY) as client:
        orchestrator = Orchestrator(client, registry, policy=RunPolicy())

        async def one(i: int) -> None:
            nonlocal failed
            async with limit:
                key = f"orch-{n}-{i}"
                result = await orchestrator.create_thread_and_run(
                    assistant_id,
                    messages=[{"role": "user", "content": _message(calls)}],
                    idempotency_key=key,
                    metadata={"job_id": key},
                )
                failed += 0 if result.status == "completed" else 1

        cpu0, times0 = time.process_time(), os.times()
        async with asyncio.TaskGroup() as group:
            for i in range(jobs):
                group.create_task(one(i))
        cpu, times1 = time.process_time() - cpu0, os.times()
    if failed:
        raise SystemExit(f"{failed} runs did not complete")
    user, system = times1.user - times0.user, times1.system - times0.system
    print(json.dumps({"cpu_per_run": cpu / jobs, "user": user / jobs, "system": system / jobs}))


async def _main(args: argparse.Namespace) -> None:

    load_before = os.getloadavg()[0]
    emulator, port = start_emulator()
    base_url = f"http://127.0.0.1:{port}/v1"
    worker: list[float] = []
    orch: list[float] = []
    emu_worker: list[float] = []
    emu_orch: list[float] = []
    try:
        assistant_id = await _bench_assistant(port, base_url)
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(args.pairs):
                e0 = cpu_seconds(emulator.pid)
                run_worker = _worker_cpu(args, base_url, assistant_id, Path(tmp), n)
                run_orch = asyncio.to_thread(
                    _orchestrator_cpu, base_url, assistant_id, args.jobs, n, args.calls
                )
                if args.together:
                    # Both at once: whatever else loads the machine loads both sides alike.
                    w_cpu, o_cpu = await asyncio.gather(run_worker, run_orch)
                    worker.append(w_cpu)
                    orch.append(o_cpu)
                    e1 = e0 + (cpu_seconds(emulator.pid) - e0) / 2  # its CPU, split evenly
                else:
                    worker.append(await run_worker)
                    e1 = cpu_seconds(emulator.pid)
                    orch.append(await run_orch)
                e2 = cpu_seconds(emulator.pid)
                emu_worker.append((e1 - e0) / args.jobs)
                emu_orch.append((e2 - e1) / args.jobs)
                print(
                    f"  pair {n + 1}: worker {1000 * worker[-1]:.2f} ms/job, orchestrator "
                    f"{1000 * orch[-1]:.2f} ms/run ({worker[-1] / orch[-1]:.2f}x); emulator "
                    f"{1000 * emu_worker[-1]:.2f} / {1000 * emu_orch[-1]:.2f} ms/job",
                    flush=True,
                )
                for line in _SPLITS:
                    print(f"    {line}", flush=True)
                _SPLITS.clear()
    finally:
        stop([emulator], timeout=10)
    w, o = statistics.median(worker), statistics.median(orch)
    print(
        f"\nbackend={args.backend} jobs={args.jobs} calls/round={args.calls} concurrency={CONCURRENCY} pairs={args.pairs} "
        f"cores={os.cpu_count()} (client, emulator and {args.backend} share them) "
        f"load average before/after={load_before:.1f}/{os.getloadavg()[0]:.1f}"
    )
    print("| side | client CPU ms/job (median) | emulator CPU ms/job |")
    print("|---|---|---|")
    print(
        f"| worker ({args.backend}, INFO JSON logs) | {1000 * w:.2f} | {1000 * statistics.median(emu_worker):.2f} |"
    )
    logs = "INFO JSON logs" if os.environ.get("BENCH_ORCHESTRATOR_LOGS") else "library logging"
    emu = 1000 * statistics.median(emu_orch)
    print(f"| orchestrator ({logs}) | {1000 * o:.2f} | {emu:.2f} |")
    print(
        f"worker / orchestrator: {w / o:.2f}x (median of per-pair ratios "
        f"{statistics.median(a / b for a, b in zip(worker, orch, strict=True)):.2f}x)"
    )
    _print_scaling(w, statistics.median(emu_worker))


def _print_scaling(worker_s: float, emulator_s: float) -> None:
    """The ceiling the measured CPU puts on jobs/s when the emulator shares the cores."""
    cores = os.cpu_count() or 1
    total = worker_s + emulator_s
    print(
        f"scaling: a job costs {1000 * total:.2f} ms of CPU, the emulator's share "
        f"{100 * emulator_s / total:.0f}% ({1000 * emulator_s:.2f} ms); {cores} cores shared "
        f"by workers and emulator top out near {cores / total:.0f} jobs/s "
        f"({cores / worker_s:.0f} jobs/s if the model API ran elsewhere)"
    )


async def _burst_worker_instructions(
    args: argparse.Namespace, base_url: str, assistant_id: str, tmp: Path, jobs: int
) -> dict[str, int]:
    """Instructions (and with ``--cache-sim`` the simulated events) of a burst worker process
    running ``jobs`` jobs queued before it starts."""
    from runtime.worker import Job, Message

    name = f"count-{jobs}"
    config, store, queue = worker_setup(
        tmp,
        name,
        backend=args.backend,
        redis_url=args.redis_url,
        base_url=base_url,
        concurrency=CONCURRENCY,
        log_level="INFO",
    )
    message = Message(content=_message(args.calls))
    try:
        for i in range(jobs):
            await queue.submit(
                Job(id=f"{name}-{i}", assistant_id=assistant_id, messages=(message,))
            )
        command = [sys.executable, "-m", "runtime", "worker", "--config", str(config), "--burst"]
        count = await asyncio.to_thread(
            functools.partial(counts, [*command, "--name", name], REPO, cache_sim=args.cache_sim)
        )
        await _check_completed(queue, jobs)
    finally:
        await queue.aclose()
        if args.backend == "redis":
            await drop_keys(store, config)
    return count


def _orchestrator_instructions(
    base_url: str, assistant_id: str, jobs: int, calls: int, cache_sim: bool
) -> dict[str, int]:
    """Instructions (and with ``cache_sim`` the simulated events) of the orchestrator's
    child process making ``jobs`` runs."""
    child = [base_url, assistant_id, str(jobs), f"count-{jobs}", str(calls)]
    return counts([sys.executable, __file__, "--child", *child], REPO, cache_sim=cache_sim)


async def _count_instructions(args: argparse.Namespace) -> None:
    """``--instructions``: each side's instructions a job, ``--jobs`` and a fifth of them
    differenced; the two sides of one size run at the same time (counts ignore load)."""
    require_valgrind()

    few = max(1, args.jobs // 5)
    emulator, port = start_emulator()
    base_url = f"http://127.0.0.1:{port}/v1"
    by_size: dict[int, tuple[dict[str, int], dict[str, int]]] = {}
    try:
        assistant_id = await _bench_assistant(port, base_url)
        with tempfile.TemporaryDirectory() as tmp:
            for jobs in (args.jobs, few):
                worker, orch = await asyncio.gather(
                    _burst_worker_instructions(args, base_url, assistant_id, Path(tmp), jobs),
                    asyncio.to_thread(
                        _orchestrator_instructions,
                        base_url,
                        assistant_id,
                        jobs,
                        args.calls,
                        args.cache_sim,
                    ),
                )
                by_size[jobs] = (worker, orch)
    finally:
        stop([emulator], timeout=10)
    worker_events, orch_events = (
        difference(big, small, args.jobs - few)
        for big, small in zip(by_size[args.jobs], by_size[few], strict=True)
    )
    worker_per_job, orch_per_job = worker_events["Ir"], orch_events["Ir"]
    print(
        f"backend={args.backend} jobs={args.jobs} - {few} calls/round={args.calls} "
        f"concurrency={CONCURRENCY}"
    )
    print(f"worker ({args.backend}, INFO JSON logs): {worker_per_job:,.0f} instructions a job")
    logs = "INFO JSON logs" if os.environ.get("BENCH_ORCHESTRATOR_LOGS") else "library logging"
    print(f"orchestrator ({logs}): {orch_per_job:,.0f} instructions a run")
    print(f"worker / orchestrator: {worker_per_job / orch_per_job:.3f}x")
    if args.cache_sim:
        print_simulated("job", {"orchestrator": orch_events, "worker": worker_events})


def main() -> None:
    """Parse arguments and run the benchmark (or, with --child, the orchestrator side)."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, assistant, jobs, n, calls = sys.argv[2:7]
        asyncio.run(_child(url, assistant, int(jobs), n, int(calls)))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--backend", choices=["redis", "sqlite"], default="sqlite")
    parser.add_argument(
        "--redis-url", default=os.environ.get("RUNTIME_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")
    )
    parser.add_argument("--jobs", type=int, default=300, help="jobs (and runs) per measurement")
    parser.add_argument("--calls", type=int, default=1, help="tool calls in the job's round")
    parser.add_argument("--pairs", type=int, default=5, help="worker/orchestrator pairs (median)")
    parser.add_argument(
        "--together",
        action="store_true",
        help="run each pair's two sides at the same time (steadier ratios on a loaded machine; "
        "the emulator's CPU is split evenly between them)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count user-space instructions a job under callgrind, each side with --jobs and "
        "a fifth of them (load-independent; minutes)",
    )
    parser.add_argument(
        "--cache-sim",
        action="store_true",
        help="with --instructions: also callgrind's cache and branch simulation (misses and "
        "mispredictions a job; several times slower)",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="compare this checkout's worker with the one of the code in DIR, side by side "
        "(sqlite; CPU time)",
    )
    args = parser.parse_args()
    if args.baseline:
        asyncio.run(_compare_trees(args))
    else:
        asyncio.run(_count_instructions(args) if args.instructions else _main(args))


if __name__ == "__main__":
    main()
