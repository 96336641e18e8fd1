"""Stream event order and object shapes, against the recorded stream and the references."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.emulator.engine import encode_json

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "reference"


def recorded() -> list[tuple[str, Any]]:
    lines = (REFERENCE / "assistants-stream-recorded.jsonl").read_text().splitlines()
    return [(e["event"], e["data"]) for e in map(json.loads, filter(None, lines))]


def names(events: list[tuple[str, Any]]) -> list[str]:
    """Event names with runs of deltas collapsed to one."""
    out: list[str] = []
    for event, _ in events:
        if not (out and out[-1] == event and event.endswith(".delta")):
            out.append(event)
    return out


async def test_text_run_follows_recorded_event_order(api: Any) -> None:
    """A text run streams exactly the recorded event sequence, then done."""
    assistant = await api.assistant(instructions="You are a helpful assistant.")
    thread = await api.thread("Hello")
    events = await api.stream(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    assert names(events) == [*names(recorded()), "done"]
    assert events[-1] == ("done", "[DONE]")


async def test_objects_have_every_field_of_the_recorded_stream(api: Any) -> None:
    """Run, step and message objects carry the same keys as the recorded ones (nulls included)."""
    assistant = await api.assistant()
    thread = await api.thread("Hello")
    ours = await api.stream(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    theirs = dict(recorded())
    mine = dict(ours)
    created = mine["thread.run.created"]
    assert created["expires_at"] == created["created_at"] + 600
    for event in ("thread.run.created", "thread.run.step.created", "thread.message.created"):
        assert list(mine[event]) == list(theirs[event]), event
    assert set(mine["thread.run.completed"]["usage"]) == set(
        theirs["thread.run.completed"]["usage"]
    )
    first_delta = next(d for e, d in ours if e == "thread.message.delta")
    assert first_delta["delta"]["content"][0]["text"] == {"value": "You", "annotations": []}


async def test_text_deltas_are_words_that_rebuild_the_message(api: Any) -> None:
    """Deltas are word-sized and concatenate to the completed message text."""
    assistant = await api.assistant()
    thread = await api.thread("How are you today?")
    events = await api.stream(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    pieces = [d["delta"]["content"][0]["text"]["value"] for e, d in events if e.endswith("delta")]
    completed = dict(events)["thread.message.completed"]
    assert "".join(pieces) == completed["content"][0]["text"]["value"]
    assert pieces == ["You", " said:", " How", " are", " you", " today?"]
    run = dict(events)["thread.run.completed"]
    assert run["usage"]["completion_tokens"] == len(pieces)
    assert run["expires_at"] is None and run["completed_at"] is not None


async def test_create_thread_and_run_starts_with_thread_created(api: Any) -> None:
    """POST /threads/runs streams thread.created first, then the run events."""
    assistant = await api.assistant()
    events = await api.stream(
        "/threads/runs",
        {
            "assistant_id": assistant["id"],
            "thread": {"messages": [{"role": "user", "content": "Hi"}]},
        },
    )
    assert [e for e, _ in events[:4]] == [
        "thread.created",
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
    ]
    assert events[1][1]["thread_id"] == events[0][1]["id"]
    assert events[-2][0] == "thread.run.completed"


async def test_tool_calls_stream_fragments_then_requires_action(api: Any) -> None:
    """/call lines become parallel calls: id and name first, arguments in pieces, then done."""
    assistant = await api.assistant()
    thread = await api.thread(
        'weather please\n/call get_weather {"location": "Paris"}\n/call get_weather {"location": "Oslo", "unit": "f"}'
    )
    events = await api.stream(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    assert [e for e, _ in events[-2:]] == ["thread.run.requires_action", "done"]
    deltas = [d for e, d in events if e == "thread.run.step.delta"]
    rebuilt: dict[int, dict[str, str]] = {}
    for delta in deltas:
        (call,) = delta["delta"]["step_details"]["tool_calls"]
        slot = rebuilt.setdefault(call["index"], {"arguments": ""})
        if "id" in call:
            assert slot == {"arguments": ""} and call["function"]["arguments"] == ""
            slot.update(id=call["id"], name=call["function"]["name"])
        slot["arguments"] += call["function"]["arguments"]
    run = events[-2][1]
    required = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in required] == [
        (s["id"], s["name"], s["arguments"]) for s in rebuilt.values()
    ]
    assert [json.loads(c["function"]["arguments"]) for c in required] == [
        {"location": "Paris"},
        {"location": "Oslo", "unit": "f"},
    ]
    assert len(deltas) > 4  # arguments really come in pieces
    assert run["status"] == "requires_action" and run["usage"] is not None


async def test_submit_stream_completes_with_reply_quoting_every_output(api: Any) -> None:
    """After submit_tool_outputs the stream resumes and the reply quotes each output verbatim."""
    assistant = await api.assistant()
    thread = await api.thread('/call get_weather {"location": "Paris"}\n/call get_weather {}')
    events = await api.stream(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    run = events[-2][1]
    calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    outputs = [
        {"tool_call_id": c["id"], "output": f'out-{i} {{"t": 21}}'} for i, c in enumerate(calls)
    ]
    resumed = await api.stream(
        f"/threads/{thread['id']}/runs/{run['id']}/submit_tool_outputs", {"tool_outputs": outputs}
    )
    assert [e for e, _ in resumed[:3]] == [
        "thread.run.step.completed",
        "thread.run.queued",
        "thread.run.in_progress",
    ]
    step = resumed[0][1]
    assert [c["function"]["output"] for c in step["step_details"]["tool_calls"]] == [
        o["output"] for o in outputs
    ]
    text = dict(resumed)["thread.message.completed"]["content"][0]["text"]["value"]
    assert text == 'get_weather returned: out-0 {"t": 21}\nget_weather returned: out-1 {"t": 21}'
    assert resumed[-2][0] == "thread.run.completed"


async def test_non_streaming_run_proceeds_in_background(api: Any) -> None:
    """stream=false returns the queued run; polling sees it reach requires_action."""
    assistant = await api.assistant()
    thread = await api.thread('/call get_weather {"location": "Rome"}')
    run = await api.post(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    assert run["status"] == "queued" and run["usage"] is None
    done = await api.wait_run(thread["id"], run["id"], {"requires_action"})
    (call,) = done["required_action"]["submit_tool_outputs"]["tool_calls"]
    await api.post(
        f"/threads/{thread['id']}/runs/{run['id']}/submit_tool_outputs",
        {"tool_outputs": [{"tool_call_id": call["id"], "output": "hot"}]},
    )
    final = await api.wait_run(thread["id"], run["id"], {"completed"})
    assert final["usage"]["total_tokens"] > 0
    messages = await api.get(f"/threads/{thread['id']}/messages")
    assert messages["data"][0]["content"][0]["text"]["value"] == "get_weather returned: hot"


async def test_run_retrieve_sends_poll_after_header(api: Any, session: Any, emu: Any) -> None:
    """GET run answers with openai-poll-after-ms and x-request-id."""
    assistant = await api.assistant()
    thread = await api.thread("hi")
    run = await api.post(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    async with session.get(f"{emu.base_url}/threads/{thread['id']}/runs/{run['id']}") as resp:
        assert resp.headers["openai-poll-after-ms"] == "100"
        assert resp.headers["x-request-id"].startswith("req_")


def data_lines(body: bytes) -> list[tuple[str, bytes]]:
    """(event, raw data bytes) of each SSE event, the bytes exactly as sent."""
    out = []
    for block in body.split(b"\n\n"):
        if block.strip():
            event, data = block.split(b"\n", 1)
            out.append((event.removeprefix(b"event: ").decode(), data.removeprefix(b"data: ")))
    return out


async def test_every_event_is_the_compact_json_of_its_object(api: Any) -> None:
    """Each event's data is byte for byte the compact JSON of the object it decodes to, with
    escapes (quotes, backslashes, newlines, non-ASCII) in text deltas too."""
    assistant = await api.assistant()
    content = 'Say "hi" \\ to Zoë\nand 日本 too'
    body = {"assistant_id": assistant["id"], "stream": True}
    body["thread"] = {"messages": [{"role": "user", "content": content}]}
    async with api.session.post(api.base + "/threads/runs", json=body) as resp:
        raw = await resp.read()
    events = data_lines(raw)
    assert events[-1] == ("done", b"[DONE]")
    for event, data in events[:-1]:
        assert data == json.dumps(json.loads(data), separators=(",", ":")).encode(), event
    deltas = [json.loads(d) for e, d in events if e == "thread.message.delta"]
    texts = [d["delta"]["content"][0]["text"] for d in deltas]
    assert texts[0] == {"value": "You", "annotations": []}
    assert all(list(t) == ["value"] for t in texts[1:])
    assert "".join(t["value"] for t in texts) == "You said: " + content
    message_id = json.loads(dict(events)["thread.message.created"])["id"]
    assert all(list(d) == ["id", "object", "delta"] and d["id"] == message_id for d in deltas)


async def test_repeated_objects_match_their_state_at_each_event(api: Any) -> None:
    """Events that carry an unchanged object twice (run created/queued, step and message
    created/in_progress) carry identical bytes, and later events carry the changed state."""
    assistant = await api.assistant()
    thread = await api.thread("Hello there")
    body = {"assistant_id": assistant["id"], "stream": True}
    async with api.session.post(api.base + f"/threads/{thread['id']}/runs", json=body) as resp:
        events = dict(data_lines(await resp.read()))
    for first, again in (
        ("thread.run.created", "thread.run.queued"),
        ("thread.run.step.created", "thread.run.step.in_progress"),
        ("thread.message.created", "thread.message.in_progress"),
    ):
        assert events[first] == events[again], again
    assert json.loads(events["thread.run.queued"])["status"] == "queued"
    assert json.loads(events["thread.run.in_progress"])["status"] == "in_progress"
    assert json.loads(events["thread.message.completed"])["status"] == "completed"
    assert json.loads(events["thread.run.step.completed"])["status"] == "completed"


async def test_new_step_and_message_events_are_the_encoding_of_the_new_objects(api: Any) -> None:
    """``step.created`` / ``message.created`` (and their ``in_progress`` twins) are byte for
    byte the compact JSON of the step and message as they were created: the stored objects
    with the fields that changed since put back (text and tool-call steps)."""
    assistant = await api.assistant()
    for content in ['Say "hi" \\ to Zoë\nand 日本', '/call lookup {"q": "Zoë \\"x\\""}']:
        thread = await api.thread(content)
        body = {"assistant_id": assistant["id"], "stream": True}
        url = api.base + f"/threads/{thread['id']}/runs"
        async with api.session.post(url, json=body) as resp:
            events = dict(data_lines(await resp.read()))
        step_id = json.loads(events["thread.run.step.created"])["id"]
        run_id = json.loads(events["thread.run.created"])["id"]
        async with api.session.get(url + f"/{run_id}/steps/{step_id}") as resp:
            step = await resp.json()
        fresh = {**step, "status": "in_progress", "completed_at": None, "usage": None}
        if step["type"] == "tool_calls":
            fresh["step_details"] = {"type": "tool_calls", "tool_calls": []}
        else:
            message_id = step["step_details"]["message_creation"]["message_id"]
            async with api.session.get(
                api.base + f"/threads/{thread['id']}/messages/{message_id}"
            ) as resp:
                message = await resp.json()
            new = {**message, "status": "in_progress", "completed_at": None, "content": []}
            assert events["thread.message.created"] == encode_json(new).encode()
            assert events["thread.message.in_progress"] == events["thread.message.created"]
        assert events["thread.run.step.created"] == encode_json(fresh).encode()
        assert events["thread.run.step.in_progress"] == events["thread.run.step.created"]


async def test_responses_text_deltas_are_compact_json_in_order(api: Any) -> None:
    """Responses events (plain and background streams) are the compact JSON of their objects;
    text deltas carry their fields in the service's order, numbered in sequence, and rebuild
    the text, escapes included."""
    text = 'Say "hi" \\ to Zoë\nand 日本'
    for extra in ({}, {"background": True}):
        body = {"model": "gpt-4o", "input": text, "stream": True, **extra}
        async with api.session.post(api.base + "/responses", json=body) as resp:
            events = data_lines(await resp.read())
        for event, data in events:
            assert data == json.dumps(json.loads(data), separators=(",", ":")).encode(), event
        decoded = [json.loads(d) for _, d in events]
        assert [d["sequence_number"] for d in decoded] == list(range(len(decoded)))
        deltas = [d for d in decoded if d["type"] == "response.output_text.delta"]
        item_id = next(d for d in decoded if d["type"] == "response.output_item.added")["item"]
        order = ["type", "sequence_number", "item_id", "output_index", "content_index"]
        order += ["delta", "logprobs"]
        assert all(list(d) == order for d in deltas)
        assert all(d["item_id"] == item_id["id"] and d["output_index"] == 0 for d in deltas)
        assert all(d["logprobs"] == [] for d in deltas)
        assert "".join(d["delta"] for d in deltas) == "You said: " + text


def _message_events(item: dict[str, Any], sequence: dict[str, int]) -> dict[str, bytes]:
    """What encoding each message item event's dict gives, built from the stored item."""
    part = item["content"][0]
    where = {"item_id": item["id"], "output_index": 0}
    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    added = {"id": item["id"], "type": "message", "status": "in_progress", "role": "assistant"}
    fields: dict[str, dict[str, Any]] = {
        "response.output_item.added": {"output_index": 0, "item": {**added, "content": []}},
        "response.content_part.added": {**where, "content_index": 0, "part": empty},
        "response.output_text.done": {
            **where,
            "content_index": 0,
            "text": part["text"],
            "logprobs": [],
        },
        "response.content_part.done": {**where, "content_index": 0, "part": part},
        "response.output_item.done": {"output_index": 0, "item": item},
    }
    return {
        name: encode_json({"type": name, "sequence_number": sequence[name], **data}).encode()
        for name, data in fields.items()
    }


@pytest.mark.parametrize(
    "extra",
    [{}, {"background": True}, {"max_output_tokens": 16}],
    ids=["plain", "background", "incomplete"],
)
async def test_responses_message_events_are_the_encoding_of_their_dicts(
    api: Any, extra: dict[str, Any]
) -> None:
    """The events that add and finish a message item are byte for byte the compact JSON of
    the dicts they stand for (item and part as stored, escapes included), on a plain, a
    background (logged, and replayed from its log) and an incomplete response."""
    text = 'Say "hi" \\ to Zoë\nand 日本 ' + " ".join(f"w{i}" for i in range(20))
    body = {"model": "gpt-4o", "input": text, "stream": True, **extra}
    async with api.session.post(api.base + "/responses", json=body) as resp:
        events = data_lines(await resp.read())
    decoded = [json.loads(d) for _, d in events]
    response = decoded[-1]["response"]
    async with api.session.get(api.base + f"/responses/{response['id']}") as resp:
        item = (await resp.json())["output"][0]
    assert item["status"] == ("incomplete" if "max_output_tokens" in extra else "completed")
    sequence = {d["type"]: d["sequence_number"] for d in decoded}
    expected = _message_events(item, sequence)
    got = {event: data for event, data in events if event in expected}
    assert got == expected
    if extra.get("background"):
        url = api.base + f"/responses/{response['id']}?stream=true&starting_after=-1"
        async with api.session.get(url) as resp:
            replayed = data_lines(await resp.read())
        assert replayed == events


async def test_responses_events_before_the_turn_carry_the_response_as_it_is(api: Any) -> None:
    """``response.created`` and ``response.in_progress`` carry the same response bytes when
    nothing changed between them; a background response's ``queued`` events differ from its
    ``in_progress`` one by the status only; each carries its own type and sequence number."""
    for extra, statuses in (({}, ["in_progress", "in_progress"]), ({"background": True}, [])):
        body = {"model": "gpt-4o", "input": "hello", "stream": True, **extra}
        async with api.session.post(api.base + "/responses", json=body) as resp:
            events = data_lines(await resp.read())
        early = [(e, d) for e, d in events if e in _EARLY]
        decoded = [json.loads(d) for _, d in early]
        assert [d["type"] for d in decoded] == [e for e, _ in early]
        assert [d["sequence_number"] for d in decoded] == list(range(len(decoded)))
        raw = [d.split(b'"response":', 1)[1] for _, d in early]
        if statuses:
            assert [d["response"]["status"] for d in decoded] == statuses
            assert raw[0] == raw[1]
        else:
            assert [e for e, _ in early] == _BACKGROUND_EARLY
            assert raw[0] == raw[1] and raw[1] != raw[2]
            queued, running = decoded[1]["response"], decoded[2]["response"]
            assert queued["status"] == "queued" and running["status"] == "in_progress"
            assert {**queued, "status": "in_progress"} == running


_BACKGROUND_EARLY = ["response.created", "response.queued", "response.in_progress"]
_EARLY = set(_BACKGROUND_EARLY)


def test_event_json_is_what_json_dumps_makes() -> None:
    """The emulator's one shared encoder writes what ``json.dumps(..., separators=(",", ":"))``
    does, for every JSON type, escapes and nesting."""
    values: list[Any] = [
        {"a": 1.5, "b": [None, True, False, 1e100, -0.0, 10**30], "c": 'é"\\\n\u2028\x00'},
        "plain",
        "日本",
        [],
        {},
        [{"k": [{"n": {}}]}],
        3,
        None,
    ]
    for value in values:
        assert encode_json(value) == json.dumps(value, separators=(",", ":")), value
    with pytest.raises(TypeError):
        encode_json({"not json": object()})
