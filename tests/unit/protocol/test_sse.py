"""The incremental SSE decoder: framing, limits, chunking invariance and fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.assistants.events import DoneEvent, parse_event
from runtime.errors import RuntimeAPIError, SSEDecodeError
from runtime.protocol.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSERecord


def decode(chunks: list[bytes], max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> list[SSERecord]:
    """Feed ``chunks`` one by one, then flush; return every record."""
    decoder = SSEDecoder(max_event_bytes)
    out: list[SSERecord] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.flush())
    return out


def bytewise(data: bytes) -> list[bytes]:
    """Split ``data`` into one-byte chunks."""
    return [data[i : i + 1] for i in range(len(data))]


TWO_EVENTS = "event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings_lf_crlf_cr(newline: str) -> None:
    """LF, CRLF and CR all frame the same events."""
    raw = TWO_EVENTS.replace("\n", newline).encode()
    assert decode([raw]) == [SSERecord("a", "1"), SSERecord("b", "2")]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings_split_byte_by_byte(newline: str) -> None:
    """Line endings split across chunks (a CRLF cut between its CR and LF) frame the same."""
    raw = TWO_EVENTS.replace("\n", newline).encode()
    assert decode(bytewise(raw)) == [SSERecord("a", "1"), SSERecord("b", "2")]


def test_crlf_split_exactly_between_cr_and_lf() -> None:
    """A CR ending one chunk and the LF starting the next are one line break, not two."""
    records = decode([b"event: a\r", b"\ndata: 1\r", b"\n\r", b"\n"])
    assert records == [SSERecord("a", "1")]


def test_cr_then_cr_in_next_chunk_is_a_blank_line() -> None:
    """A CR at a chunk's end followed by another CR still ends the event (no LF swallowed)."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\r") == [SSERecord("message", "x")]


def test_comments_are_ignored() -> None:
    """Lines starting with a colon are comments (keep-alives) and dispatch nothing."""
    raw = b": ping\n\n:another\nevent: a\n: inside\ndata: 1\n\n"
    assert decode([raw]) == [SSERecord("a", "1")]


def test_id_field_persists_and_retry_is_parsed() -> None:
    """``id:`` is remembered across events; ``retry:`` digits are kept, junk is ignored."""
    raw = b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nid: x\0y\nretry: soon\ndata: c\n\n"
    decoder = SSEDecoder()
    records = decoder.feed(raw)
    assert records == [
        SSERecord("message", "a", id="7", retry=1500),
        SSERecord("message", "b", id="7", retry=None),
        SSERecord("message", "c", id="7", retry=None),
    ]
    assert decoder.last_event_id == "7"


def test_non_ascii_digits_in_retry_are_ignored() -> None:
    """A ``retry:`` value of Unicode digits that int() rejects does not crash the decoder."""
    assert decode(["retry: ²\ndata: a\n\n".encode()]) == [SSERecord("message", "a")]


def test_multiple_data_lines_are_joined_with_newline() -> None:
    """Several ``data:`` lines of one event become one string joined by LF."""
    raw = b'event: x\ndata: {\ndata:  "a": 1\ndata:}\n\n'
    assert decode([raw]) == [SSERecord("x", '{\n "a": 1\n}')]


def test_field_without_colon_and_single_space_strip() -> None:
    """A bare ``data`` line is an empty data line; only one leading space is removed."""
    assert decode([b"data\ndata:  two\n\n"]) == [SSERecord("message", "\n two")]


def test_event_without_event_line_is_message() -> None:
    """An event with only data gets the default name "message"."""
    assert decode([b"data: hi\n\n"]) == [SSERecord("message", "hi")]


def test_event_line_without_data_is_dispatched_with_empty_data() -> None:
    """An event whose data line lost its prefix is still delivered (with empty data)."""
    raw = b'event: thread.run.completed\n{"id":"run_1"}\n\nevent: done\ndata: [DONE]\n\n'
    assert decode([raw]) == [
        SSERecord("thread.run.completed", ""),
        SSERecord("done", "[DONE]"),
    ]


def test_multibyte_utf8_split_across_chunks() -> None:
    """Characters of 2, 3 and 4 bytes cut at every byte boundary decode intact."""
    text = "é€😀 ünï"
    raw = f"event: t\ndata: {text}\n\n".encode()
    assert decode(bytewise(raw)) == [SSERecord("t", text)]


def test_stream_without_trailing_blank_line() -> None:
    """flush() dispatches a last event whose blank line (or even line break) never came."""
    assert decode([b"event: a\ndata: 1"]) == [SSERecord("a", "1")]
    assert decode([b"event: a\ndata: 1\n"]) == [SSERecord("a", "1")]


def test_done_sentinel_becomes_done_event() -> None:
    """``data: [DONE]`` ends the stream as a DoneEvent, with or without ``event: done``."""
    for raw in (b"event: done\ndata: [DONE]\n\n", b"data: [DONE]\n\n"):
        (record,) = decode([raw])
        assert isinstance(parse_event(record), DoneEvent)


def test_default_limit_is_8_mib() -> None:
    """The default cap on a line/event is 8 MiB."""
    assert DEFAULT_MAX_EVENT_BYTES == 8 * 1024 * 1024


def test_line_longer_than_limit_across_chunks_raises_typed_error() -> None:
    """An unterminated line growing past the cap raises SSEDecodeError, not MemoryError."""
    decoder = SSEDecoder(max_event_bytes=1000)
    decoder.feed(b"data: " + b"x" * 900)
    with pytest.raises(SSEDecodeError) as info:
        decoder.feed(b"y" * 200)
    assert isinstance(info.value, RuntimeAPIError)


def test_huge_line_inside_one_chunk_raises() -> None:
    """A complete line larger than the cap inside a single chunk is rejected too."""
    with pytest.raises(SSEDecodeError):
        SSEDecoder(max_event_bytes=100).feed(b"event: " + b"e" * 500 + b"\n\n")


def test_event_data_past_limit_raises() -> None:
    """Many small data lines whose total passes the cap raise SSEDecodeError."""
    decoder = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(SSEDecodeError):
        for _ in range(100):
            decoder.feed(b"data: " + b"z" * 50 + b"\n")


def test_memory_stays_bounded_on_endless_line() -> None:
    """Feeding an endless line fails within one chunk of the cap instead of buffering it all."""
    decoder = SSEDecoder(max_event_bytes=64 * 1024)
    fed = 0
    with pytest.raises(SSEDecodeError):
        for _ in range(10_000):
            decoder.feed(b"a" * 4096)
            fed += 4096
    assert fed <= 64 * 1024 + 4096


def test_decoder_usable_after_oversized_event() -> None:
    """After an oversized event is rejected, the decoder frames later events normally."""
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"data: " + b"x" * 200 + b"\n")
    assert decoder.feed(b"\ndata: ok\n\n")[-1] == SSERecord("message", "ok")


# --- properties ----------------------------------------------------------------------------

names = st.sampled_from(
    ["thread.message.delta", "thread.run.completed", "message", "error", "x.y-z", "ünï"]
)
payloads = st.lists(
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"),
        max_size=30,
    ),
    min_size=1,
    max_size=3,
)
events = st.lists(st.tuples(names, payloads), min_size=1, max_size=8)


def render(evs: list[tuple[str, list[str]]], newline: str, comments: bool) -> bytes:
    """Serialise events as SSE text with the given line ending."""
    lines: list[str] = []
    for name, datas in evs:
        if comments:
            lines.append(": keep-alive")
        if name != "message":
            lines.append(f"event: {name}")
        lines.extend(f"data: {d}" for d in datas)
        lines.append("")
    return (newline.join(lines) + newline).encode()


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    """Cut ``raw`` at the given offsets (any order, duplicates allowed)."""
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces, start = [], 0
    for point in [*points, len(raw)]:
        pieces.append(raw[start:point])
        start = point
    return pieces


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    evs=events,
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    comments=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
)
def test_any_chunking_yields_the_same_events(
    evs: list[tuple[str, list[str]]], newline: str, comments: bool, cuts: list[int]
) -> None:
    """Whatever the chunk boundaries, a valid stream decodes to the same records."""
    raw = render(evs, newline, comments)
    expected = [SSERecord(name, "\n".join(datas)) for name, datas in evs]
    assert decode([raw]) == expected
    assert decode(split(raw, cuts)) == expected


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=2000)
    | st.lists(
        st.sampled_from(
            [
                b"data: ",
                b"event: ",
                b"id: ",
                b"retry: ",
                b"\r",
                b"\n",
                b":",
                b"[DONE]",
                b"\xff",
                b"\xe2\x82",
                b"\xf0\x9f\x98\x80",
                b"{",
                b'"',
                b"\x00",
                "²".encode(),
                b"x" * 300,
            ]
        ),
        max_size=60,
    ).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=30),
    cap=st.integers(min_value=1, max_value=600),
)
def test_fuzz_only_typed_errors(raw: bytes, cuts: list[int], cap: int) -> None:
    """Random bytes and chunkings raise nothing but RuntimeAPIError and parse into events."""
    decoder = SSEDecoder(max_event_bytes=cap)
    for chunk in split(raw, cuts):
        try:
            for record in decoder.feed(chunk):
                parse_event(record)
                assert len(record.data) <= cap
        except RuntimeAPIError:
            continue
    try:
        for record in decoder.flush():
            parse_event(record)
    except RuntimeAPIError:
        pass


def test_parse_event_survives_deeply_nested_json() -> None:
    """Data nested deeper than json's recursion limit is a malformed event, not RecursionError."""
    record = SSERecord("thread.run.completed", "[" * 100_000)
    event = parse_event(record)
    assert event.event == "thread.run.completed"
    assert type(event).__name__ == "MalformedEvent"


def test_json_round_trip_of_decoded_data() -> None:
    """JSON data framed over several chunks is byte-exact after decoding."""
    obj = {"text": "héllo\nworld", "n": [1, 2, 3]}
    raw = f"event: e\ndata: {json.dumps(obj)}\n\n".encode()
    (record,) = decode(bytewise(raw))
    assert json.loads(record.data) == obj


def test_leading_bom_is_stripped_even_when_split() -> None:
    """A UTF-8 BOM at the start of the stream is ignored, also when cut across chunks."""
    raw = b"\xef\xbb\xbfevent: a\ndata: 1\n\n"
    assert decode([raw]) == [SSERecord("a", "1")]
    assert decode(bytewise(raw)) == [SSERecord("a", "1")]
    assert decode([b"data: \xef\xbb\xbfx\n\n"]) == [SSERecord("message", "\ufeffx")]


def reference_decode(raw: bytes) -> list[SSERecord]:
    """The WHATWG algorithm line by line (plus our deviation: an event line alone dispatches)."""
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[SSERecord] = []
    name: str | None = None
    data: list[str] = []
    fields = False
    last_id: str | None = None
    retry: int | None = None
    for line in [*lines, ""]:  # a stream without a final blank line is flushed
        if not line:
            if fields:
                out.append(SSERecord(name or "message", "\n".join(data), last_id, retry))
            name, data, fields, retry = None, [], False, None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
            fields = True
        elif field == "event":
            name, fields = value, True
        elif field == "id" and "\0" not in value:
            last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return out


sse_lines = st.lists(
    st.sampled_from(
        [
            "event: a",
            "event: ",
            "event:b",
            "data: {}",
            "data: ",
            "data:x",
            "data:  two spaces",
            "id: 7",
            "id: 8",
            "retry: 20",
            ": comment",
            "",
            "",
            "",
            "bogus",
        ]
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=sse_lines,
    newline=st.sampled_from(["\n", "\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_block_fast_path_matches_the_line_by_line_algorithm(
    lines: list[str], newline: str, cuts: list[int]
) -> None:
    """Whole events taken from a block at once (event + data, lone data) decode exactly as the
    spec's line-by-line algorithm does, with ids, retries, comments, odd fields and pending
    fields carried across chunk boundaries."""
    raw = newline.join(lines).encode()
    expected = reference_decode(raw)
    assert decode([raw]) == expected
    assert decode(split(raw, cuts)) == expected


def test_retry_and_fields_pending_from_the_previous_chunk_reach_the_next_event() -> None:
    """Fields a chunk left pending (retry, event name, data) belong to the event the next
    chunk completes, even when that chunk starts with a whole event of the common shape."""
    assert decode([b"retry: 20\n", b"data: x\n\nevent: b\ndata: y\n\n"]) == [
        SSERecord("message", "x", None, 20),
        SSERecord("b", "y"),
    ]
    assert decode([b"event: a\n", b"data: x\n\ndata: y\n\n"]) == [
        SSERecord("a", "x"),
        SSERecord("message", "y"),
    ]
    assert decode([b"data: x\n", b"data: y\n\nid: 3\ndata: z\n\ndata: w\n\n"]) == [
        SSERecord("message", "x\ny"),
        SSERecord("message", "z", "3"),
        SSERecord("message", "w", "3"),
    ]
