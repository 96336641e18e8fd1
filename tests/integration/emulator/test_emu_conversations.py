"""The Conversations API of the emulator and ``conversation`` on responses, via the openai SDK."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from runtime.emulator import Emulator

ADD_TOOL = {
    "type": "function",
    "name": "add",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}


async def test_conversation_create_retrieve_update_delete(client: Any) -> None:
    """create (with items and metadata), retrieve, update metadata and delete round-trip."""
    conv = await client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "hello"}], metadata={"k": "v"}
    )
    assert conv.object == "conversation" and conv.id.startswith("conv_")
    assert (await client.conversations.retrieve(conv.id)).metadata == {"k": "v"}
    updated = await client.conversations.update(conv.id, metadata={"k": "w"})
    assert updated.metadata == {"k": "w"}
    deleted = await client.conversations.delete(conv.id)
    assert deleted.deleted is True and deleted.id == conv.id
    assert deleted.object == "conversation.deleted"
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(conv.id)


async def test_conversation_items_create_list_retrieve_delete(client: Any) -> None:
    """items.create appends; list pages with limit/order/after; retrieve and delete one item."""
    conv = await client.conversations.create()
    created = await client.conversations.items.create(
        conv.id,
        items=[
            {"type": "message", "role": "user", "content": "one"},
            {"type": "message", "role": "assistant", "content": "two"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "3"}]},
        ],
    )
    ids = [item.id for item in created.data]
    assert len(ids) == 3 and created.first_id == ids[0] and created.last_id == ids[2]
    first = await client.conversations.items.list(conv.id, limit=2, order="asc")
    assert [i.id for i in first.data] == ids[:2] and first.has_more is True
    rest = await client.conversations.items.list(conv.id, limit=2, order="asc", after=first.last_id)
    assert [i.id for i in rest.data] == ids[2:] and rest.has_more is False
    newest = await client.conversations.items.list(conv.id)
    assert [i.id for i in newest.data] == ids[::-1]
    item = await client.conversations.items.retrieve(ids[1], conversation_id=conv.id)
    assert item.role == "assistant" and item.content[0].text == "two"
    after_delete = await client.conversations.items.delete(ids[1], conversation_id=conv.id)
    assert after_delete.id == conv.id
    remaining = await client.conversations.items.list(conv.id, order="asc")
    assert [i.id for i in remaining.data] == [ids[0], ids[2]]
    with pytest.raises(openai.NotFoundError):
        await client.conversations.items.retrieve(ids[1], conversation_id=conv.id)


async def test_responses_in_a_conversation_see_and_extend_it(client: Any) -> None:
    """A response with conversation= reads earlier items and appends its input and output:
    /call lines, tool outputs and the reply quoting work across turns."""
    conv = await client.conversations.create()
    first = await client.responses.create(
        model="gpt-4o",
        conversation=conv.id,
        input='/call add {"a": 2, "b": 3}',
        tools=[ADD_TOOL],
    )
    assert first.conversation.id == conv.id
    (call,) = [o for o in first.output if o.type == "function_call"]
    second = await client.responses.create(
        model="gpt-4o",
        conversation={"id": conv.id},
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "5"}],
        tools=[ADD_TOOL],
    )
    assert second.output_text == "add returned: 5"
    items = await client.conversations.items.list(conv.id, order="asc")
    assert [i.type for i in items.data] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert items.data[-1].content[0].text == "add returned: 5"
    third = await client.responses.create(model="gpt-4o", conversation=conv.id, input="and now?")
    assert third.output_text == "You said: and now?"
    assert len((await client.conversations.items.list(conv.id)).data) == 6


async def test_conversation_with_an_unanswered_call_needs_its_output(client: Any) -> None:
    """A conversation whose last function call has no output refuses a response without it."""
    conv = await client.conversations.create()
    await client.responses.create(
        model="gpt-4o", conversation=conv.id, input="/call add {}", tools=[ADD_TOOL]
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="gpt-4o", conversation=conv.id, input="hi")
    assert "No tool output found" in caught.value.message


async def test_conversation_and_previous_response_id_are_exclusive(client: Any) -> None:
    """conversation together with previous_response_id is a 400, as the service answers."""
    conv = await client.conversations.create()
    first = await client.responses.create(model="gpt-4o", input="hi")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(
            model="gpt-4o", input="again", conversation=conv.id, previous_response_id=first.id
        )
    assert caught.value.code == "mutually_exclusive_parameters"


async def test_unknown_conversation_is_404(client: Any) -> None:
    """A response naming an unknown conversation is a NotFoundError."""
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="gpt-4o", input="hi", conversation="conv_nope")


@pytest.mark.parametrize("style", ["api-version", "v1"])
async def test_azure_routes_serve_conversations(
    emu: Emulator, session: aiohttp.ClientSession, style: str
) -> None:
    """Azure-style paths: /openai/conversations?api-version=V and /openai/v1/conversations."""
    base, params = (
        (emu.url + "/openai", {"api-version": "2025-04-01-preview"})
        if style == "api-version"
        else (emu.url + "/openai/v1", {})
    )
    headers = {"api-key": "azure-key"}
    async with session.post(
        base + "/conversations", json={"metadata": {"a": "b"}}, params=params, headers=headers
    ) as resp:
        assert resp.status == 200, await resp.text()
        conv = await resp.json()
    async with session.post(
        base + "/responses",
        json={"model": "gpt-4o", "input": "hi", "conversation": conv["id"]},
        params=params,
        headers=headers,
    ) as resp:
        assert resp.status == 200, await resp.text()
    async with session.get(
        f"{base}/conversations/{conv['id']}/items", params=params, headers=headers
    ) as resp:
        items = await resp.json()
    assert [i["role"] for i in items["data"]] == ["assistant", "user"]


async def test_azure_v1_client_reaches_responses(emu: Emulator) -> None:
    """The SDK pointed at {endpoint}/openai/v1 (Azure's v1 API) creates and lists responses."""
    async with openai.AsyncOpenAI(
        base_url=emu.url + "/openai/v1", api_key="azure-key", max_retries=0
    ) as azure:
        response = await azure.responses.create(model="gpt-4o", input="hi")
        items = await azure.responses.input_items.list(response.id)
        conv = await azure.conversations.create()
    assert response.output_text == "You said: hi" and len(items.data) == 1
    assert conv.id.startswith("conv_")
