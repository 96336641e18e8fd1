"""A real MCP server for the tests, written with the `mcp` package's server API.

Run as ``python mcp_test_server.py stdio`` (stdin/stdout) or ``python mcp_test_server.py http``
(streamable HTTP on 127.0.0.1, on the port given after ``http`` or an ephemeral one; the port
is printed as ``PORT <n>`` on stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("test-server")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str, times: int = 1) -> str:
    """Repeat a text."""
    return text * times


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then say so."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def fail(message: str) -> str:
    """Fail on purpose (an isError result), saying so on stderr."""
    print(f"failing on purpose: {message}", file=sys.stderr, flush=True)
    raise ToolError(message)


@server.tool()
async def crash(delay: float = 0.05) -> str:
    """Kill this server process in the middle of the call."""
    await asyncio.sleep(delay)
    os._exit(3)


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def spawn_child() -> int:
    """Start a long-lived child process that ignores this server's exit; return its pid."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return child.pid


@server.tool()
def picture() -> Image:
    """A tiny PNG."""
    return Image(data=b"\x89PNG\r\n\x1a\n" + b"\0" * 8, format="png")


@server.tool()
def tag(labels: dict[str, str]) -> str:
    """Free-form labels: a schema strict mode cannot express."""
    return ",".join(sorted(labels))


@server.tool()
def admin_reset() -> str:
    """A tool the tests deny."""
    return "reset"


def extra(word: str) -> str:
    """A tool that appears when `grow` is called."""
    return word.upper()


@server.tool()
async def grow(ctx: Context) -> str:
    """Add the `extra` tool and announce the change."""
    server.add_tool(extra)
    await ctx.notify_tools_changed()
    with contextlib.suppress(Exception):  # the legacy notification: not on every revision
        await ctx.session.send_tool_list_changed()
    return "grown"


def main() -> None:
    transport = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
