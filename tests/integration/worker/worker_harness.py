"""Helpers of the worker end-to-end tests: worker subprocesses, the tool log, redis checks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
REDIS_URL = os.environ.get("RUNTIME_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")


def redis_skip_reason() -> str | None:
    """Why redis tests cannot run here, or None when a server answers."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
        return None
    except (redis.RedisError, OSError) as exc:
        return f"no redis-server at {REDIS_URL} ({exc}); run .ci/redis.sh to start one"
    finally:
        client.close()


def write_config(path: Path, *, base_url: str, queue: dict[str, Any], **sections: Any) -> Path:
    """Write a worker TOML file: test tools, JSON logs, no HTTP unless asked."""
    worker = {"tools": ["worker_test_tools:registry"], "claim_wait_s": 0.2, "retry_delay_s": 0.2}
    worker.update(sections.pop("worker", {}))
    data: dict[str, dict[str, Any]] = {
        "worker": worker,
        "queue": queue,
        "http": {"enabled": False, **sections.pop("http", {})},
        "api": {"base_url": base_url, "api_key": "sk-worker-test-key"},
        "policy": {"cancel_wait_s": 3.0, **sections.pop("policy", {})},
        "log": {"level": "INFO", "format": "json"},
    }
    data.update(sections)
    path.write_text(_toml(data), encoding="utf-8")
    return path


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((f"{prefix}{key}", value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for name, table in tables:
        out += f"\n[{name}]\n" + _toml(table, prefix=f"{name}.")
    return out


def spawn_worker(
    config: Path,
    name: str,
    log_dir: Path,
    *,
    burst: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``python -m runtime worker`` with the test tools importable; logs go to a file."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RUNTIME_WORKER_")}
    full_env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO)])
    full_env.update(env or {})
    args = [sys.executable, "-m", "runtime", "worker", "--config", str(config), "--name", name]
    if burst:
        args.append("--burst")
    log = (log_dir / f"{name}.log").open("ab")
    try:
        return subprocess.Popen(args, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def run_cli(args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m runtime ARGS`` (blocking: call it through asyncio.to_thread)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNTIME_WORKER_")}
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Poll until the process exits without blocking the event loop; kill it on timeout."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            proc.kill()
            proc.wait()
            raise AssertionError(f"worker {proc.pid} did not exit within {timeout} s")
        await asyncio.sleep(0.05)
    return int(proc.returncode)


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll ``check`` until it is true."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill whatever is still running (test clean-up)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_tool_log(path: Path) -> list[dict[str, Any]]:
    """Every whole line the test tools wrote.

    Another process may be in the middle of its write: a read can see the first bytes of a
    line before the rest. Only lines that end in a newline are complete.
    """
    if not path.exists():
        return []
    *whole, _partial = path.read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in whole if line]


def job_message(text: str, sleep_ms: int) -> str:
    """A user message that makes the emulator call ``slow_echo`` once."""
    return "/call slow_echo " + json.dumps({"text": text, "sleep_ms": sleep_ms})


async def kill_mid_run(
    proc: subprocess.Popen[bytes],
    tool_log: Path,
    persisted: Callable[[str, str], Awaitable[bool]],
    *,
    min_finished: int = 5,
    timeout: float = 30.0,
) -> set[str]:
    """SIGKILL ``proc`` while it runs tools, at a moment when all its finished tools are saved.

    The process is frozen (SIGSTOP) first and inspected: the kill only happens when it has at
    least one tool call in flight and every call it finished has been stored
    (``persisted(job_text, tool_call_id)``). A call finished but not yet stored when the
    process dies is unavoidably executed again by the successor; that is not what the test
    is about, so such moments are skipped (SIGCONT, try again).

    Returns:
        The tool call ids that were in flight in the killed process.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        if not _ready(proc.pid, read_tool_log(tool_log), min_finished):
            continue
        os.kill(proc.pid, signal.SIGSTOP)
        events = [e for e in read_tool_log(tool_log) if e["pid"] == proc.pid]
        started = {e["call"]: e["text"] for e in events if e["event"] == "start"}
        ended = {e["call"]: e["text"] for e in events if e["event"] == "end"}
        in_flight = set(started) - set(ended)
        saved = [await persisted(text, call) for call, text in ended.items()]
        if in_flight and all(saved):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return in_flight
        os.kill(proc.pid, signal.SIGCONT)
    raise AssertionError("never found a moment to kill the worker mid-run")


def _ready(pid: int, events: list[dict[str, Any]], min_finished: int) -> bool:
    mine = [e for e in events if e["pid"] == pid]
    ended = {e["call"] for e in mine if e["event"] == "end"}
    started = {e["call"] for e in mine if e["event"] == "start"}
    return len(ended) >= min_finished and bool(started - ended)


def tail(path: Path, lines: int = 30) -> str:
    """The end of a log file, for failure messages."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
