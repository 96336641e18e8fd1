"""The recorded Responses stream (ends incomplete, ids and texts disagree) replays cleanly.

The reference is served as SSE by a loopback aiohttp server and read through the real
ResponsesClient and ResponsesOrchestrator: no crash, the final state is reported
(``incomplete`` / ``max_output_tokens``, the final response's id and text) and every
inconsistency of the recording is logged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from runtime.responses import ResponsesClient, ResponsesOrchestrator
from tools import ToolRegistry

REFERENCE = "responses-stream-incomplete.jsonl"
FINAL_ID = "resp_67cadb40a0708190ac2763c0b6960f6f"

ServeApp = Callable[[web.Application], Awaitable[str]]


def load_events(reference_dir: Path) -> list[dict[str, Any]]:
    lines = (reference_dir / REFERENCE).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def sse_body(events: list[dict[str, Any]], *, event_lines: bool) -> bytes:
    out = []
    for data in events:
        head = f"event: {data['type']}\n" if event_lines else ""
        out.append(f"{head}data: {json.dumps(data)}\n\n")
    return "".join(out).encode()


async def replay_server(serve: ServeApp, body: bytes, seen: list[dict[str, Any]]) -> str:
    async def create(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for block in body.split(b"\n\n"):  # one write per event, as a server flushes them
            if block:
                await response.write(block + b"\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/responses", create)
    return await serve(app) + "/v1"


@pytest.mark.parametrize("event_lines", [True, False], ids=["event-lines", "data-only"])
async def test_reference_replays_to_incomplete_max_output_tokens(
    serve: ServeApp, reference_dir: Path, event_lines: bool
) -> None:
    """The client's stream ends incomplete/max_output_tokens with the final response's state."""
    body = sse_body(load_events(reference_dir), event_lines=event_lines)
    requests: list[dict[str, Any]] = []
    base_url = await replay_server(serve, body, requests)
    with capture_logs() as logs:
        async with ResponsesClient(base_url=base_url, api_key="sk-test-reference") as rc:
            stream = await rc.create(model="gpt-4o", input="Say hello", stream=True)
            response = await stream.final_response()
    assert requests[0]["stream"] is True and requests[0]["input"] == "Say hello"
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.id == FINAL_ID
    assert stream.text == "Hello," == response.output_text
    assert stream.state.messages[0].id == "msg_67cadb410ccc81909fe1d8f427b9cf02"
    names = {entry["event"] for entry in logs}
    assert {
        "responses.item_id_mismatch",
        "responses.text_mismatch",
        "responses.response_id_mismatch",
    } <= names
    assert all(e["log_level"] == "warning" for e in logs if e["event"].endswith("_mismatch"))


async def test_reference_through_the_orchestrator_is_an_incomplete_result(
    serve: ServeApp, reference_dir: Path
) -> None:
    """The orchestrator turns the recording into a RunResult, not an exception."""
    body = sse_body(load_events(reference_dir), event_lines=True)
    base_url = await replay_server(serve, body, [])
    async with ResponsesClient(base_url=base_url, api_key="sk-test-reference") as rc:
        result = await ResponsesOrchestrator(rc, ToolRegistry()).run("Say hello")
    assert result.status == "incomplete" and not result.ok
    assert result.incomplete_reason == "max_output_tokens"
    assert result.run_id == FINAL_ID and result.text == "Hello,"
    assert result.tool_calls == [] and result.rounds == 0 and result.recoveries == 0
