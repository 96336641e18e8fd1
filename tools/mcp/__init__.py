"""MCP servers as tool sources: their tools join a ToolRegistry next to local tools.

Needs the optional ``mcp`` package (``pip install 'agent-runtime[mcp]'``); importing this
module does not import it. Setup::

    registry = ToolRegistry()  # your local @registry.tool functions, if any
    async with MCPToolSource(MCPServer.from_spec("files=python -m files_server"), registry):
        result = await Orchestrator(client, registry).run(thread_id, assistant_id)

The server's tools are registered as ``files__<tool>`` (see ``MCPServer.prefix``) and run
through the same dispatcher as local tools: timeouts, deadlines, at-most-once per call id,
concurrency, and typed error outputs (``tool_error`` for an ``isError`` result or a rejected
request, ``tool_unavailable`` for a server that is down or dropped the call, ``timeout``).
Leaving the block stops the server it started and unregisters its tools.
"""

from tools.errors import ToolUnavailableError
from tools.mcp._sdk import MCPNotInstalledError, require_mcp
from tools.mcp.config import MCPConfigError, MCPServer
from tools.mcp.source import MCPServerState, MCPToolSource

__all__ = [
    "MCPConfigError",
    "MCPNotInstalledError",
    "MCPServer",
    "MCPServerState",
    "MCPToolSource",
    "ToolUnavailableError",
    "require_mcp",
]
