"""Lazy access to the optional ``mcp`` package (the ``mcp`` extra)."""

from __future__ import annotations

import importlib.util


class MCPNotInstalledError(ImportError):
    """The ``mcp`` package is missing: ``pip install 'agent-runtime[mcp]'``."""


def require_mcp() -> None:
    """Raise MCPNotInstalledError unless the ``mcp`` package can be imported."""
    if importlib.util.find_spec("mcp") is None:
        raise MCPNotInstalledError(
            "MCP servers need the optional 'mcp' package: pip install 'agent-runtime[mcp]'"
        )
