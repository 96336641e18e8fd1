"""Example tools of ``python -m runtime demo`` (and of the examples): fake data, real concurrency.

* ``get_weather`` is async and sleeps a little (a network call stand-in) before answering
  with deterministic made-up weather;
* ``city_population`` is a plain sync function that blocks briefly (it runs in a worker
  thread, so it does not stall the event loop);
* the builtin clock (``get_current_time``, ``convert_time``) and ``calculate``;
* ``book_table`` changes the world (``effects="write"``) and needs a person's approval
  (``needs_approval=True``): the run pauses until someone says yes or no.

:data:`DEMO_REQUEST` asks the emulator's scripted model for all of them at once: each
``/call NAME {json}`` line of the last user message becomes one tool call of a single
parallel round, and the reply quotes every output.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, Literal

from tools import ToolRegistry
from tools.builtin import register_builtins

__all__ = [
    "DEMO_BOOKING",
    "DEMO_FOLLOW_UP",
    "DEMO_REQUEST",
    "book_table",
    "build_demo_registry",
    "city_population",
    "get_weather",
]

_CONDITIONS = ("sunny", "partly cloudy", "overcast", "light rain", "windy", "clear")

# Rounded figures, good enough for a demo; the point is the sync tool, not the data.
_POPULATIONS = {
    "paris": 2_102_650,
    "tokyo": 14_094_034,
    "berlin": 3_878_100,
    "lagos": 15_388_000,
    "lima": 10_151_200,
}

DEMO_REQUEST = """\
What's the weather in Paris and Tokyo, the time in Tokyo, how many people live in Paris,
and what is 2102650 / 105.4?
/call get_weather {"city": "Paris"}
/call get_weather {"city": "Tokyo", "unit": "f"}
/call get_current_time {"timezone": "Asia/Tokyo"}
/call city_population {"city": "Paris"}
/call calculate {"expression": "round(2102650 / 105.4, 1)"}"""
"""The demo's first user message: five tool calls in one parallel round."""

DEMO_BOOKING = """\
Book a table for 2 at Chez Paul tonight at 20:00.
/call book_table {"restaurant": "Chez Paul", "people": 2, "time": "20:00"}"""
"""The demo's second user message: a call that waits for a person's approval."""

DEMO_FOLLOW_UP = "Thanks, that is all I needed."
"""The demo's second user message: a plain text turn on the same conversation."""


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.lower().encode()).digest()[:4], "big")


async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, Any]:
    """Current weather in a city (made-up, deterministic demo data).

    Args:
        city: city name, e.g. 'Paris'.
        unit: temperature unit, 'c' or 'f'.
    """
    seed = _digest(city)
    await asyncio.sleep(0.1 + (seed % 5) / 10)  # stands in for a slow HTTP call
    celsius = (seed % 30) - 2
    temperature = celsius if unit == "c" else round(celsius * 9 / 5 + 32)
    return {
        "city": city,
        "temperature": temperature,
        "unit": unit,
        "conditions": _CONDITIONS[seed % len(_CONDITIONS)],
    }


def city_population(city: str) -> dict[str, Any]:
    """Population of a city (a blocking lookup; runs in a worker thread).

    Args:
        city: city name, e.g. 'Paris'.
    """
    time.sleep(0.25)  # stands in for a blocking database driver
    population = _POPULATIONS.get(city.strip().lower())
    if population is None:
        return {"city": city, "population": None, "note": "not in the demo table"}
    return {"city": city, "population": population}


async def book_table(restaurant: str, people: int, time: str) -> dict[str, Any]:
    """Book a table (a demo write: nothing is booked anywhere).

    Args:
        restaurant: the restaurant's name.
        people: how many guests.
        time: when, e.g. '20:00'.
    """
    await asyncio.sleep(0.1)  # stands in for the booking service
    reference = f"BK-{_digest(restaurant + time) % 100_000:05d}"
    return {"restaurant": restaurant, "people": people, "time": time, "reference": reference}


def build_demo_registry() -> ToolRegistry:
    """A registry with the demo tools and the builtin clock and calculator.

    Returns:
        A new registry: get_weather, city_population, book_table, get_current_time,
        convert_time, calculate.
    """
    registry = ToolRegistry()
    registry.register(get_weather, timeout_s=10.0)
    registry.register(city_population, timeout_s=10.0)
    registry.register(book_table, timeout_s=10.0, needs_approval=True, effects="write")
    register_builtins(registry)
    return registry
