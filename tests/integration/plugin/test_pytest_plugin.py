"""The installed pytest plugin (runtime.testing) in a user's own test file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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


@pytest.fixture(scope="module")
def user_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """A user's project with the two test files, run once by ``python -m pytest`` in strict
    asyncio mode (its own process, no conftest: the fixtures come from the installed plugin)."""
    project = tmp_path_factory.mktemp("user_project")
    (project / "test_user.py").write_text(USER_TEST)
    (project / "test_fault.py").write_text(FAULT_TEST)
    argv = [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider"]
    env = {k: v for k, v in os.environ.items() if k not in {"PYTEST_ADDOPTS", "PYTEST_PLUGINS"}}
    return subprocess.run(
        [*argv, "-o", "asyncio_mode=strict", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _outcome(run: subprocess.CompletedProcess[str], test: str) -> str:
    """PASSED, FAILED or ERROR of one test of the user's run ("missing" when not reported)."""
    for line in run.stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in {"PASSED", "FAILED", "ERROR"} and words[1] == test:
            return words[0]
    return "missing"


def test_user_test_file_uses_plugin_fixtures(user_run: subprocess.CompletedProcess[str]) -> None:
    """A user's test in strict asyncio mode gets a scripted emulator and a client from the plugin."""
    assert _outcome(user_run, "test_user.py::test_scripted_reply") == "PASSED", user_run.stdout


def test_plugin_fixture_injects_faults(user_run: subprocess.CompletedProcess[str]) -> None:
    """``runtime_emulator.inject`` reaches the client through the plugin's fixtures."""
    assert _outcome(user_run, "test_fault.py::test_fault") == "PASSED", user_run.stdout


def test_plugin_registered_as_entry_point() -> None:
    """The plugin is registered under pytest11, so users need no import or conftest."""
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="pytest11")}
    assert "runtime.testing" in names
