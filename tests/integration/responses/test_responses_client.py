"""ResponsesClient endpoints, auth styles, shared sessions and typed errors on the emulator."""

from __future__ import annotations

import asyncio

import pytest

from runtime.assistants.client import AssistantsClient
from runtime.config import Settings
from runtime.emulator import Emulator, Scenario
from runtime.errors import AuthenticationError, ClientClosedError, NotFoundError
from runtime.responses import ResponsesClient

API_KEY = "sk-test-client-key-1234"


async def test_create_retrieve_and_delete(rc: ResponsesClient) -> None:
    """A non-streamed response is stored, retrievable with a polling hint, then deletable."""
    created = await rc.create(model="gpt-4o", input="hi", metadata={"job": "1"})
    assert created.status == "completed" and created.output_text == "You said: hi"
    again = await rc.retrieve(created.id)
    assert again.id == created.id and again.metadata == {"job": "1"}
    assert again.response_meta is not None and again.response_meta.poll_after_ms == 100
    assert again.response_meta.request_id is not None
    assert (await rc.delete(created.id)).deleted
    with pytest.raises(NotFoundError):
        await rc.retrieve(created.id)


async def test_background_response_can_be_polled_and_cancelled(
    emu: Emulator, rc: ResponsesClient
) -> None:
    """background=true answers queued at once; cancel moves it to cancelled."""
    emu.set_scenario(Scenario.from_dict({"turns": [{"text": "x", "delay_ms": 3000}]}))
    queued = await rc.create(model="gpt-4o", input="hi", background=True)
    assert queued.status == "queued" and queued.background is True
    await asyncio.sleep(0.05)
    assert (await rc.retrieve(queued.id)).status == "in_progress"
    cancelled = await rc.cancel(queued.id)
    assert cancelled.status == "cancelled"
    assert (await rc.cancel(queued.id)).status == "cancelled"  # idempotent
    assert (await rc.retrieve(queued.id)).status == "cancelled"


async def test_azure_style_uses_api_key_header_and_api_version(emu: Emulator) -> None:
    """Azure style reaches /openai/responses with api-version; a wrong key is a typed 401."""
    async with ResponsesClient(azure_endpoint=emu.azure_endpoint, api_key=API_KEY) as rc:
        assert rc.is_azure and rc.api_version == "2025-04-01-preview"
        stream = await rc.create(model="gpt-4o", input="hi", stream=True)
        assert (await stream.final_response()).output_text == "You said: hi"
    assert emu.requests[-1]["path"] == "/openai/responses"
    async with Emulator(api_key=API_KEY) as strict:
        bad = ResponsesClient(azure_endpoint=strict.azure_endpoint, api_key="wrong")
        async with bad:
            with pytest.raises(AuthenticationError) as caught:
                await bad.create(model="gpt-4o", input="hi")
    assert caught.value.status == 401 and "wrong" not in str(caught.value)


async def test_sharing_reuses_the_assistants_session(emu: Emulator) -> None:
    """ResponsesClient.sharing() rides on the AssistantsClient's transport and leaves it open."""
    async with AssistantsClient(base_url=emu.base_url, api_key=API_KEY) as assistants:
        shared = ResponsesClient.sharing(assistants)
        async with shared:
            response = await shared.create(model="gpt-4o", input="shared")
            assert response.output_text == "You said: shared"
            assert shared._transport is assistants._transport
            assert "OpenAI-Beta" not in shared._headers
        assistant = await assistants.create_assistant(model="gpt-4o")  # still usable
        assert assistant.id.startswith("asst_")
    assert shared.closed and API_KEY not in repr(shared)
    with pytest.raises(ClientClosedError):
        await shared.retrieve(response.id)


async def test_from_settings_picks_style_and_retry(emu: Emulator) -> None:
    """from_settings builds an OpenAI- or Azure-style client with the configured retries."""
    settings = Settings.model_validate(
        {
            "protocol": "responses",
            "api": {"base_url": emu.base_url, "api_key": API_KEY},
            "retry": {"max_attempts": 2},
        }
    )
    async with ResponsesClient.from_settings(settings) as rc:
        assert rc.base_url == emu.base_url and rc.api_version is None
        assert rc.retry.max_attempts == 2
        emu.inject("503", method="GET", times=1)
        created = await rc.create(model="gpt-4o", input="hi")
        assert (await rc.retrieve(created.id)).id == created.id
        assert rc.retries == 1
    azure = Settings.model_validate(
        {"api": {"azure_endpoint": emu.azure_endpoint, "azure_api_key": API_KEY}}
    )
    async with ResponsesClient.from_settings(azure) as rc:
        assert rc.is_azure and rc.api_version == "2025-04-01-preview"
        assert (await rc.create(model="gpt-4o", input="hi")).status == "completed"
