"""The official openai SDK, as an outside client, against the emulator's /v1/responses."""

from __future__ import annotations

import json

from openai import AsyncAzureOpenAI, AsyncOpenAI, BadRequestError

from runtime.emulator import Emulator

API_KEY = "sk-test-sdk"
ADD_TOOL = {
    "type": "function",
    "name": "add",
    "description": "Add two integers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}


async def test_sdk_streams_text_with_the_documented_event_order(emu: Emulator) -> None:
    """responses.create(stream=True) yields created .. deltas .. completed, in order."""
    async with AsyncOpenAI(base_url=emu.base_url, api_key=API_KEY, max_retries=0) as client:
        stream = await client.responses.create(model="gpt-4o", input="hello there", stream=True)
        events = [event async for event in stream]
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert types.index("response.output_item.added") < types.index("response.output_text.delta")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert text == final.output_text == "You said: hello there"
    assert final.status == "completed" and final.usage is not None


async def test_sdk_function_call_and_follow_up_with_previous_response_id(emu: Emulator) -> None:
    """A streamed function call is answered by a follow-up carrying function_call_output."""
    async with AsyncOpenAI(base_url=emu.base_url, api_key=API_KEY, max_retries=0) as client:
        stream = await client.responses.create(
            model="gpt-4o",
            input='/call add {"a": 2, "b": 3}',
            tools=[ADD_TOOL],
            stream=True,
        )
        events = [event async for event in stream]
        arguments = "".join(
            e.delta for e in events if e.type == "response.function_call_arguments.delta"
        )
        first = events[-1].response
        (call,) = [item for item in first.output if item.type == "function_call"]
        assert call.name == "add" and json.loads(call.arguments) == {"a": 2, "b": 3}
        assert arguments == call.arguments
        follow = await client.responses.create(
            model="gpt-4o",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "5"}],
            tools=[ADD_TOOL],
            stream=True,
        )
        final = [event async for event in follow][-1].response
        retrieved = await client.responses.retrieve(final.id)
    assert final.status == "completed" and final.previous_response_id == first.id
    assert final.output_text == "add returned: 5"
    assert retrieved.output_text == final.output_text


async def test_sdk_follow_up_missing_an_output_is_rejected(emu: Emulator) -> None:
    """Every function call of the previous response needs its output (400 otherwise)."""
    async with AsyncOpenAI(base_url=emu.base_url, api_key=API_KEY, max_retries=0) as client:
        first = await client.responses.create(
            model="gpt-4o", input='/call add {"a": 1, "b": 1}\n/call add {"a": 2, "b": 2}'
        )
        calls = [item for item in first.output if item.type == "function_call"]
        assert len(calls) == 2
        try:
            await client.responses.create(
                model="gpt-4o",
                previous_response_id=first.id,
                input=[
                    {"type": "function_call_output", "call_id": calls[0].call_id, "output": "2"}
                ],
            )
        except BadRequestError as exc:
            assert calls[1].call_id in exc.message
        else:
            raise AssertionError("a partial batch of outputs was accepted")


async def test_sdk_azure_style(emu: Emulator) -> None:
    """AsyncAzureOpenAI (api-key header, api-version query) reaches /openai/responses."""
    async with AsyncAzureOpenAI(
        azure_endpoint=emu.azure_endpoint,
        api_version="2025-04-01-preview",
        api_key=API_KEY,
        max_retries=0,
    ) as client:
        response = await client.responses.create(model="gpt-4o", input="hi azure")
    assert response.output_text == "You said: hi azure"
    assert any(r["path"] == "/openai/responses" for r in emu.requests)


async def test_sdk_stream_helper_accumulates_the_final_response(emu: Emulator) -> None:
    """The SDK's responses.stream() helper rebuilds the same final response from our events."""
    client = AsyncOpenAI(base_url=emu.base_url, api_key=API_KEY, max_retries=0)
    async with client, client.responses.stream(model="gpt-4o", input="hello helper") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text == "You said: hello helper"
