"""The library is silent unless the application configures logging (stdlib conventions)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import pytest

from .conftest import Run

PROGRAM = """
import asyncio, logging, sys
{setup}
from runtime import AssistantsClient, Orchestrator
from runtime.emulator import Emulator
from tools import ToolRegistry

registry = ToolRegistry()

@registry.tool
def add(a: int, b: int) -> int:
    '''Add two integers.'''
    return a + b

async def main() -> None:
    async with Emulator() as emu, AssistantsClient(base_url=emu.base_url, api_key="sk-local-000111") as c:
        assistant = await c.create_assistant(model="gpt-4o", tools=registry.definitions())
        result = await Orchestrator(c, registry).create_thread_and_run(
            assistant.id, messages=[{{"role": "user", "content": '/call add {{"a": 1, "b": 2}}'}}]
        )
        assert result.ok, result

asyncio.run(main())
"""


SETUPS = {
    "nothing": "",
    "standard logging": "logging.basicConfig(level='INFO', stream=sys.stderr)",
}


@pytest.fixture(scope="module")
def programs(batch: Callable[..., Run]) -> dict[str, Run]:
    """The embedding program under each logging set-up, both started at once (independent)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    return {
        name: batch([sys.executable, "-c", PROGRAM.format(setup=setup)], env=env)
        for name, setup in SETUPS.items()
    }


def test_an_embedding_program_that_configures_nothing_prints_nothing(
    programs: dict[str, Run],
) -> None:
    """A full tool round through the emulator writes nothing to stdout or stderr."""
    done = programs["nothing"].result()
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_the_application_decides_with_standard_logging(programs: dict[str, Run]) -> None:
    """logging.basicConfig(INFO) shows the runtime's events on the application's handler."""
    done = programs["standard logging"].result()
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "tool.finished" in done.stderr and "tool='add'" in done.stderr
