"""A stream that stops reading at ``done`` finishes its body's reader itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from runtime.assistants.stream import RunStream
from runtime.protocol.stream import EventStream
from runtime.responses.stream import ResponseStream


def _assistants_body(reference_dir: Path) -> bytes:
    lines = (reference_dir / "assistants-stream-recorded.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    return b"".join(
        f"event: {e['event']}\ndata: {json.dumps(e['data'])}\n\n".encode()
        for e in events
        if e["event"] != "done"
    )


def _responses_body(reference_dir: Path) -> bytes:
    lines = (reference_dir / "responses-stream-incomplete.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


STREAMS: dict[
    str, tuple[Callable[[Path], bytes], Callable[[AsyncIterator[bytes]], EventStream]]
] = {
    "assistants": (_assistants_body, RunStream),
    "responses": (_responses_body, ResponseStream),
}


@pytest.mark.parametrize("protocol", sorted(STREAMS))
async def test_done_closes_the_body_reader_while_the_body_stays_open(
    protocol: str, reference_dir: Path
) -> None:
    """The server sends ``done`` and keeps the body open: the stream stops reading, and the
    body's reader (an async generator) is finished by the stream, not left suspended for the
    loop's garbage-collection hook."""
    body_of, stream_class = STREAMS[protocol]
    finished: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        try:
            yield body_of(reference_dir) + b"event: done\ndata: [DONE]\n\n"
            await asyncio.Event().wait()  # the connection stays open after done
            yield b""
        finally:
            finished.append("closed")

    reader = body()
    stream = stream_class(reader)
    await asyncio.wait_for(stream.until_done(), timeout=5)
    assert stream.turn() is not None
    assert finished == ["closed"]
    assert reader.ag_frame is None  # finished: nothing left for the finalizer hook
