"""open_backend: the protocol is chosen by configuration; start() is protocol-neutral."""

from __future__ import annotations

import pytest

from runtime.assistants.client import AssistantsClient
from runtime.backends import open_backend
from runtime.config import Settings
from runtime.emulator import Emulator
from tools import ToolRegistry

API_KEY = "sk-test-backends"


async def test_responses_backend_runs_and_continues_a_conversation(
    emu: Emulator, registry: ToolRegistry
) -> None:
    """protocol=responses: start() runs tools, and thread_id continues from the last result."""
    settings = Settings(protocol="responses")
    async with open_backend(settings, registry, base_url=emu.base_url, api_key=API_KEY) as b:
        assert b.protocol == "responses"
        assert b.runner.backend.name == "responses"
        first = await b.start('/call add {"a": 1, "b": 2}', model="gpt-4o")
        assert first.ok and first.text == "add returned: 3"
        second = await b.start("and now?", previous=first.run_id)
        assert second.ok and second.run.previous_response_id == first.run_id
    assert b.client.closed


async def test_assistants_backend_needs_an_assistant_and_runs(
    emu: Emulator, registry: ToolRegistry
) -> None:
    """protocol=assistants: start() creates a thread (or continues one) and runs the assistant."""
    async with AssistantsClient(base_url=emu.base_url, api_key=API_KEY) as client:
        assistant = await client.create_assistant(model="gpt-4o")
    settings = Settings(protocol="assistants")
    async with open_backend(settings, registry, base_url=emu.base_url, api_key=API_KEY) as b:
        assert b.runner.backend.name == "assistants"
        with pytest.raises(ValueError, match="assistant id"):
            await b.start("hi")
        first = await b.start('/call add {"a": 2, "b": 2}', agent=assistant.id)
        assert first.ok and first.text == "add returned: 4" and first.thread_id
        second = await b.start("hello", agent=assistant.id, conversation=first.thread_id)
        assert second.ok and second.thread_id == first.thread_id
