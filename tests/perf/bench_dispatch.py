"""Benchmark: ToolDispatcher overhead per call (async and sync tools).

Run from the repository root:

    python tests/perf/bench_dispatch.py            # or: python -m tests.perf.bench_dispatch

Overhead is the wall time per call through ``run_batch`` minus the time of calling the tool
directly; the tools do nothing, so the figure is the dispatcher's own cost (task, limits,
validation, timeout, encoding, its log events: at INFO one ``tool.finished`` line per
call). Columns: median and best batch (wall time),
and process CPU time per call; each is the lowest of 3 repeats. Logging as shipped, through
``configure_logging`` as the CLI and the worker call it: the library's default (nothing
configured: silent), ``configure_logging("WARNING", "console")`` (the CLI's) and
``configure_logging("INFO", "json")`` (the worker's default), writing to a null stream.
Last, the cost of one filtered log call (``log.info`` under WARNING) on a module-level
logger and on a resolved one.

    python tests/perf/bench_dispatch.py --instructions               # a batch, in instructions
    python tests/perf/bench_dispatch.py --instructions --cache-sim   # and cache misses

``--instructions`` counts the user-space instructions of one batch as a run makes it: 8 calls
of an async tool that awaits once, each batch through a fresh ``ToolDispatcher``, against
``asyncio.gather`` of the same 8 coroutines, their arguments parsed with ``json.loads`` (the
floor loop's round); this file runs under ``valgrind
--tool=callgrind`` with 400 and with 100 batches and the difference is divided by 300, so
start-up and imports cancel out and the machine's load does not move the figure.
``--cache-sim`` adds callgrind's cache and branch simulation (misses and mispredictions a
batch). Logging: the library's default. It needs valgrind on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import structlog

from runtime.logging import ModuleLogger, configure_logging, reset_logging
from tests.perf.callgrind import counts, difference, print_simulated, require_valgrind
from tools import ToolCall, ToolDispatcher, ToolRegistry

REPO = Path(__file__).resolve().parents[2]
registry = ToolRegistry()


@registry.tool
async def noop_async(x: int) -> str:
    """Return at once."""
    return "ok"


@registry.tool
def noop_sync(x: int) -> str:
    """Return at once (runs in the thread pool)."""
    return "ok"


@registry.tool
async def ping(n: int) -> str:
    """Await once, as a tool that does I/O would, and answer (``--instructions``)."""
    await asyncio.sleep(0)
    return f"pong {n}"


BATCH = 8  # calls a batch in --instructions, as in a round of bench_loop.py


class NullStream(io.StringIO):
    """A text stream that keeps nothing (the rendered lines are still built and written)."""

    def write(self, text: str) -> int:
        return len(text)


SETUPS = ("library default", "WARNING", "INFO JSON")


def configure_logs(setup: str) -> None:
    """Logging as shipped: unconfigured, the CLI's WARNING console, the worker's INFO JSON."""
    reset_logging()
    if setup == "WARNING":
        configure_logging("WARNING", "console", NullStream())
    elif setup == "INFO JSON":
        configure_logging("INFO", "json", NullStream())


def filtered_call_cost(n: int = 20_000) -> tuple[float, float, float]:
    """µs per ``log.info`` call filtered out under WARNING: through a module-level logger
    (``runtime.logging.ModuleLogger``, as the runtime's modules log), through a resolved one
    (as the dispatcher logs), and the same loop calling an empty function."""
    configure_logs("WARNING")
    lazy = ModuleLogger("runtime.bench")
    resolved = structlog.get_logger("runtime.bench").bind()

    def nothing(event: str, **fields: object) -> None:
        return None

    def per_call(call: Callable[[int], object]) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            for i in range(n):
                call(i)
            best = min(best, time.process_time() - start)
        return best / n * 1e6

    return (
        per_call(lambda i: lazy.info("bench.filtered", run_id="run_1", attempt=i)),
        per_call(lambda i: resolved.info("bench.filtered", run_id="run_1", attempt=i)),
        per_call(lambda i: nothing("bench.filtered", run_id="run_1", attempt=i)),
    )


async def direct_cost(name: str, n: int) -> float:
    """Seconds per call when calling the function without the dispatcher."""
    tool = registry.get(name)
    assert tool is not None
    start = time.perf_counter()
    if tool.is_async:
        for _ in range(n):
            await tool.fn(x=1)
    else:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            await loop.run_in_executor(None, tool.fn, 1)
    return (time.perf_counter() - start) / n


async def dispatch_cost(name: str, batch: int, rounds: int) -> tuple[float, float, float]:
    """Seconds per call through run_batch over rounds batches: wall median, wall best, CPU.

    CPU time (all threads of this process) is the figure least disturbed by other load on
    the machine; wall "best" is the timeit-style minimum.
    """
    samples = []
    # Dispatchers (one per run) and calls are built outside the measurement.
    work = [
        (
            ToolDispatcher(registry, max_concurrency=max(batch, 1)),
            [ToolCall(f"call_{r}_{i}", name, '{"x": 1}') for i in range(batch)],
        )
        for r in range(rounds)
    ]
    cpu_start = time.process_time()
    for dispatcher, calls in work:
        start = time.perf_counter()
        results = await dispatcher.run_batch(calls)
        samples.append((time.perf_counter() - start) / batch)
        assert all(not res.is_error for res in results)
    cpu = (time.process_time() - cpu_start) / (rounds * batch)
    return statistics.median(samples), min(samples), cpu


async def measure(name: str, batch: int, repeats: int = 3) -> tuple[float, float, float]:
    """Return (wall median, wall best, CPU) overhead per call in microseconds.

    Each figure is the lowest of ``repeats`` runs (as timeit does): other processes only
    ever add time, so the minimum is the best estimate of the dispatcher's own cost.
    """
    rounds = max(20, 2000 // batch)
    await dispatch_cost(name, batch, 5)  # warm up: pool threads, pydantic, caches
    runs = [await dispatch_cost(name, batch, rounds) for _ in range(repeats)]
    median, best, cpu = (min(values) for values in zip(*runs, strict=True))
    # For sync tools the thread hop is part of what the dispatcher does, so it stays in.
    direct = await direct_cost(name, 2000) if name == "noop_async" else 0.0
    return tuple(max(0.0, value - direct) * 1e6 for value in (median, best, cpu))  # type: ignore[return-value]


async def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"load average {os.getloadavg()[0]:.2f}; overhead per call in µs")
    print(f"{'logs':<16} {'tool':<11} {'batch':>5} {'median':>8} {'best':>8} {'cpu':>8}")
    for setup in SETUPS:
        configure_logs(setup)
        for name in ("noop_async", "noop_sync"):
            for batch in (1, 10, 100):
                median, best, cpu = await measure(name, batch)
                print(f"{setup:<16} {name:<11} {batch:>5} {median:>8.1f} {best:>8.1f} {cpu:>8.1f}")
    print("sync tools include the thread hop (run_in_executor round trip).")
    lazy, resolved, empty = filtered_call_cost()
    print(
        f"one filtered log.info call: {lazy:.2f} µs CPU on a module-level logger, "
        f"{resolved:.2f} µs on a resolved one (an empty function call: {empty:.2f} µs)"
    )
    reset_logging()


async def batches(mode: str, count: int) -> None:
    """``count`` batches of :data:`BATCH` ``ping`` calls, the calls built alike in both modes:
    through a fresh dispatcher each (``dispatch``), or each call's arguments parsed with
    ``json.loads`` and the coroutines gathered (``gather``, as the floor loop of
    ``bench_loop.py`` runs a round)."""
    for b in range(count):
        calls = [
            ToolCall(f"call_{b}_{i}", "ping", f'{{"n": {b * BATCH + i}}}') for i in range(BATCH)
        ]
        if mode == "gather":
            await asyncio.gather(*(ping(**json.loads(call.arguments)) for call in calls))
            continue
        results = await ToolDispatcher(registry).run_batch(calls)
        assert not any(result.is_error for result in results)


def count_instructions(cache_sim: bool, many: int = 400, few: int = 100) -> None:
    """``--instructions``: a batch's counts for gather and the dispatcher (see the module
    doc), ``many`` minus ``few`` batches."""
    require_valgrind()
    per_batch = {}
    for mode in ("gather", "dispatch"):
        big, small = (
            counts([sys.executable, __file__, "--once", mode, str(n)], REPO, cache_sim=cache_sim)
            for n in (many, few)
        )
        per_batch[mode] = difference(big, small, many - few)
    gather, dispatch = per_batch["gather"]["Ir"], per_batch["dispatch"]["Ir"]
    print(
        f"a batch of {BATCH} calls ({many} - {few} batches): gather {gather:,.0f}, "
        f"dispatcher {dispatch:,.0f} instructions ({dispatch / gather:.2f}x; "
        f"{(dispatch - gather) / BATCH:,.0f} a call above gather)"
    )
    if cache_sim:
        print_simulated("batch", per_batch)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--once":
        asyncio.run(batches(sys.argv[2], int(sys.argv[3])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="a batch's instructions under callgrind, dispatcher and gather (minutes)",
    )
    parser.add_argument(
        "--cache-sim",
        action="store_true",
        help="with --instructions: also callgrind's cache and branch simulation",
    )
    args = parser.parse_args()
    if args.instructions:
        count_instructions(args.cache_sim)
    else:
        asyncio.run(main())
