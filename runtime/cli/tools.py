"""Tools for ``python -m runtime run``: modules or ``.py`` files gathered into one registry,
and MCP servers (``--mcp``) whose tools join it."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import ModuleType

from tools import ToolRegistry, default_registry
from tools.mcp import MCPServer, MCPToolSource, require_mcp


def _import_tools_module(spec: str) -> ModuleType:
    """Import ``package.module`` or a ``path/to/file.py``."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise ImportError(f"no such tools file: {spec} ({path})")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load tools from {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `python -m` users expect their cwd modules
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is not None and spec.split(".")[0] == exc.name.split(".")[0]:
            raise ImportError(f"no such tools module: {spec} ({exc})") from exc
        raise


def load_tool_registry(modules: Sequence[str], *, builtins: bool = False) -> ToolRegistry:
    """Import tool modules and gather their tools into one registry.

    A module contributes its ``registry`` attribute when it is a :class:`ToolRegistry`,
    else whatever its ``@tool`` functions registered on :data:`tools.default_registry`.

    Args:
        modules: module names (``myapp.tools``) or ``.py`` paths.
        builtins: add the builtin clock and calculator.

    Returns:
        A new registry (a name registered twice keeps its first tool).
    """
    sources: list[ToolRegistry] = []
    for spec in modules:
        module = _import_tools_module(spec)
        own = getattr(module, "registry", None)
        sources.append(own if isinstance(own, ToolRegistry) else default_registry)
    combined = ToolRegistry()
    if builtins:
        from tools.builtin import register_builtins

        register_builtins(combined)
    for source in sources:
        for item in source:
            if item.name not in combined:
                combined.add(item)
    return combined


def parse_mcp_specs(specs: Sequence[str]) -> list[MCPServer]:
    """Parse ``--mcp`` values: ``NAME=COMMAND [ARG ...]`` (stdio) or ``NAME=http(s)://URL``.

    Raises:
        MCPConfigError: a value is malformed; MCPNotInstalledError: the ``mcp`` extra is
            missing.
    """
    servers = [MCPServer.from_spec(spec) for spec in specs]
    if servers:
        require_mcp()
    return servers


@contextlib.asynccontextmanager
async def mcp_tools(servers: Sequence[MCPServer], registry: ToolRegistry) -> AsyncIterator[None]:
    """Run the MCP servers' tools in registry for the duration of the block."""
    async with contextlib.AsyncExitStack() as stack:
        await open_mcp_sources(stack, servers, registry)
        yield


async def open_mcp_sources(
    stack: contextlib.AsyncExitStack, servers: Sequence[MCPServer], registry: ToolRegistry
) -> list[MCPToolSource]:
    """Start each MCP server and register its tools; the stack stops them on exit.

    Raises:
        ToolUnavailableError: a server did not start.
    """
    sources = []
    for server in servers:  # one after the other: a failed start leaves nothing half-open
        sources.append(await stack.enter_async_context(MCPToolSource(server, registry)))
    return sources
