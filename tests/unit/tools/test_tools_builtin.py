"""Built-in tools: clock with IANA zones, safe calculator (through the dispatcher too)."""

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools import ToolCall, ToolDispatcher, ToolRegistry
from tools.builtin import (
    CalculatorError,
    calculate,
    convert_time,
    get_current_time,
    register_builtins,
)


def test_register_builtins() -> None:
    """register_builtins adds the three tools with descriptions."""
    registry = ToolRegistry()
    register_builtins(registry)
    assert registry.names() == ["get_current_time", "convert_time", "calculate"]
    assert all(d["function"]["description"] for d in registry.definitions())


def test_current_time_in_zone() -> None:
    """get_current_time answers in the asked zone with a matching offset."""
    answer = get_current_time("Asia/Kolkata")
    assert answer["timezone"] == "Asia/Kolkata"
    assert answer["utc_offset"] == "+05:30"
    moment = datetime.fromisoformat(answer["datetime"])
    assert moment.utcoffset() == timedelta(hours=5, minutes=30)
    assert abs((moment - datetime.now(ZoneInfo("UTC"))).total_seconds()) < 5


def test_convert_time_across_dst() -> None:
    """convert_time honours each zone's daylight saving time on that date."""
    answer = convert_time("2026-03-29T14:30", "Europe/Paris", "America/New_York")
    assert answer["source"]["datetime"] == "2026-03-29T14:30:00+02:00"
    assert answer["source"]["abbreviation"] == "CEST"
    assert answer["target"]["datetime"] == "2026-03-29T08:30:00-04:00"
    assert answer["target"]["is_dst"] is True


def test_convert_time_of_day_only() -> None:
    """A bare time of day is taken as today in the source zone."""
    answer = convert_time("09:00", "UTC", "Asia/Tokyo")
    assert answer["target"]["datetime"].endswith("T18:00:00+09:00")


async def test_clock_errors_through_dispatcher() -> None:
    """Unknown zones and unreadable times are tool_error outputs with guidance."""
    registry = ToolRegistry()
    register_builtins(registry)
    zone, when = await ToolDispatcher(registry).run_batch(
        [
            ToolCall("c1", "get_current_time", '{"timezone": "Mars/Olympus"}'),
            ToolCall(
                "c2",
                "convert_time",
                '{"time": "noon", "from_timezone": "UTC", "to_timezone": "UTC"}',
            ),
        ]
    )
    assert json.loads(zone.output) == {
        "error": {
            "type": "tool_error",
            "message": "unknown time zone 'Mars/Olympus'; use an IANA name such as 'Europe/Paris' or 'UTC'",
            "tool": "get_current_time",
        }
    }
    assert json.loads(when.output)["error"]["message"].startswith("cannot read time 'noon'")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 * (3 + 4) ** 2", 98),
        ("7 // 2 + 7 % 2", 4),
        ("-3 + +1", -2),
        ("1 / 4", 0.25),
        ("sqrt(16) + abs(-2) + max(1, 5)", 11.0),
        ("round(pi, 2)", 3.14),
        ("2 ** 1000 // 2 ** 999", 2),
    ],
)
def test_calculator_values(expression: str, expected: float) -> None:
    """Arithmetic, constants and whitelisted functions evaluate correctly."""
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("2 ** 5000", "exponent too large (max 1000)"),
        ("9**999 * 9**999 * 9**999 * 9**999 * 9**999", "result too large (more than 4096 bits)"),
        ("1e308 * 10", "result too large"),
        ("__import__('os')", "unknown function '__import__'"),
        ("(1).__class__", "operation not allowed: Attribute"),
        ("'a' * 3", "only numbers are allowed, got 'a'"),
        ("True + 1", "only numbers are allowed, got True"),
        ("x + 1", "unknown name 'x'"),
        ("(1 +", "not a valid arithmetic expression"),
        ("sqrt(-1)", "math error: math domain error"),
        ("(-8) ** 0.5", "the result is a complex number"),
        ("1 + " * 200 + "1", "expression too long (max 500 characters)"),
        ("+".join(["1"] * 150), "expression too complex (max 200 syntax nodes)"),
        ("[1, 2]", "operation not allowed: List"),
        ("1 < 2", "operation not allowed: Compare"),
    ],
)
def test_calculator_rejections(expression: str, message: str) -> None:
    """Unsafe or impossible expressions raise CalculatorError with a clear message."""
    with pytest.raises(CalculatorError) as info:
        calculate(expression)
    assert str(info.value).startswith(message)


@settings(deadline=None)  # no per-example deadline: the test machine is shared
@given(st.text(alphabet="0123456789+-*/%().e ", max_size=60))
def test_calculator_only_numbers_or_calculator_errors(expression: str) -> None:
    """Any arithmetic-looking input gives a finite number or a CalculatorError, nothing else."""
    try:
        value = calculate(expression)
    except CalculatorError:
        return
    assert isinstance(value, int | float) and not isinstance(value, bool)


def test_calculator_refuses_huge_power_before_computing() -> None:
    """A big base to a large exponent is refused by size estimate, and 1e999 is too large."""
    with pytest.raises(CalculatorError, match="result too large"):
        calculate("(2 ** 1000) ** 1000")
    with pytest.raises(CalculatorError, match="result too large"):
        calculate("1e999")
