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
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from runtime import AssistantsClient  # noqa: E402
from runtime.worker import Job, JobQueue, Message  # noqa: E402
from runtime.worker.redis import RedisQueue  # noqa: E402
from runtime.worker.sqlite import SqliteQueue  # noqa: E402

API_KEY = "sk-bench-worker-key"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(path: Path, *, base_url: str, backend: str, store: str, concurrency: int) -> None:
    if backend == "redis":
        queue = (
            f'backend = "redis"\n[queue.redis]\nurl = "{store}"\nprefix = "{uuid.uuid4().hex}"\n'
        )
    else:
        queue = f'backend = "sqlite"\n[queue.sqlite]\npath = "{store}"\n'
    path.write_text(
        f"[worker]\nconcurrency = {concurrency}\nclaim_wait_s = 0.2\n"
        f'[api]\nbase_url = "{base_url}"\napi_key = "{API_KEY}"\n'
        '[log]\nlevel = "WARNING"\nformat = "json"\n'
        "[http]\nenabled = true\nport = 0\n"
        f"[queue]\n{queue}",
        encoding="utf-8",
    )


async def _drop_keys(url: str, config: Path) -> None:
    import redis.asyncio as aioredis

    prefix = config.read_text().split('prefix = "')[1].split('"')[0]
    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 1000):
        await client.delete(*keys[i : i + 1000])
    await client.aclose()


def _queue_for(config: Path, backend: str, store: str) -> JobQueue:
    if backend == "redis":
        prefix = config.read_text().split('prefix = "')[1].split('"')[0]
        return RedisQueue(store, prefix=prefix)
    return SqliteQueue(store)


async def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start") from None
            await asyncio.sleep(0.1)


async def _wait_ready(ports: list[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        for port in ports:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker on port {port} never became ready")
                await asyncio.sleep(0.1)


async def _measure(
    processes: int, args: argparse.Namespace, base_url: str, assistant_id: str, tmp: Path
) -> float:
    store = args.redis_url if args.backend == "redis" else str(tmp / f"bench-{processes}.db")
    config = tmp / f"worker-{processes}.toml"
    _config(
        config, base_url=base_url, backend=args.backend, store=store, concurrency=args.concurrency
    )
    queue = _queue_for(config, args.backend, store)
    ports = [_free_port() for _ in range(processes)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = []
    for i, port in enumerate(ports):
        env_i = {**env, "RUNTIME_WORKER_HTTP__PORT": str(port)}
        cmd = [
            sys.executable,
            "-m",
            "runtime",
            "worker",
            "--config",
            str(config),
            "--name",
            f"b{i}",
        ]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env_i, stderr=subprocess.DEVNULL))
    try:
        await _wait_ready(ports)
        await queue.ping()
        cpu_ready = sum(_cpu_seconds(p.pid) for p in procs)
        message = Message(content='/call calculate {"expression": "6*7"}')
        start = time.perf_counter()
        for i in range(args.jobs):
            await queue.submit(Job(id=f"bench-{i}", assistant_id=assistant_id, messages=(message,)))
        while (await queue.stats()).unfinished:
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - start
        cpu = sum(_cpu_seconds(p.pid) for p in procs) - cpu_ready
        print(f"    workers' CPU {cpu:.1f} s ({1000 * cpu / args.jobs:.1f} ms/job)", flush=True)
        records = await queue.recent(args.jobs)
        failed = [r.job.id for r in records if r.result is None or r.result.status != "completed"]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs did not complete, e.g. {failed[:3]}")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        await queue.aclose()
        if args.backend == "redis":
            await _drop_keys(store, config)
    return args.jobs / elapsed


async def _main(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()[0]
    port = _free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "runtime", "emulator", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        await _wait_port(port)
        async with AssistantsClient(base_url=base_url, api_key=API_KEY) as client:
            assistant = await client.create_assistant(model="gpt-4o", name="bench")
        rates: dict[int, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for processes in args.processes:
                runs = []
                for _ in range(args.repeat):
                    emulator_cpu = _cpu_seconds(emulator.pid)
                    runs.append(await _measure(processes, args, base_url, assistant.id, Path(tmp)))
                    used = _cpu_seconds(emulator.pid) - emulator_cpu
                    print(
                        f"  {processes} process(es): {runs[-1]:.1f} jobs/s; emulator CPU "
                        f"{1000 * used / args.jobs:.1f} ms/job",
                        flush=True,
                    )
                rates[processes] = statistics.median(runs)
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=10)
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
