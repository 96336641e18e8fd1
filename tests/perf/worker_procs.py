"""Start-up shared by the worker benchmarks: the emulator and worker subprocesses, their
configuration, readiness, their queue and their CPU time."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]

from runtime.worker import JobQueue  # noqa: E402
from runtime.worker.redis import RedisQueue  # noqa: E402
from runtime.worker.sqlite import SqliteQueue  # noqa: E402

API_KEY = "sk-bench-worker-key"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _thread_files(pid: int, name: str) -> dict[int, str]:
    """The text of ``/proc/<pid>/task/<tid>/<name>`` for each live thread, by thread id."""
    out: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = (task / name).read_text()
        except OSError:  # the thread ended
            continue
    return out


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """User and system CPU seconds of each thread of a process, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[float, float]] = {}
    for tid, stat in _thread_files(pid, "stat").items():
        fields = stat.rsplit(")", 1)[1].split()
        out[tid] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def thread_switches(pid: int) -> dict[int, int]:
    """Context switches (voluntary and not) of each thread of a process, by thread id: each
    hand-off between the threads, and each wait for the GIL, is one or two."""
    return {
        tid: sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line)
        for tid, status in _thread_files(pid, "status").items()
    }


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_worker_config(
    path: Path,
    *,
    base_url: str,
    backend: str,
    store: str,
    concurrency: int,
    log_level: str,
) -> None:
    """A worker.toml for ``backend`` (redis: ``store`` is the URL, with a fresh key prefix;
    sqlite: the database file), JSON logs at ``log_level``, /readyz on a port from the env."""
    if backend == "redis":
        queue = (
            f'backend = "redis"\n[queue.redis]\nurl = "{store}"\nprefix = "{uuid.uuid4().hex}"\n'
        )
    else:
        queue = f'backend = "sqlite"\n[queue.sqlite]\npath = "{store}"\n'
    path.write_text(
        f"[worker]\nconcurrency = {concurrency}\nclaim_wait_s = 0.2\n"
        f'[api]\nbase_url = "{base_url}"\napi_key = "{API_KEY}"\n'
        f'[log]\nlevel = "{log_level}"\nformat = "json"\n'
        "[http]\nenabled = true\nport = 0\n"
        f"[queue]\n{queue}",
        encoding="utf-8",
    )


def _prefix(config: Path) -> str:
    return config.read_text().split('prefix = "')[1].split('"')[0]


def queue_for(config: Path, backend: str, store: str) -> JobQueue:
    """The benchmark's own handle on the queue a config names."""
    if backend == "redis":
        return RedisQueue(store, prefix=_prefix(config))
    return SqliteQueue(store)


def worker_setup(
    tmp: Path,
    name: str,
    *,
    backend: str,
    redis_url: str,
    base_url: str,
    concurrency: int,
    log_level: str,
) -> tuple[Path, str, JobQueue]:
    """A worker's config file in ``tmp``, its store (redis: the URL; sqlite: ``name``.db) and
    the benchmark's own handle on that queue."""
    store = redis_url if backend == "redis" else str(tmp / f"{name}.db")
    config = tmp / f"{name}.toml"
    write_worker_config(
        config,
        base_url=base_url,
        backend=backend,
        store=store,
        concurrency=concurrency,
        log_level=log_level,
    )
    return config, store, queue_for(config, backend, store)


async def drop_keys(url: str, config: Path) -> None:
    """Delete the redis keys of the config's prefix."""
    import redis.asyncio as aioredis

    prefix = _prefix(config)
    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 1000):
        await client.delete(*keys[i : i + 1000])
    await client.aclose()


def start_emulator() -> tuple[subprocess.Popen[bytes], int]:
    """An emulator process on a free port (stop it with :func:`stop`)."""
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "runtime", "emulator", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    return emulator, port


def start_worker(
    config: Path, name: str, http_port: int, tree: Path = REPO
) -> subprocess.Popen[bytes]:
    """A ``python -m runtime worker`` process of the code in ``tree`` (this checkout by
    default; its logs to /dev/null), /readyz on the port."""
    env = {**os.environ, "PYTHONPATH": str(tree), "RUNTIME_WORKER_HTTP__PORT": str(http_port)}
    cmd = [sys.executable, "-m", "runtime", "worker", "--config", str(config), "--name", name]
    return subprocess.Popen(cmd, cwd=tree, env=env, stderr=subprocess.DEVNULL)


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM every process (a worker drains), then wait for each."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=timeout)


async def wait_port(port: int, timeout: float = 30.0) -> None:
    """Until something accepts connections on the loopback port."""
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


async def wait_ready(ports: list[int], timeout: float = 30.0) -> None:
    """Until every worker answers 200 on /readyz."""
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
