"""MCP servers through the entry points: ``run --mcp``, ``demo --mcp`` and worker ``[[mcp]]``."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import psutil
import pytest

from runtime.worker.app import start_mcp_sources
from runtime.worker.settings import load_worker_settings
from tools import ToolCall, ToolDispatcher, ToolRegistry

from ..conftest import InProcess
from .conftest import SERVER_SCRIPT

REPO_ROOT = Path(__file__).resolve().parents[3]


def marked_spec(name: str) -> tuple[str, str]:
    """A ``--mcp`` value starting the test server with a unique marker argument."""
    marker = f"marker-{uuid.uuid4().hex}"
    command = shlex.join([sys.executable, str(SERVER_SCRIPT), "stdio", marker])
    return f"{name}={command}", marker


def processes_with(marker: str) -> list[int]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if marker in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process.pid)
    return found


def cli_process(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "AZURE_OPENAI_", "RUNTIME_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.slow
def test_run_with_mcp_calls_the_server_tool_and_stops_it() -> None:
    """`run --mcp` offers the server's tools, the scripted model calls one, the server exits."""
    spec, marker = marked_spec("t")
    proc = cli_process("run", "--plain", "--mcp", spec, '/call t__add {"a": 2, "b": 40}')
    assert proc.returncode == 0, proc.stderr
    assert "t__add returned: 42" in proc.stdout
    assert processes_with(marker) == []


def test_demo_with_mcp_lists_the_server_tools(cli: InProcess) -> None:
    """`demo --mcp` (its logic, in this process) runs the demo with the server's tools
    registered next to the demo tools, and stops the server."""
    spec, marker = marked_spec("srv")
    proc = cli("demo", "--plain", "--delta-delay", "0", "--mcp", spec)
    assert proc.returncode == 0, proc.stderr
    assert "srv__add" in proc.stdout and "get_weather" in proc.stdout
    assert processes_with(marker) == []


def test_bad_mcp_values_are_usage_errors(cli: InProcess) -> None:
    """A malformed --mcp value or a command that cannot start exits 2 with the reason."""
    malformed = cli("run", "--mcp", "no-equals-sign", "hi")
    assert malformed.returncode == 2 and "NAME=COMMAND" in malformed.stderr
    missing = cli("run", "--plain", "--mcp", "x=/nonexistent/mcp-server", "hi")
    assert missing.returncode == 2 and "MCP server 'x' did not start" in missing.stderr


async def test_worker_mcp_tables_start_servers_and_register_tools(tmp_path: Path) -> None:
    """`[[mcp]]` tables in worker.toml start the servers; closing the stack stops them."""
    marker = f"marker-{uuid.uuid4().hex}"
    config = tmp_path / "worker.toml"
    config.write_text(
        "[[mcp]]\n"
        'name = "w"\n'
        f"command = {sys.executable!r}\n"
        f"args = [{str(SERVER_SCRIPT)!r}, 'stdio', {marker!r}]\n"
        'env = { SERVER_TOKEN = "sk-worker-mcp-token-123" }\n'
        'allow = ["add", "sleep"]\n'
        "tool_timeouts = { sleep = 0.3 }\n",
        encoding="utf-8",
    )
    settings = load_worker_settings(config)
    assert "sk-worker-mcp-token" not in repr(settings)
    registry = ToolRegistry()
    stack, sources = await start_mcp_sources(settings, registry)
    try:
        assert [(x.server.name, x.state.status) for x in sources] == [("w", "connected")]
        assert sorted(registry.names()) == ["w__add", "w__sleep"]
        add, slow = await ToolDispatcher(registry).run_batch(
            [
                ToolCall("a", "w__add", '{"a": 1, "b": 2}'),
                ToolCall("s", "w__sleep", '{"seconds": 5}'),
            ]
        )
        assert add.output == "3" and slow.error_type == "timeout"
        assert len(processes_with(marker)) == 1
    finally:
        await stack.aclose()
    assert processes_with(marker) == []
    assert registry.names() == []


@pytest.mark.slow
async def test_a_worker_reports_its_mcp_servers_and_sigterm_leaves_no_orphan(
    tmp_path: Path,
) -> None:
    """`python -m runtime worker` with an `[[mcp]]` table: /readyz lists the server as
    connected, /metrics has its up gauge, and SIGTERM stops the worker and the server."""
    marker = f"marker-{uuid.uuid4().hex}"
    port = _free_port()
    config = tmp_path / "worker.toml"
    config.write_text(
        'protocol = "assistants"\n'
        "[worker]\n"
        "tools = []\n"
        "claim_wait_s = 0.2\n"
        "[queue]\n"
        'backend = "sqlite"\n'
        "[queue.sqlite]\n"
        f"path = {str(tmp_path / 'q.db')!r}\n"
        "[http]\n"
        "enabled = true\n"
        f"port = {port}\n"
        "[api]\n"
        'base_url = "http://127.0.0.1:9/v1"\n'
        'api_key = "sk-unused-0000"\n'
        "[[mcp]]\n"
        'name = "w"\n'
        f"command = {sys.executable!r}\n"
        f"args = [{str(SERVER_SCRIPT)!r}, 'stdio', {marker!r}]\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNTIME_", "OPENAI_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "worker", "--config", str(config)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = await _get_json_until(f"http://127.0.0.1:{port}/readyz", timeout_s=30)
        assert ready["mcp"] == {"w": "connected"}
        metrics = await _get_text(f"http://127.0.0.1:{port}/metrics")
        assert 'agent_worker_tool_source_up{server="w"} 1.0' in metrics
        assert len(processes_with(marker)) == 1
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        assert processes_with(marker) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _get_json_until(url: str, *, timeout_s: float) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    body: dict[str, object] = await resp.json()
                    if body.get("mcp"):
                        return body
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{url} did not answer in {timeout_s} s")
            await asyncio.sleep(0.2)


async def _get_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return await resp.text()
