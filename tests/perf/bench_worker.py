"""Worker throughput: jobs/s for 1, 2 and 4 worker processes against an emulator subprocess.

Each job creates a thread, runs it, executes one tool call (the builtin ``calculate``), submits
the output and stores the result: the full worker path. For every process count the queue is
fresh, the workers are started and ready (``/readyz``) before the jobs are submitted, and the
clock runs from the first submission until the queue has no unfinished job.

    python tests/perf/bench_worker.py                      # redis at $RUNTIME_TEST_REDIS_URL
    python tests/perf/bench_worker.py --backend sqlite --jobs 300 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from runtime import AssistantsClient  # noqa: E402
from runtime.worker import Job, Message  # noqa: E402
from tests.perf.worker_procs import (  # noqa: E402
    API_KEY,
    cpu_seconds,
    drop_keys,
    free_port,
    start_emulator,
    start_worker,
    stop,
    wait_port,
    wait_ready,
    worker_setup,
)


async def _measure(
    processes: int, args: argparse.Namespace, base_url: str, assistant_id: str, tmp: Path
) -> float:
    config, store, queue = worker_setup(
        tmp,
        f"bench-{processes}",
        backend=args.backend,
        redis_url=args.redis_url,
        base_url=base_url,
        concurrency=args.concurrency,
        log_level="WARNING",
    )
    ports = [free_port() for _ in range(processes)]
    procs = [start_worker(config, f"b{i}", port) for i, port in enumerate(ports)]
    try:
        await wait_ready(ports)
        await queue.ping()
        cpu_ready = sum(cpu_seconds(p.pid) for p in procs)
        message = Message(content='/call calculate {"expression": "6*7"}')
        start = time.perf_counter()
        for i in range(args.jobs):
            await queue.submit(Job(id=f"bench-{i}", assistant_id=assistant_id, messages=(message,)))
        while (await queue.stats()).unfinished:
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - start
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_ready
        print(f"    workers' CPU {cpu:.1f} s ({1000 * cpu / args.jobs:.1f} ms/job)", flush=True)
        records = await queue.recent(args.jobs)
        failed = [r.job.id for r in records if r.result is None or r.result.status != "completed"]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs did not complete, e.g. {failed[:3]}")
    finally:
        stop(procs)
        await queue.aclose()
        if args.backend == "redis":
            await drop_keys(store, config)
    return args.jobs / elapsed


async def _main(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()[0]
    emulator, port = start_emulator()
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        await wait_port(port)
        async with AssistantsClient(base_url=base_url, api_key=API_KEY) as client:
            assistant = await client.create_assistant(model="gpt-4o", name="bench")
        rates: dict[int, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for processes in args.processes:
                runs = []
                for _ in range(args.repeat):
                    emulator_cpu = cpu_seconds(emulator.pid)
                    runs.append(await _measure(processes, args, base_url, assistant.id, Path(tmp)))
                    used = cpu_seconds(emulator.pid) - emulator_cpu
                    print(
                        f"  {processes} process(es): {runs[-1]:.1f} jobs/s; emulator CPU "
                        f"{1000 * used / args.jobs:.1f} ms/job",
                        flush=True,
                    )
                rates[processes] = statistics.median(runs)
    finally:
        stop([emulator], timeout=10)
    base = rates[args.processes[0]]
    print(
        f"\nbackend={args.backend} jobs={args.jobs} concurrency/process={args.concurrency} "
        f"cores={os.cpu_count()} (emulator, workers and {args.backend} share them) "
        f"load average before/after={load_before:.1f}/{os.getloadavg()[0]:.1f}"
    )
    print(f"median of {args.repeat} measurement(s) per row")
    print("| worker processes | jobs/s | scaling vs 1 |")
    print("|---|---|---|")
    for processes, rate in rates.items():
        print(f"| {processes} | {rate:.1f} | {rate / base:.2f}x |")


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--backend", choices=["redis", "sqlite"], default="redis")
    parser.add_argument(
        "--redis-url", default=os.environ.get("RUNTIME_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")
    )
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once per process")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=3, help="measurements per row (median)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
