"""Fixtures for the emulator tests: a running Emulator and a thin raw-HTTP helper."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from runtime.emulator import Emulator

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Determine weather in my location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["location"],
        },
    },
}


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """Decode an SSE body into (event, data) pairs (data JSON-decoded, except ``[DONE]``)."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, data = "", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        events.append((event, data if data == "[DONE]" else json.loads(data)))
    return events


class Api:
    """Raw aiohttp calls against one emulator prefix, asserting the expected status."""

    def __init__(self, session: aiohttp.ClientSession, base: str, query: dict[str, str]) -> None:
        self.session = session
        self.base = base
        self.query = query

    async def request(
        self, method: str, path: str, body: Any = None, *, status: int = 200, **query: Any
    ) -> Any:
        params = {**self.query, **{k: str(v) for k, v in query.items()}}
        async with self.session.request(method, self.base + path, json=body, params=params) as resp:
            payload = await resp.json()
            assert resp.status == status, (resp.status, payload)
            assert resp.headers["x-request-id"].startswith("req_")
            return payload

    async def post(self, path: str, body: Any = None, *, status: int = 200) -> Any:
        return await self.request("POST", path, body if body is not None else {}, status=status)

    async def get(self, path: str, *, status: int = 200, **query: Any) -> Any:
        return await self.request("GET", path, status=status, **query)

    async def stream(self, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
        async with self.session.post(
            self.base + path, json={**body, "stream": True}, params=self.query
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"] == "text/event-stream"
            text = await resp.text()
        assert text.endswith("event: done\ndata: [DONE]\n\n")
        return parse_sse(text)

    async def assistant(self, **body: Any) -> dict[str, Any]:
        body.setdefault("model", "gpt-4o")
        body.setdefault("tools", [WEATHER_TOOL])
        return await self.post("/assistants", body)  # type: ignore[no-any-return]

    async def thread(self, *contents: str) -> dict[str, Any]:
        messages = [{"role": "user", "content": c} for c in contents]
        return await self.post("/threads", {"messages": messages})  # type: ignore[no-any-return]

    async def wait_run(
        self, thread_id: str, run_id: str, statuses: set[str], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Poll a run until its status is one of ``statuses``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            run = await self.get(f"/threads/{thread_id}/runs/{run_id}")
            if run["status"] in statuses:
                return run  # type: ignore[no-any-return]
            assert asyncio.get_running_loop().time() < deadline, run["status"]
            await asyncio.sleep(0.01)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """A running emulator with default settings."""
    async with Emulator(seed=1) as emulator:
        yield emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session sending a bearer key."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-test"}) as s:
        yield s


@pytest.fixture
def api(emu: Emulator, session: aiohttp.ClientSession) -> Api:
    """Raw OpenAI-style calls against ``emu``."""
    return Api(session, emu.base_url, {})


@pytest.fixture
def make_api(session: aiohttp.ClientSession) -> Any:
    """Build an :class:`Api` for another emulator (``make_api(emu)``)."""

    def make(emulator: Emulator) -> Api:
        return Api(session, emulator.base_url, {})

    return make


_ADAPTERS: dict[int, Any] = {}  # building an adapter for a big union is slow: once per type


def strict_validate(
    model_type: Any, data: Any, allowed_extras: frozenset[str] = frozenset()
) -> Any:
    """Validate ``data`` with an openai-python type and refuse keys the type does not know.

    ``model_validate`` already fails on a missing required field or a wrong type; walking the
    result for ``model_extra`` also catches misspelt or invented field names (the SDK keeps
    unknown keys as extras instead of failing). ``allowed_extras`` lists field names the
    recorded service streams send although the SDK's types lack them.
    """
    from pydantic import BaseModel, TypeAdapter

    adapter = _ADAPTERS.get(id(model_type))
    if adapter is None:
        adapter = _ADAPTERS[id(model_type)] = TypeAdapter(model_type)
    value = adapter.validate_python(data)
    problems: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, BaseModel):
            extras = set(node.model_extra or {}) - allowed_extras
            problems.extend(f"{path}.{name} ({type(node).__name__})" for name in sorted(extras))
            for name in type(node).model_fields:
                walk(getattr(node, name), f"{path}.{name}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{path}[{index}]")
        elif isinstance(node, dict):
            for key, item in node.items():
                walk(item, f"{path}.{key}")

    walk(value, "$")
    assert not problems, f"unknown fields for {model_type}: {problems}"
    return value


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[Any]:
    """The official openai SDK (AsyncOpenAI) on ``emu``, without retries."""
    import openai

    async with openai.AsyncOpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.fixture
def validate() -> Any:
    """:func:`strict_validate` (conftest helpers are reached through fixtures)."""
    return strict_validate
