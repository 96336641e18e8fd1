"""Hostile data in known Responses events never escapes as anything but our errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import RuntimeAPIError
from runtime.responses import ResponseStream
from runtime.responses.events import LIFECYCLE_EVENTS, TERMINAL_EVENTS

NAMES = sorted(
    LIFECYCLE_EVENTS
    | {
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "error",
    }
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=4,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "output_index": st.integers(-1, 3) | JSON,
        "content_index": st.integers(0, 2) | JSON,
        "item_id": st.text(max_size=4) | JSON,
        "delta": st.text(max_size=4) | JSON,
        "text": JSON,
        "arguments": JSON,
        "item": JSON
        | st.fixed_dictionaries({"type": st.sampled_from(["message", "function_call", "x"])}),
        "part": JSON,
        "response": JSON | st.fixed_dictionaries({"id": st.text(max_size=4), "output": JSON}),
    },
)


async def one_shot(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NAMES), FIELDS), max_size=6))
def test_arbitrary_event_data_only_raises_runtime_errors(events: list[tuple[str, Any]]) -> None:
    """Any JSON in any known event either streams through or raises a RuntimeAPIError."""
    payload = b"".join(
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events
    )

    async def consume() -> tuple[ResponseStream, RuntimeAPIError | None]:
        stream = ResponseStream(one_shot(payload))
        try:
            await stream.until_done()
        except RuntimeAPIError as exc:  # anything else escapes and fails the test
            return stream, exc
        return stream, None

    stream, error = asyncio.run(consume())
    if error is None:  # a clean end needs a valid terminal response
        assert stream.stopped and stream.response is not None
        assert stream.state.last_response_event in TERMINAL_EVENTS
