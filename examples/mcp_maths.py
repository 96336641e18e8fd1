"""An MCP server of your own, and a run that uses its tools next to local ones.

``python examples/mcp_maths.py --stdio`` serves the ``add`` and ``multiply`` tools over stdio
(the shape of any small MCP server: decorate functions, run the transport). Without
``--stdio`` the script starts itself as that server, registers its tools as ``maths__add`` and
``maths__multiply`` beside a local tool, and runs one Responses run on the embedded emulator
that calls all three concurrently. From the command line the same server plugs into any run:

    python -m runtime run --mcp "maths=python examples/mcp_maths.py --stdio" \\
        '/call maths__add {"a": 2, "b": 3}'
"""

import asyncio
import sys

from runtime.emulator import Emulator
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from tools import ToolRegistry
from tools.mcp import MCPServer, MCPToolSource


def serve() -> None:
    """Run the MCP server over stdio until the client closes it."""
    from mcp.server.mcpserver import MCPServer as Server

    server = Server("maths")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    server.run("stdio")


registry = ToolRegistry()


@registry.tool
async def negate(n: int) -> int:
    """A local tool beside the MCP ones."""
    return -n


REQUEST = """/call maths__add {"a": 2, "b": 3}
/call maths__multiply {"a": 6, "b": 7}
/call negate {"n": 5}"""


async def main() -> None:
    server = MCPServer.from_spec(f"maths={sys.executable} {__file__} --stdio")
    async with (
        Emulator() as emu,
        ResponsesClient(base_url=emu.base_url, api_key="sk-local") as client,
        MCPToolSource(server, registry),
    ):
        print("tools:", ", ".join(registry.names()))
        result = await ResponsesOrchestrator(client, registry).run(REQUEST, model="gpt-4o")
        for call in result.tool_calls:
            print(f"{call.name} -> {call.output}")
        print(result.status)


if __name__ == "__main__":
    if "--stdio" in sys.argv:
        serve()
    else:
        asyncio.run(main())
