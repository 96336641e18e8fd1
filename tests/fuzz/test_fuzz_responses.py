"""Fuzzing the Responses wire path: SSE decoder -> parse_response_event -> ResponseStream.

Complements tests/unit/responses/test_responses_fuzz.py (hostile JSON in well-framed events)
with random bytes, byte-level mutations of the recorded stream and random chunking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runtime.core.hooks import EventHandler
from runtime.errors import HandlerError, RuntimeAPIError
from runtime.protocol.events import StreamEvent
from runtime.protocol.sse import SSERecord
from runtime.responses.events import parse_response_event
from runtime.responses.stream import ResponseStream

from .test_fuzz_stream import FUZZ, chunks_of, json_values, split

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"
NAMES = [
    "response.created",
    "response.in_progress",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "error",
    "message",
]


def recorded() -> bytes:
    """The recorded Responses stream as SSE bytes (event name from each item's type)."""
    out = []
    for line in (REFERENCE / "responses-stream-incomplete.jsonl").read_text().splitlines():
        item = json.loads(line)
        out.append(f"event: {item['type']}\ndata: {json.dumps(item)}\n\n")
    return "".join(out).encode()


RECORDED = recorded()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """The recording with byte flips, insertions, deletions and a possible truncation."""
    raw = bytearray(RECORDED)
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(raw) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            raw[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            raw[pos:pos] = draw(st.sampled_from([b"\xff", b"\n\n", b"\r", b"data: ", b"{", b"]"]))
        else:
            del raw[pos : pos + draw(st.integers(1, 40))]
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """A Responses event name with random JSON (or a random ``type`` and no event line)."""
    data = draw(json_values)
    if draw(st.booleans()):
        name = draw(st.sampled_from(NAMES))
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
    typed = {"type": draw(st.sampled_from(NAMES)), "payload": data}
    return f"data: {json.dumps(typed)}\n\n".encode()


class ReadEverything(EventHandler):
    """Reads every typed accessor a Responses event may have."""

    async def on_event(self, event: StreamEvent) -> None:
        for name in ("response", "item", "part", "delta", "text", "arguments", "error"):
            with contextlib.suppress(RuntimeAPIError):
                getattr(event, name, None)


@FUZZ
@given(
    raw=mutated()
    | st.lists(hostile(), max_size=10).map(b"".join)
    | st.tuples(mutated(), st.lists(hostile(), max_size=4)).map(lambda p: p[0] + b"".join(p[1]))
    | st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=25),
    cap=st.sampled_from([64, 1024, 1 << 20]),
)
def test_response_stream_raises_only_our_errors(raw: bytes, cuts: list[int], cap: int) -> None:
    """Random, mutated and hostile Responses streams in random chunks raise only our errors."""
    stream = ResponseStream(
        chunks_of(split(raw, cuts)), handler=ReadEverything(), max_event_bytes=cap
    )

    async def go() -> None:
        try:
            async for _ in stream:
                pass
        except HandlerError:
            raise  # an accessor raised something outside our tree
        except RuntimeAPIError:
            pass

    asyncio.run(go())


@FUZZ
@given(name=st.sampled_from(NAMES) | st.text(max_size=20), data=json_values.map(json.dumps))
def test_parse_response_event_never_raises(name: str, data: str) -> None:
    """parse_response_event answers an event for any name and JSON data."""
    event = parse_response_event(SSERecord(name, data))
    assert isinstance(event, StreamEvent)


def test_the_recording_streams_to_an_incomplete_response() -> None:
    """Sanity check of the seed corpus: unmutated, it ends in an incomplete response."""
    stream = ResponseStream(chunks_of(split(RECORDED, [9, 700, 701])))

    async def go() -> None:
        async for _ in stream:
            pass

    asyncio.run(go())
    assert stream.response is not None
    assert stream.response.status == "incomplete"
