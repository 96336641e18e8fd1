"""The Responses events built from fixed frames are byte for byte ``json.dumps`` of the event
dicts they stand for, with the live response and items, in every way a response ends."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from runtime.emulator.api import Call, StreamReply
from runtime.emulator.engine import RunEngine, Store
from runtime.emulator.frames import response_frames, response_json, response_usage_json
from runtime.emulator.ids import IdFactory
from runtime.emulator.model import ScriptedModel
from runtime.emulator.responses_api import ResponsesApi
from runtime.emulator.responses_items import response_obj, usage_obj
from runtime.emulator.scenario import Scenario

from .frame_sink import TRICKY, FrameSink, dumps

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather ü",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
}


class CheckingSink(FrameSink):
    """A sink that checks each event carrying a response or a finished item, as it is sent,
    against ``json.dumps`` of its dict with the live response (looked up by id)."""

    def __init__(self, api: ResponsesApi) -> None:
        self.api = api
        self.events: list[dict[str, Any]] = []

    def check(self, event: str, data: bytes) -> None:
        decoded = json.loads(data)
        assert decoded["type"] == event
        if "response" in decoded:
            state = self.api.responses.peek(decoded["response"]["id"])
            assert state is not None
            expected = {k: decoded[k] for k in ("type", "sequence_number")}
            assert data == dumps({**expected, "response": state.obj}), event
        elif event == "response.output_item.done":
            state = self.api.responses.peek(self.events[0]["response"]["id"])
            assert state is not None
            item = state.obj["output"][decoded["output_index"]]
            assert data == dumps({**decoded, "item": item}), event
        else:
            assert data == dumps(decoded), event
        self.events.append(decoded)

    def emit_again(self, event: str) -> None:
        raise AssertionError("the Responses front end sends no repeated event")

    async def flush(self) -> None:
        """Nothing is buffered."""


def responses_api() -> ResponsesApi:
    """A real Responses front end, with the failing turn scripted for inputs that say FAIL."""
    scenario = Scenario.from_dict(
        {"turns": [{"type": "fail", "match": "FAIL", "error_code": "rate_limit_exceeded"}]}
    )
    engine = RunEngine(Store(), ScriptedModel(scenario), IdFactory(7), Counter())
    return ResponsesApi(engine)


async def stream(api: ResponsesApi, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Create a streamed response and drive it through a checking sink."""
    reply = await api.create(Call(body={**body, "stream": True}, params={}, query={}))
    assert isinstance(reply, StreamReply)
    sink = CheckingSink(api)
    await reply.drive(sink)
    return sink.events


def _calls_for_outputs(events: list[dict[str, Any]]) -> bool:
    """Whether the last response ended asking for function calls."""
    output = events[-1]["response"]["output"]
    return bool(output) and output[-1]["type"] == "function_call"


CONFIGURED = {
    "instructions": TRICKY,
    "tools": [TOOL],
    "temperature": 0.7,
    "top_p": 0.25,
    "metadata": {"team": "\u03b1", "n": "1"},
    "reasoning": {"effort": "low", "summary": None},
    "parallel_tool_calls": False,
    "user": "u ü",
    "safety_identifier": "s",
    "prompt_cache_key": "k",
    "max_tool_calls": 3,
    "service_tier": "flex",
    "truncation": "auto",
    "top_logprobs": 2,
}
SCHEMA_TEXT = {
    "format": {
        "type": "json_schema",
        "name": "reply",
        "schema": {"type": "object", "properties": {"answer": {"type": "string"}}},
    }
}


@pytest.mark.parametrize(
    "body",
    [{}, CONFIGURED, {**CONFIGURED, "text": SCHEMA_TEXT}, {"text": {"format": {"type": "text"}}}],
    ids=["plain", "configured", "schema", "text format given"],
)
@pytest.mark.parametrize(
    ("text", "end"),
    [
        (TRICKY, "response.completed"),
        ('/call get_weather {"location": "Zoë \\"x\\""}', "response.completed"),
        ("/call get_weather {}\n/call other {}", "response.completed"),
        ("FAIL please", "response.failed"),
    ],
    ids=["text", "tool_call", "two_calls", "failed"],
)
async def test_every_response_event_is_the_live_response_dumped(
    body: dict[str, Any], text: str, end: str
) -> None:
    """Responses that complete with text or function calls and that fail, plain and with
    every field configured: each event carrying the response is ``json.dumps`` of its dict
    with the response as it is then, and each finished item the live item."""
    api = responses_api()
    events = await stream(api, {"model": "gpt-4o", "input": text, **body})
    names = [e["type"] for e in events]
    assert names[0] == "response.created" and names[-1] == end
    assert "response.in_progress" in names
    turns = 0
    while _calls_for_outputs(events) and turns < 3:
        calls = [e for e in events if e["type"] == "response.output_item.done"]
        assert len(events[-1]["response"]["output"]) == len(calls)
        outputs = [
            {"type": "function_call_output", "call_id": c["item"]["call_id"], "output": TRICKY}
            for c in calls
        ]
        previous = events[-1]["response"]["id"]
        events = await stream(
            api, {"model": "gpt-4o", "input": outputs, "previous_response_id": previous, **body}
        )
        turns += 1
    assert (turns > 0) == text.startswith("/call")
    assert events[-1]["type"] == end
    await api.engine.aclose()


@pytest.mark.parametrize(
    "body",
    [
        {"max_output_tokens": 16, "input": " ".join(f"w{i}" for i in range(30))},
        {"max_output_tokens": 16, "input": "/call f " + json.dumps({f"k{i}": i for i in range(9)})},
    ],
    ids=["text", "tool_call"],
)
async def test_incomplete_responses_are_the_live_response_dumped(body: dict[str, Any]) -> None:
    """A response cut by ``max_output_tokens`` (in its text, or before its calls) ends with a
    ``response.incomplete`` equal to the live response."""
    api = responses_api()
    events = await stream(api, {"model": "gpt-4o", **body})
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    await api.engine.aclose()


async def test_conversation_responses_are_the_live_response_dumped() -> None:
    """Two responses in a conversation carry the conversation, and their events equal the
    live responses."""
    api = responses_api()
    conversation = await api.conversations.create(Call(body={}, params={}, query={}))
    conversation_id = conversation.body["id"]  # type: ignore[union-attr]
    for text in ("hello", TRICKY):
        body = {"model": "gpt-4o", "input": text, "conversation": conversation_id}
        events = await stream(api, body)
        assert events[-1]["response"]["conversation"] == {"id": conversation_id}
    await api.engine.aclose()


def test_response_frames_fall_back_for_odd_objects() -> None:
    """A response with a field more, an odd usage or reordered defaults is still
    ``json.dumps`` of itself."""
    body = {"model": "m", "reasoning": {"summary": None, "effort": None}}
    response = response_obj(
        "resp_x", body, [TOOL], background=False, store=True, conversation_id="conv_x"
    )
    frames = response_frames(response)
    assert response_json(response, frames) == dumps(response)
    response.update(status="completed", usage={**usage_obj(1, 2), "extra": 1}, completed_at=5)
    assert response_json(response, frames) == dumps(response)
    response.update(usage=usage_obj(3, 4), error={"code": "x", "message": TRICKY})
    assert response_json(response, frames) == dumps(response)
    assert response_json({**response, "more": [1.5]}, frames) == dumps({**response, "more": [1.5]})
    for usage in (None, usage_obj(0, 0), {"input_tokens": 1}, [1]):
        assert response_usage_json(usage) == dumps(usage)
