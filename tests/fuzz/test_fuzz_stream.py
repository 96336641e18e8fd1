"""Fuzzing the wire layer end to end: SSE decoder -> event parsing -> RunStream snapshots.

Whatever bytes a server sends, in whatever chunks, the stream raises nothing outside the
RuntimeAPIError tree, a handler reading every typed accessor never meets a foreign exception,
and memory stays bounded by ``max_event_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.assistants import events as events_module
from runtime.assistants.events import (
    RUN_EVENTS,
    MessageDeltaEvent,
    RunStepDeltaEvent,
    StreamEvent,
    parse_event,
)
from runtime.assistants.stream import RunStream
from runtime.core.hooks import EventHandler
from runtime.errors import HandlerError, RuntimeAPIError, SSEDecodeError, StreamError
from runtime.protocol.sse import SSEDecoder, SSERecord

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def recorded_stream() -> bytes:
    """The recorded Assistants stream rendered as SSE bytes (the fuzzing seed corpus)."""
    out = []
    for line in (REFERENCE / "assistants-stream-recorded.jsonl").read_text().splitlines():
        item = json.loads(line)
        data = item["data"] if isinstance(item["data"], str) else json.dumps(item["data"])
        out.append(f"event: {item['event']}\ndata: {data}\n\n")
    return "".join(out).encode()


RECORDED = recorded_stream()
KNOWN_NAMES = sorted(
    RUN_EVENTS
    | {
        "thread.created",
        "thread.message.created",
        "thread.message.delta",
        "thread.message.completed",
        "thread.run.step.created",
        "thread.run.step.delta",
        "thread.run.step.completed",
        "error",
        "done",
    }
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "object",
                    "status",
                    "delta",
                    "content",
                    "index",
                    "text",
                    "value",
                    "type",
                    "step_details",
                    "tool_calls",
                    "function",
                    "arguments",
                    "name",
                    "required_action",
                    "error",
                    "message",
                    "code",
                    "run_id",
                    "thread_id",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=25,
)


@st.composite
def hostile_events(draw: st.DrawFn) -> bytes:
    """An SSE event with a known or random name and random JSON or random bytes as data."""
    name = draw(st.sampled_from(KNOWN_NAMES) | st.text(max_size=12))
    name = name.replace("\n", "").replace("\r", "")
    if draw(st.booleans()):
        data = json.dumps(draw(json_values)).encode()
    else:
        data = draw(st.binary(max_size=200)).replace(b"\n", b"").replace(b"\r", b"")
    return b"event: " + name.encode("utf-8", "surrogatepass") + b"\ndata: " + data + b"\n\n"


@st.composite
def mutated_recording(draw: st.DrawFn) -> bytes:
    """The recorded stream with byte flips, insertions and a possible truncation."""
    raw = bytearray(RECORDED)
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(raw) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            raw[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            raw[pos:pos] = draw(
                st.sampled_from([b"\xff\xfe", b"\n\n", b"\r", b"data: ", b"\xe2\x82", b"{", b"]"])
            )
        else:
            del raw[pos : pos + draw(st.integers(1, 40))]
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


streams = (
    mutated_recording()
    | st.lists(hostile_events(), max_size=12).map(b"".join)
    | st.binary(max_size=3000)
    | st.tuples(mutated_recording(), st.lists(hostile_events(), max_size=4)).map(
        lambda pair: pair[0] + b"".join(pair[1])
    )
)


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    """Cut ``raw`` at the given offsets."""
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces, start = [], 0
    for point in [*points, len(raw)]:
        pieces.append(raw[start:point])
        start = point
    return pieces


async def chunks_of(pieces: list[bytes]) -> AsyncIterator[bytes]:
    """An async byte source like a response body."""
    for piece in pieces:
        yield piece


class ReadEverything(EventHandler):
    """Touches every typed accessor; only our own errors may come out of them."""

    def __init__(self) -> None:
        self.seen = 0

    async def on_event(self, event: StreamEvent) -> None:
        self.seen += 1
        for name in ("run", "step", "message", "thread", "delta", "error"):
            with contextlib.suppress(RuntimeAPIError):
                getattr(event, name, None)


def consume(pieces: list[bytes], max_event_bytes: int) -> RunStream:
    """Drive a RunStream over ``pieces``; return it (errors of our tree are swallowed)."""
    stream = RunStream(chunks_of(pieces), handler=ReadEverything(), max_event_bytes=max_event_bytes)

    async def go() -> None:
        try:
            await stream.until_done()
        except HandlerError:
            raise  # the handler met a foreign exception from an accessor: a finding
        except RuntimeAPIError:
            pass

    asyncio.run(go())
    return stream


@FUZZ
@given(
    raw=streams,
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=25),
    cap=st.sampled_from([64, 512, 4096, 1 << 20]),
)
def test_run_stream_raises_only_our_errors(raw: bytes, cuts: list[int], cap: int) -> None:
    """Random, mutated and hostile streams in random chunks raise only RuntimeAPIError."""
    stream = consume(split(raw, cuts), cap)
    for snapshot in stream.state.messages.values():
        assert isinstance(snapshot.text, str)
    for call in stream.state.tool_calls.values():
        assert isinstance(call.arguments, str)


@FUZZ
@given(
    name=st.sampled_from(KNOWN_NAMES) | st.text(max_size=20),
    data=json_values.map(json.dumps) | st.text(max_size=300),
)
def test_parse_event_and_accessors_stay_in_our_tree(name: str, data: str) -> None:
    """parse_event never raises; a typed accessor raises nothing but our StreamError."""
    event = parse_event(SSERecord(name, data))
    for attr in ("run", "step", "message", "thread", "delta", "error"):
        if not hasattr(type(event), attr):
            continue
        with contextlib.suppress(RuntimeAPIError):
            getattr(event, attr)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("thread.message.delta", {"id": "msg_1", "delta": {"content": 5}}),
        ("thread.run.step.delta", {"id": 7, "delta": []}),
    ],
)
def test_lazy_delta_of_a_malformed_event_is_a_stream_error(name: str, data: Any) -> None:
    """``.delta`` of a delta event with a hostile shape raises StreamError, not pydantic's."""
    event = parse_event(SSERecord(name, json.dumps(data)))
    assert isinstance(event, MessageDeltaEvent | RunStepDeltaEvent)
    with pytest.raises(StreamError, match="invalid"):
        _ = event.delta


def test_the_recording_itself_decodes_to_a_completed_run() -> None:
    """Sanity check of the seed corpus: unmutated, it is a complete, stopping stream."""
    stream = consume(split(RECORDED, [17, 4000, 4001]), 1 << 20)
    assert stream.stopped and stream.run is not None
    assert stream.text


def test_endless_line_memory_is_bounded_by_the_cap() -> None:
    """50 MiB of a line without a break, in 64 KiB chunks, peaks near the 1 MiB cap."""
    cap = 1 << 20
    decoder = SSEDecoder(max_event_bytes=cap)
    chunk = b"x" * (64 * 1024)
    errors = 0
    tracemalloc.start()
    try:
        for _ in range(800):  # 50 MiB in all
            try:
                decoder.feed(chunk)
            except SSEDecodeError:
                errors += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert errors >= 40  # every ~1 MiB the oversized line is rejected and dropped
    assert peak < 4 * cap, peak


def test_endless_event_of_many_data_lines_is_bounded() -> None:
    """An event that never ends (data lines forever) is rejected at the cap, memory bounded."""
    cap = 256 * 1024
    decoder = SSEDecoder(max_event_bytes=cap)
    chunk = b"data: " + b"y" * 1000 + b"\n"
    tracemalloc.start()
    try:
        with pytest.raises(SSEDecodeError):
            for _ in range(10_000):
                decoder.feed(chunk * 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * cap, peak


def test_long_stream_of_events_does_not_accumulate() -> None:
    """Decoding and parsing 20,000 random events keeps memory flat (nothing is retained)."""
    raw = b"".join(
        f"event: x.{i % 7}\ndata: {json.dumps({'i': i, 'pad': 'z' * 50})}\n\n".encode()
        for i in range(2000)
    )
    decoder = SSEDecoder()

    def feed_all() -> None:
        for record in decoder.feed(raw):
            parse_event(record)

    feed_all()  # warm caches
    tracemalloc.start()
    try:
        for _ in range(10):
            feed_all()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 256 * 1024, current


def test_unknown_event_names_do_not_grow_the_class_cache() -> None:
    """10,000 distinct unknown event names leave the event-class cache unchanged."""
    before = len(events_module._CLASS_CACHE)
    for i in range(10_000):
        parse_event(SSERecord(f"vendor.event.{i}", "{}"))
    assert len(events_module._CLASS_CACHE) == before


@pytest.mark.parametrize(
    ("garbage", "stops"),
    [
        (b"\xff\xfe\xfd" * 1000, False),
        # The status is in the event name even when the data is unusable (see RunStream).
        (b"event: thread.run.completed\ndata: \xc3\x28\xa0\xa1\n\n", True),
        (b"event: \xed\xa0\x80\ndata: {}\n\n", False),
        (b"data: " + b"[" * 200_000 + b"\n\n", False),
    ],
)
def test_invalid_utf8_and_deep_json_are_tolerated(garbage: bytes, stops: bool) -> None:
    """Invalid UTF-8 (incl. encoded surrogates) and absurd nesting end in our errors at worst."""
    stream = consume([garbage], 1 << 20)
    assert stream.stopped is stops


def test_events_before_an_oversized_line_in_the_same_chunk_are_delivered() -> None:
    """A complete event followed, in the same chunk, by an oversized line is still delivered."""
    decoder = SSEDecoder(max_event_bytes=100)
    chunk = b"event: a\ndata: 1\n\n" + b"data: " + b"x" * 500 + b"\n\n"
    delivered: list[SSERecord] = []
    with contextlib.suppress(SSEDecodeError):
        delivered += decoder.feed(chunk)
    with contextlib.suppress(SSEDecodeError):
        delivered += decoder.flush()
    assert SSERecord("a", "1") in delivered
