"""Every object and event the emulator sends validates against openai-python's own types.

Raw HTTP bodies (not the SDK's lenient ``construct``) are validated with the SDK's pydantic
types: a missing required field, a wrong type or an unknown field name fails.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from openai.types.beta import Assistant, AssistantStreamEvent, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItem,
    ConversationItemList,
)
from openai.types.responses import Response, ResponseItemList, ResponseStreamEvent

from runtime.emulator import Emulator, Scenario

# Fields the recorded service streams carry although the SDK's types lack them.
RECORDED_RESPONSE_EXTRAS = frozenset({"store"})
RECORDED_ASSISTANTS_EXTRAS = frozenset(
    {"reasoning_effort", "tool_resources", "prompt_token_details", "completion_tokens_details"}
    | {"expires_at"}  # on run steps
)
ADD_TOOL = {
    "type": "function",
    "name": "add",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event, data) pairs of an SSE body, ``[DONE]`` left out."""
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines.get("data") and lines["data"] != "[DONE]":
            out.append((lines.get("event", ""), json.loads(lines["data"])))
    return out


class Raw:
    """Raw JSON calls (bodies as sent, not as the SDK constructs them)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def json(self, method: str, path: str, body: Any = None, **query: str) -> Any:
        async with self.session.request(method, self.base + path, json=body, params=query) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def stream(self, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
        async with self.session.post(self.base + path, json={**body, "stream": True}) as r:
            assert r.status == 200, await r.text()
            return sse_events(await r.text())


@pytest.fixture
def raw(emu: Emulator, session: aiohttp.ClientSession) -> Raw:
    return Raw(session, emu.base_url)


def check_response_events(validate: Any, events: list[tuple[str, Any]]) -> list[Any]:
    parsed = []
    for name, data in events:
        assert data["type"] == name
        parsed.append(validate(ResponseStreamEvent, data, RECORDED_RESPONSE_EXTRAS))
    return parsed


async def test_response_events_and_objects_validate(raw: Raw, validate: Any) -> None:
    """Streamed text, function calls, follow-ups, input items and retrievals all validate."""
    text = await raw.stream("/responses", {"model": "gpt-4o", "input": "hello"})
    check_response_events(validate, text)
    calls = await raw.stream(
        "/responses",
        {"model": "gpt-4o", "input": '/call add {"a": 1, "b": 2}', "tools": [ADD_TOOL]},
    )
    check_response_events(validate, calls)
    first = calls[-1][1]["response"]
    call = first["output"][0]
    follow = await raw.json(
        "POST",
        "/responses",
        {
            "model": "gpt-4o",
            "previous_response_id": first["id"],
            "tools": [ADD_TOOL],
            "input": [
                {"type": "function_call_output", "call_id": call["call_id"], "output": "3"},
                {"role": "user", "content": "thanks"},
            ],
        },
    )
    response = validate(Response, follow, RECORDED_RESPONSE_EXTRAS)
    assert response.status == "completed"
    validate(Response, await raw.json("GET", f"/responses/{first['id']}"), RECORDED_RESPONSE_EXTRAS)
    items = await raw.json("GET", f"/responses/{follow['id']}/input_items")
    validate(ResponseItemList, items)
    deleted = await raw.json("DELETE", f"/responses/{follow['id']}")
    assert deleted == {"id": follow["id"], "object": "response.deleted", "deleted": True}


async def test_usage_carries_every_detail_field(raw: Raw, validate: Any) -> None:
    """usage.input_tokens_details and output_tokens_details have all their required fields."""
    body = await raw.json("POST", "/responses", {"model": "gpt-4o", "input": "a b c"})
    usage = validate(Response, body, RECORDED_RESPONSE_EXTRAS).usage
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.input_tokens_details.cache_write_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens > 0


async def test_background_incomplete_and_failed_events_validate(
    emu: Emulator, raw: Raw, validate: Any
) -> None:
    """response.queued, response.incomplete and response.failed validate too."""
    background = await raw.stream(
        "/responses", {"model": "gpt-4o", "input": "hi", "background": True}
    )
    assert [n for n, _ in background][:2] == ["response.created", "response.queued"]
    check_response_events(validate, background)
    words = " ".join(["w"] * 30)
    short = await raw.stream(
        "/responses", {"model": "gpt-4o", "input": words, "max_output_tokens": 16}
    )
    assert short[-1][0] == "response.incomplete"
    check_response_events(validate, short)
    emu.set_scenario(Scenario.from_dict({"turns": [{"type": "fail", "code": "server_error"}]}))
    failed = await raw.stream("/responses", {"model": "gpt-4o", "input": "hi"})
    assert failed[-1][0] == "response.failed"
    check_response_events(validate, failed)


async def test_conversation_objects_validate(raw: Raw, validate: Any) -> None:
    """Conversations, their items (messages, calls, outputs) and deletions validate."""
    conv = await raw.json("POST", "/conversations", {"items": [{"role": "user", "content": "x"}]})
    validate(Conversation, conv)
    await raw.json(
        "POST",
        "/responses",
        {
            "model": "gpt-4o",
            "conversation": conv["id"],
            "input": "/call add {}",
            "tools": [ADD_TOOL],
        },
    )
    listing = await raw.json("GET", f"/conversations/{conv['id']}/items", order="asc")
    call = validate(ConversationItemList, listing).data[-1]
    await raw.json(
        "POST",
        f"/conversations/{conv['id']}/items",
        {"items": [{"type": "function_call_output", "call_id": call.call_id, "output": "2"}]},
    )
    listing = await raw.json("GET", f"/conversations/{conv['id']}/items")
    items = validate(ConversationItemList, listing)
    assert [i.type for i in items.data] == [
        "function_call_output",
        "function_call",
        "message",
        "message",
    ]
    one = await raw.json("GET", f"/conversations/{conv['id']}/items/{items.data[0].id}")
    validate(ConversationItem, one)
    validate(Conversation, await raw.json("POST", f"/conversations/{conv['id']}", {"metadata": {}}))
    validate(ConversationDeletedResource, await raw.json("DELETE", f"/conversations/{conv['id']}"))


def check_assistant_events(validate: Any, events: list[tuple[str, Any]]) -> None:
    for name, data in events:
        validate(AssistantStreamEvent, {"event": name, "data": data}, RECORDED_ASSISTANTS_EXTRAS)


async def test_assistants_objects_and_events_validate(raw: Raw, validate: Any) -> None:
    """Assistant, thread, run, step and message objects and every stream event validate."""
    tool = {"type": "function", "function": {"name": "add", "parameters": ADD_TOOL["parameters"]}}
    assistant = await raw.json("POST", "/assistants", {"model": "gpt-4o", "tools": [tool]})
    validate(Assistant, assistant, RECORDED_ASSISTANTS_EXTRAS)
    thread = await raw.json(
        "POST", "/threads", {"messages": [{"role": "user", "content": "/call add {}"}]}
    )
    validate(Thread, thread)
    first = await raw.stream(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    check_assistant_events(validate, first)
    run = first[-1][1]
    assert run["status"] == "requires_action"
    call_id = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
    second = await raw.stream(
        f"/threads/{thread['id']}/runs/{run['id']}/submit_tool_outputs",
        {"tool_outputs": [{"tool_call_id": call_id, "output": "2"}]},
    )
    check_assistant_events(validate, second)
    final = validate(
        Run,
        await raw.json("GET", f"/threads/{thread['id']}/runs/{run['id']}"),
        RECORDED_ASSISTANTS_EXTRAS,
    )
    assert final.status == "completed"
    steps = await raw.json("GET", f"/threads/{thread['id']}/runs/{run['id']}/steps")
    for step in steps["data"]:
        validate(RunStep, step, RECORDED_ASSISTANTS_EXTRAS)
    messages = await raw.json("GET", f"/threads/{thread['id']}/messages")
    for message in messages["data"]:
        validate(Message, message)


async def test_run_instructions_is_a_string_without_instructions(raw: Raw, validate: Any) -> None:
    """An assistant without instructions gives runs instructions "" (a string, never null)."""
    assistant = await raw.json("POST", "/assistants", {"model": "gpt-4o"})
    thread = await raw.json("POST", "/threads", {})
    run = await raw.json("POST", f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    assert run["instructions"] == ""
    validate(Run, run, RECORDED_ASSISTANTS_EXTRAS)


async def test_cancelling_a_streaming_run_reports_every_end(
    emu: Emulator, session: aiohttp.ClientSession, raw: Raw, validate: Any
) -> None:
    """Cancel mid-stream: run.cancelling, step.cancelled, message.incomplete (with the text
    streamed so far kept in the stored message), then run.cancelled."""
    emu.set_scenario(
        Scenario.from_dict(
            {"turns": [{"type": "text", "text": "a b c d e f g h i j k l", "delta_delay_ms": 30}]}
        )
    )
    assistant = await raw.json("POST", "/assistants", {"model": "gpt-4o"})
    thread = await raw.json("POST", "/threads", {"messages": [{"role": "user", "content": "go"}]})
    url = f"{emu.base_url}/threads/{thread['id']}/runs"
    async with session.post(url, json={"assistant_id": assistant["id"], "stream": True}) as resp:
        buffer = ""
        while buffer.count("thread.message.delta") < 3 * 2:  # event line + object field
            buffer += (await resp.content.readany()).decode()
        run_id = emu.runs(thread["id"])[0]["id"]
        await raw.json("POST", f"/threads/{thread['id']}/runs/{run_id}/cancel")
        buffer += (await resp.read()).decode()
    events = sse_events(buffer)
    check_assistant_events(validate, events)
    names = [n for n, _ in events]
    assert names[-4:] == [
        "thread.run.cancelling",
        "thread.run.step.cancelled",
        "thread.message.incomplete",
        "thread.run.cancelled",
    ]
    streamed = "".join(
        d["delta"]["content"][0]["text"]["value"] for n, d in events if n == "thread.message.delta"
    )
    incomplete = events[-2][1]
    assert incomplete["incomplete_details"] == {"reason": "run_cancelled"}
    assert incomplete["content"][0]["text"]["value"] == streamed != ""
    stored = await raw.json("GET", f"/threads/{thread['id']}/messages/{incomplete['id']}")
    assert stored["status"] == "incomplete" and stored["content"][0]["text"]["value"] == streamed
    await asyncio.sleep(0)
