"""The Responses API of the emulator, driven by the official openai SDK over HTTP."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from pydantic import BaseModel

from runtime.emulator import Emulator, Scenario

SCENARIOS = Path(__file__).resolve().parents[3] / "config" / "scenarios"
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


def slow_text(text: str, delta_ms: int = 20) -> Scenario:
    """A scenario whose next turn streams ``text`` slowly (so a test can act mid-stream)."""
    return Scenario.from_dict(
        {"turns": [{"type": "text", "text": text, "delta_delay_ms": delta_ms}]}
    )


# -- input items ------------------------------------------------------------------------------


async def test_input_items_list_pages_with_cursor(client: Any) -> None:
    """input_items.list returns the request's items as a cursor page (limit/order/after)."""
    response = await client.responses.create(
        model="gpt-4o",
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ],
    )
    page = await client.responses.input_items.list(response.id, limit=2, order="asc")
    assert [item.role for item in page.data] == ["developer", "user"]
    assert page.has_more is True and page.first_id == page.data[0].id
    assert page.last_id == page.data[1].id
    rest = await client.responses.input_items.list(
        response.id,
        limit=2,
        order="asc",
        after=page.last_id,
        include=["message.input_image.image_url"],
    )
    assert [item.content[0].text for item in rest.data] == ["second"] and rest.has_more is False
    newest_first = await client.responses.input_items.list(response.id)
    assert [item.id for item in newest_first.data] == [i.id for i in [*page.data, *rest.data]][::-1]
    every = [item async for item in client.responses.input_items.list(response.id, limit=1)]
    assert len(every) == 3


async def test_input_items_of_an_unknown_response_is_404(client: Any) -> None:
    """Listing the input items of an unknown response is a NotFoundError."""
    with pytest.raises(openai.NotFoundError):
        await client.responses.input_items.list("resp_missing")


# -- background responses: resumable streams and cancel ---------------------------------------


async def test_stream_resume_replays_exactly_then_goes_live(emu: Emulator, client: Any) -> None:
    """responses.stream(response_id, starting_after=N) yields the events after N, then live ones,
    with the same sequence numbers and payloads as the original stream."""
    emu.set_scenario(slow_text("one two three four five six seven eight", delta_ms=30))
    created = await client.responses.create(model="gpt-4o", input="hi", background=True)
    assert created.status == "queued" and created.background is True
    async with client.responses.stream(response_id=created.id) as full_stream:
        full = [event async for event in full_stream]
        final = await full_stream.get_final_response()
    assert final.output_text == "one two three four five six seven eight"
    assert [e.sequence_number for e in full] == list(range(len(full)))
    assert [e.type for e in full][:3] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    # Resume from the middle of the (now finished) log: exact replay of the tail.
    async with client.responses.stream(response_id=created.id, starting_after=5) as tail_stream:
        tail = [event async for event in tail_stream]
        assert (await tail_stream.get_final_response()).output_text == final.output_text
    expected = [e.model_dump(warnings=False) for e in full if e.sequence_number > 5]
    assert [e.model_dump(warnings=False) for e in tail] == expected


async def test_stream_resume_mid_flight_continues_live(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """A raw GET ?stream=true&starting_after=N while the response runs streams only events after N
    and ends with response.completed."""
    emu.set_scenario(slow_text(" ".join(f"w{i}" for i in range(15)), delta_ms=40))
    async with session.post(
        emu.base_url + "/responses", json={"model": "gpt-4o", "input": "x", "background": True}
    ) as resp:
        created = await resp.json()
    await asyncio.sleep(0.15)  # some deltas were emitted already
    url = f"{emu.base_url}/responses/{created['id']}"
    async with session.get(url, params={"stream": "true", "starting_after": "4"}) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        text = await resp.text()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    numbers = [e["sequence_number"] for e in events]
    assert numbers == list(range(5, 5 + len(events)))
    assert events[-1]["type"] == "response.completed"
    assert "[DONE]" not in text
    async with session.get(url, params={"stream": "true"}) as resp:
        replay = await resp.text()
    blocks = replay.split("\n\n")
    assert "\n\n".join(blocks[5:]) == text  # byte-identical replay of the same events


async def test_background_stream_at_creation_survives_the_client(
    emu: Emulator, client: Any
) -> None:
    """background=true with stream=true streams the log; the response completes without a reader."""
    emu.set_scenario(slow_text("alpha beta gamma delta", delta_ms=20))
    stream = await client.responses.create(model="gpt-4o", input="hi", background=True, stream=True)
    first = await stream.__anext__()
    await stream.close()
    assert first.type == "response.created"
    for _ in range(200):
        response = await client.responses.retrieve(first.response.id)
        if response.status == "completed":
            break
        await asyncio.sleep(0.01)
    assert response.status == "completed" and response.output_text == "alpha beta gamma delta"


async def test_cancel_a_background_response(emu: Emulator, client: Any) -> None:
    """responses.cancel stops a running background response (config/scenarios/slow-stream.toml);
    its resumed stream then ends without a terminal event."""
    emu.set_scenario(SCENARIOS / "slow-stream.toml")
    created = await client.responses.create(model="gpt-4o", input="hi", background=True)
    await asyncio.sleep(0.1)
    cancelled = await client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert (await client.responses.retrieve(created.id)).status == "cancelled"
    raw = await client.responses.retrieve(created.id, stream=True)
    events = [event async for event in raw]
    assert events and all(e.type != "response.completed" for e in events)
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert 0 < len(deltas) < 40  # stopped mid-way
    await asyncio.sleep(0.1)
    assert (await client.responses.retrieve(created.id)).status == "cancelled"


async def test_stream_resume_of_a_foreground_response_is_400(client: Any) -> None:
    """A response created without background refuses a streamed retrieve (400)."""
    response = await client.responses.create(model="gpt-4o", input="hi")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.retrieve(response.id, stream=True)
    assert caught.value.status_code == 400 and "background" in caught.value.message


async def test_starting_after_must_be_an_integer(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """starting_after=abc is a 400 naming the parameter."""
    async with session.post(
        emu.base_url + "/responses", json={"model": "gpt-4o", "input": "x", "background": True}
    ) as resp:
        created = await resp.json()
    async with session.get(
        f"{emu.base_url}/responses/{created['id']}",
        params={"stream": "true", "starting_after": "abc"},
    ) as resp:
        body = await resp.json()
    assert resp.status == 400 and body["error"]["param"] == "starting_after"


# -- function call outputs, max_output_tokens, forced tool_choice ---------------------------------


async def test_function_call_output_as_content_parts(client: Any) -> None:
    """An output given as input_text/input_image/input_file parts is accepted and quoted."""
    first = await client.responses.create(
        model="gpt-4o", input='/call add {"a": 2, "b": 3}', tools=[ADD_TOOL]
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    output = [
        {"type": "input_text", "text": "five"},
        {"type": "input_image", "image_url": "https://example.com/5.png", "detail": "auto"},
        {"type": "input_file", "file_id": "file-123"},
        {"type": "input_text", "text": "(5)"},
    ]
    follow = await client.responses.create(
        model="gpt-4o",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": output}],
        tools=[ADD_TOOL],
    )
    assert follow.output_text == "add returned: five\n(5)"
    items = await client.responses.input_items.list(follow.id)
    assert (
        items.data[0].type == "function_call_output"
        and items.data[0].output[1].type == "input_image"
    )


async def test_function_call_output_with_a_bad_part_is_400(client: Any) -> None:
    """A part type outside input_text/input_image/input_file is refused with its param."""
    first = await client.responses.create(model="gpt-4o", input="/call add {}", tools=[ADD_TOOL])
    call_id = first.output[0].call_id
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(
            model="gpt-4o",
            previous_response_id=first.id,
            input=[
                {"type": "function_call_output", "call_id": call_id, "output": [{"type": "audio"}]}
            ],
        )
    assert caught.value.body["param"] == "input[0].output[0].type"


@pytest.mark.parametrize("limit", [0, 1, 15])
async def test_max_output_tokens_below_16_is_400(client: Any, limit: int) -> None:
    """max_output_tokens < 16 answers 400 integer_below_min_value on max_output_tokens."""
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="gpt-4o", input="hi", max_output_tokens=limit)
    assert caught.value.code == "integer_below_min_value"
    assert caught.value.param == "max_output_tokens" and str(limit) in caught.value.message
    ok = await client.responses.create(model="gpt-4o", input="hi", max_output_tokens=16)
    assert ok.status == "completed"


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "add"}])
async def test_forced_tool_choice_forces_a_call_in_every_response(client: Any, choice: Any) -> None:
    """A forced tool_choice makes the follow-up call a function again (not answer text)."""
    first = await client.responses.create(
        model="gpt-4o", input="add something", tools=[ADD_TOOL], tool_choice=choice
    )
    assert [item.type for item in first.output] == ["function_call"]
    assert json.loads(first.output[0].arguments) == {"a": 1, "b": 1}
    follow = await client.responses.create(
        model="gpt-4o",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": first.output[0].call_id, "output": "2"}],
        tools=[ADD_TOOL],
        tool_choice=choice,
    )
    assert [item.type for item in follow.output] == ["function_call"]
    released = await client.responses.create(
        model="gpt-4o",
        previous_response_id=follow.id,
        input=[
            {"type": "function_call_output", "call_id": follow.output[0].call_id, "output": "3"}
        ],
        tools=[ADD_TOOL],
    )
    assert released.output_text == "add returned: 2\nadd returned: 3"


async def test_forced_tool_choice_keeps_call_lines(client: Any) -> None:
    """With /call lines, a forced choice plays those calls first, then forces its own."""
    first = await client.responses.create(
        model="gpt-4o", input='/call add {"a": 7, "b": 8}', tools=[ADD_TOOL], tool_choice="required"
    )
    assert json.loads(first.output[0].arguments) == {"a": 7, "b": 8}
    follow = await client.responses.create(
        model="gpt-4o",
        previous_response_id=first.id,
        input=[
            {"type": "function_call_output", "call_id": first.output[0].call_id, "output": "15"}
        ],
        tools=[ADD_TOOL],
        tool_choice="required",
    )
    assert follow.output[0].type == "function_call"
    assert json.loads(follow.output[0].arguments) == {"a": 1, "b": 1}


# -- structured outputs --------------------------------------------------------------------------


class Weather(BaseModel):
    """A flat structured output."""

    city: str
    temperature: float
    rainy: bool


class Unit(StrEnum):
    """An enum the schema carries through $defs."""

    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Reading(BaseModel):
    """A nested item."""

    hour: int
    value: float


class Forecast(BaseModel):
    """A nested model with an enum, a list of models and an optional field."""

    city: str
    unit: Unit
    readings: list[Reading]
    note: str | None
    tags: list[str]


async def test_parse_gives_a_pydantic_instance(client: Any) -> None:
    """responses.parse(text_format=Model) parses the emulator's schema-built reply."""
    response = await client.responses.parse(model="gpt-4o", input="weather?", text_format=Weather)
    parsed = response.output_parsed
    assert isinstance(parsed, Weather)
    assert parsed == Weather(city="example", temperature=1.0, rainy=True)


async def test_parse_nested_model_with_enum_and_list(client: Any) -> None:
    """Nested models, enums ($defs/$ref), lists and nullable fields follow the schema."""
    response = await client.responses.parse(model="gpt-4o", input="forecast", text_format=Forecast)
    parsed = response.output_parsed
    assert isinstance(parsed, Forecast)
    assert parsed.unit is Unit.CELSIUS and parsed.note == "example"
    assert parsed.readings == [Reading(hour=1, value=1.0)] and parsed.tags == ["example"]


async def test_json_schema_bounds_formats_and_any_of(client: Any) -> None:
    """Numbers honour minimum/maximum, strings their format/const, anyOf its first branch."""
    schema = {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 5, "maximum": 9},
            "ratio": {"type": "number", "exclusiveMaximum": 0.5, "minimum": 0},
            "when": {"type": "string", "format": "date-time"},
            "kind": {"const": "fixed"},
            "either": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 3}]},
            "short": {"type": "string", "maxLength": 3},
        },
        "required": ["score", "ratio", "when", "kind", "either", "short"],
        "additionalProperties": False,
    }
    response = await client.responses.create(
        model="gpt-4o",
        input="numbers",
        text={"format": {"type": "json_schema", "name": "nums", "schema": schema, "strict": True}},
    )
    value = json.loads(response.output_text)
    assert value == {
        "score": 5,
        "ratio": 0.0,
        "when": "2024-01-01T00:00:00Z",
        "kind": "fixed",
        "either": 3,
        "short": "exa",
    }


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_assistants_response_format_json_schema(client: Any) -> None:
    """An Assistants run with response_format json_schema replies with schema-built JSON."""
    assistant = await client.beta.assistants.create(model="gpt-4o")
    schema = Weather.model_json_schema()
    run = await client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "weather?"}]},
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": schema, "strict": True},
        },
    )
    messages = await client.beta.threads.messages.list(run.thread_id, order="desc", limit=1)
    reply = messages.data[0].content[0].text.value
    assert Weather.model_validate_json(reply) == Weather(
        city="example", temperature=1.0, rainy=True
    )


async def test_a_cut_stream_resumes_after_the_last_event_seen(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """A resumed stream cut by a fault can be resumed again from its last sequence number; the
    pieces join into the full event log without gaps or repeats."""
    emu.set_scenario(slow_text("a b c d e f g h", delta_ms=10))
    async with session.post(
        emu.base_url + "/responses",
        json={"model": "gpt-4o", "input": "x", "background": True},
    ) as resp:
        created = await resp.json()
    url = f"{emu.base_url}/responses/{created['id']}"
    emu.inject("cut", method="GET", path=r"/responses/resp_", after=4)
    seen: list[dict[str, Any]] = []
    for _ in range(10):
        after = seen[-1]["sequence_number"] if seen else -1
        try:
            async with session.get(
                url, params={"stream": "true", "starting_after": str(after)}
            ) as resp:
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        seen.append(json.loads(line[6:]))
        except aiohttp.ClientPayloadError:
            pass  # the cut: resume from what we saw
        if seen and seen[-1]["type"] == "response.completed":
            break
    assert [e["sequence_number"] for e in seen] == list(range(len(seen)))
    assert seen[-1]["response"]["output"][0]["content"][0]["text"] == "a b c d e f g h"
    assert emu.stats["faults"]["cut"] == 1
