"""Small ready tools: a clock with IANA time zones and a safe calculator.

Register them on a registry with ``register_builtins(registry)``.
"""

from __future__ import annotations

from tools.builtin.calculator import CalculatorError, calculate
from tools.builtin.clock import convert_time, get_current_time
from tools.registry import Tool, ToolRegistry

__all__ = [
    "CalculatorError",
    "calculate",
    "convert_time",
    "get_current_time",
    "register_builtins",
]


def register_builtins(registry: ToolRegistry) -> list[Tool]:
    """Register get_current_time, convert_time and calculate on registry.

    Args:
        registry: the registry to add them to.

    Returns:
        The registered tools.
    """
    return [
        registry.register(get_current_time, timeout_s=5.0),
        registry.register(convert_time, timeout_s=5.0),
        registry.register(calculate, timeout_s=5.0),
    ]
