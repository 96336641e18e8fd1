"""Conversations as the Threads successor: a run in a new conversation, continued by its id."""

from __future__ import annotations

from typing import Any

from runtime.backends import open_backend
from runtime.config import Settings
from runtime.core.hooks import EventHandler
from runtime.core.policy import RunPolicy
from runtime.emulator import Emulator
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from tools import ToolRegistry

FAST = RunPolicy(poll_interval_s=0.02, max_poll_interval_s=0.05)


class Conversations(EventHandler):
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def on_conversation(self, conversation_id: str) -> None:
        self.ids.append(conversation_id)


def posts(emu: Emulator) -> list[dict[str, Any]]:
    return [
        r["json"] for r in emu.requests if r["method"] == "POST" and r["path"] == "/v1/responses"
    ]


async def test_a_run_lives_in_a_new_conversation_and_continues_by_its_id(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """The first run creates a conversation (reported before the run starts); the tool round
    and the next run go in it, with no previous_response_id; its items hold everything."""
    seen = Conversations()
    orch = ResponsesOrchestrator(rc, registry, policy=FAST, conversations=True)
    first = await orch.run('/call add {"a": 1, "b": 2}', handler=seen)
    assert first.ok and first.text == "add returned: 3"
    assert first.conversation_id is not None and seen.ids == [first.conversation_id]
    second = await orch.run("and again?", conversation=first.conversation_id, handler=seen)
    assert second.ok and second.conversation_id == first.conversation_id
    assert seen.ids == [first.conversation_id] * 2  # continued, never a second conversation
    bodies = posts(emu)
    assert len(bodies) == 3  # the call, its tool round, the second run
    assert all(b["conversation"] == first.conversation_id for b in bodies)
    assert all("previous_response_id" not in b for b in bodies)
    items = [i async for i in rc.list_items(first.conversation_id, order="asc")]
    kinds = [i.type for i in items]
    assert kinds.count("function_call") == 1 and kinds.count("function_call_output") == 1
    assert kinds.count("message") >= 4  # two user inputs, two assistant answers


async def test_conversations_from_settings_for_the_cli_and_the_worker(
    emu: Emulator, registry: ToolRegistry
) -> None:
    """Settings(conversations=True): the session's runs get a conversation to continue."""
    settings = Settings(protocol="responses", conversations=True)
    async with open_backend(settings, registry, base_url=emu.base_url, api_key="sk-conv-test") as b:
        first = await b.start("hello")
        second = await b.start("again", conversation=first.conversation_id)
    assert first.ok and second.ok and first.conversation_id
    assert second.conversation_id == first.conversation_id


async def test_off_by_default_responses_chain_by_previous_response_id(
    emu: Emulator, rc: ResponsesClient, registry: ToolRegistry
) -> None:
    """Without conversations the tool round chains on previous_response_id, as before."""
    result = await ResponsesOrchestrator(rc, registry, policy=FAST).run(
        '/call add {"a": 2, "b": 2}'
    )
    assert result.ok and result.conversation_id is None
    first, follow_up = posts(emu)
    assert "conversation" not in first and follow_up["previous_response_id"]


async def test_client_conversation_endpoints(rc: ResponsesClient) -> None:
    """create / retrieve / update / add items / list / delete over real HTTP."""
    conversation = await rc.create_conversation(
        items=[{"type": "message", "role": "user", "content": "hi"}], metadata={"team": "ops"}
    )
    assert (await rc.retrieve_conversation(conversation.id)).metadata == {"team": "ops"}
    updated = await rc.update_conversation(conversation.id, metadata={"team": "core"})
    assert updated.metadata == {"team": "core"}
    await rc.add_items(conversation.id, [{"type": "message", "role": "user", "content": "more"}])
    items = await rc.list_items(conversation.id, order="asc").to_list()
    assert [i.type for i in items] == ["message", "message"]
    deleted = await rc.delete_conversation(conversation.id)
    assert deleted.deleted
