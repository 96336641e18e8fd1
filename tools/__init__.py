"""Function tools: register plain Python functions, run a model's tool calls safely.

Example:
    >>> from tools import ToolRegistry
    >>> registry = ToolRegistry()
    >>> @registry.tool
    ... def add(a: int, b: int) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> registry.definitions()[0]["function"]["name"]
    'add'
"""

from tools.calls import ToolCall, ToolCallResult
from tools.context import ToolContext
from tools.dispatch import ToolDispatcher
from tools.errors import ToolError, ToolRegistrationError
from tools.quiet import install_library_defaults as _install_library_defaults
from tools.registry import Tool, ToolRegistry, default_registry, tool

_install_library_defaults()

__all__ = [
    "Tool",
    "ToolCall",
    "ToolCallResult",
    "ToolContext",
    "ToolDispatcher",
    "ToolError",
    "ToolRegistrationError",
    "ToolRegistry",
    "default_registry",
    "tool",
]
