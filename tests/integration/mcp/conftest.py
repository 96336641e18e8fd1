"""Real MCP servers for the MCP tests: the stdio script, and the same over streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio

pytest.importorskip("mcp")

from tools import ToolCall
from tools.mcp import MCPServer

SERVER_SCRIPT = Path(__file__).with_name("mcp_test_server.py")


def stdio_server(name: str = "t", **options: Any) -> MCPServer:
    """A config that starts the test server as a subprocess talking over stdio."""
    return MCPServer(
        name=name, command=sys.executable, args=(str(SERVER_SCRIPT), "stdio"), **options
    )


def calls(*specs: tuple[str, dict[str, Any]]) -> list[ToolCall]:
    """One batch of calls, ids call_0, call_1, ..."""
    return [ToolCall(f"call_{i}", name, json.dumps(args)) for i, (name, args) in enumerate(specs)]


def error_of(output: str) -> dict[str, Any]:
    """The ``error`` object of an error output."""
    body: dict[str, Any] = json.loads(output)["error"]
    return body


def server_pids() -> set[int]:
    """Pids of the test-server processes that descend from this test process."""
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if str(SERVER_SCRIPT) in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


@dataclass
class HttpServer:
    """The test server over streamable HTTP in a subprocess on 127.0.0.1."""

    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


async def start_http_server(port: int = 0) -> HttpServer:
    """Start the HTTP server and wait until it reports its port (ephemeral unless given)."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), "http", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout=30)
    assert line.startswith("PORT "), line
    server = HttpServer(process, int(line.split()[1]))
    await _wait_accepting(server.port, timeout_s=30)
    return server


async def _wait_accepting(port: int, *, timeout_s: float) -> None:
    """The port is told before the server listens on it (a loaded machine shows the gap):
    wait until a connection is accepted."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


@pytest_asyncio.fixture(loop_scope="module")  # the MCP test modules share one loop
async def http_server() -> AsyncIterator[HttpServer]:
    server = await start_http_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_leftover_servers() -> Iterator[None]:
    """Every test leaves no test-server process of its own behind."""
    before = server_pids()
    yield
    leftover = server_pids() - before
    assert not leftover, f"MCP server processes left running: {leftover}"
