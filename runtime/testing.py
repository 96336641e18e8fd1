"""Pytest fixtures for testing your own tools and runs against the local emulator.

Installing agent-runtime registers this module as a pytest plugin (entry point ``pytest11``), so
the fixtures are available in any test without an import::

    from runtime import Orchestrator

    async def test_weather(runtime_scripted, runtime_assistants_client, registry):
        runtime_scripted([{"type": "text", "text": "Sunny."}])
        ...

Fixtures (all function-scoped; the names carry a ``runtime_`` prefix so they never clash with
your own ``emulator`` or ``client`` fixtures):

* ``runtime_emulator``: a started :class:`~runtime.emulator.Emulator` on a loopback port; use
  ``runtime_emulator.inject("500", path=r"/runs$")`` for faults and
  ``runtime_emulator.set_scenario(...)`` for scripted turns.
* ``runtime_assistants_client``: an :class:`~runtime.AssistantsClient` of that emulator.
* ``runtime_responses_client``: a :class:`~runtime.responses.ResponsesClient` of that emulator.
* ``runtime_scripted``: a function taking a list of turns (the ``[[turns]]`` tables of a scenario
  file, as dicts) that scripts the emulator's model; returns the :class:`Scenario`.

The async fixtures need pytest-asyncio: with ``asyncio_mode = "auto"`` nothing else is needed;
otherwise mark each test ``@pytest.mark.asyncio``. Without pytest-asyncio installed the plugin
loads but its async fixtures cannot be used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest

from runtime.assistants.client import AssistantsClient
from runtime.emulator import Emulator, Scenario
from runtime.responses.client import ResponsesClient

try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover  (pytest still starts; the async fixtures need the plugin)
    _async_fixture = pytest.fixture  # type: ignore[assignment]

# Any non-empty key is accepted by an emulator started without ``api_key``.
TEST_API_KEY = "sk-emulator-test"

ScriptTurns = Callable[[Sequence[Mapping[str, Any]]], Scenario]


@_async_fixture
async def runtime_emulator() -> AsyncIterator[Emulator]:
    """A started emulator on a loopback port, closed when the test ends."""
    async with Emulator() as emulator:
        yield emulator


@_async_fixture
async def runtime_assistants_client(
    runtime_emulator: Emulator,
) -> AsyncIterator[AssistantsClient]:
    """An Assistants API client of ``runtime_emulator``."""
    async with AssistantsClient(base_url=runtime_emulator.base_url, api_key=TEST_API_KEY) as c:
        yield c


@_async_fixture
async def runtime_responses_client(
    runtime_emulator: Emulator,
) -> AsyncIterator[ResponsesClient]:
    """A Responses API client of ``runtime_emulator``."""
    async with ResponsesClient(base_url=runtime_emulator.base_url, api_key=TEST_API_KEY) as c:
        yield c


@pytest.fixture
def runtime_scripted(runtime_emulator: Emulator) -> ScriptTurns:
    """A function that scripts the emulator's model turns (scenario ``[[turns]]`` as dicts)."""

    def script(turns: Sequence[Mapping[str, Any]], *, then: str = "default") -> Scenario:
        scenario = Scenario.from_dict({"turns": [dict(t) for t in turns], "then": then})
        runtime_emulator.set_scenario(scenario)
        return scenario

    return script
