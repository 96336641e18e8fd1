"""The installed pytest plugin (runtime.testing) in a user's own test file."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TEST = """
import pytest
from runtime.responses import ResponsesOrchestrator
from tools import ToolRegistry

@pytest.mark.asyncio
async def test_scripted_reply(runtime_scripted, runtime_responses_client):
    runtime_scripted([{"type": "text", "text": "Sunny in Paris."}])
    result = await ResponsesOrchestrator(runtime_responses_client, ToolRegistry()).run("Weather?")
    assert result.text == "Sunny in Paris."
"""

FAULT_TEST = """
import pytest
from runtime import ServerError

@pytest.mark.asyncio
async def test_fault(runtime_emulator, runtime_assistants_client):
    runtime_emulator.inject("500", path=r"/assistants$", times=10)
    with pytest.raises(ServerError):
        await runtime_assistants_client.create_assistant(model="gpt-4o")
    assert runtime_emulator.requests, "the faulted request reached the emulator"
"""


def test_user_test_file_uses_plugin_fixtures(pytester: pytest.Pytester) -> None:
    """A user's test in strict asyncio mode gets a scripted emulator and a client from the plugin."""
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=1)


def test_plugin_fixture_injects_faults(pytester: pytest.Pytester) -> None:
    """``runtime_emulator.inject`` reaches the client through the plugin's fixtures."""
    pytester.makepyfile(test_fault=FAULT_TEST)
    result = pytester.runpytest_subprocess("-o", "asyncio_mode=strict", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_plugin_registered_as_entry_point() -> None:
    """The plugin is registered under pytest11, so users need no import or conftest."""
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="pytest11")}
    assert "runtime.testing" in names
