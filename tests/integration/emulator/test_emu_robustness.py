"""Emulator robustness: bounded retention, JSON errors for hostile input, guarded control."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from typing import Any

import aiohttp
import openai
import pytest

from runtime.emulator import Emulator, FaultSpecError
from runtime.emulator.http import _parse_json
from runtime.emulator.server import EmulatorError
from runtime.emulator.store import RunState, ThreadState

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DEEP = "[" * 5000 + "]" * 5000


def deep_object(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    root = node
    for _ in range(depth):
        node["x"] = {}
        node = node["x"]
    return root


# -- retention --------------------------------------------------------------------------------


async def test_threads_are_evicted_least_recently_used_first(
    session: aiohttp.ClientSession,
) -> None:
    """With max_retained=3 the least recently used threads go; a retrieved one stays."""
    async with Emulator(max_retained=3) as emu:
        ids = []
        for _ in range(3):
            async with session.post(emu.base_url + "/threads", json={}) as resp:
                ids.append((await resp.json())["id"])
        async with session.get(f"{emu.base_url}/threads/{ids[0]}") as resp:
            assert resp.status == 200  # now the most recently used
        for _ in range(2):
            async with session.post(emu.base_url + "/threads", json={}) as resp:
                ids.append((await resp.json())["id"])
        statuses = []
        for thread_id in ids:
            async with session.get(f"{emu.base_url}/threads/{thread_id}") as resp:
                statuses.append(resp.status)
    assert statuses == [200, 404, 404, 200, 200]


async def test_active_runs_are_never_evicted() -> None:
    """A thread waiting in requires_action survives any number of newer threads and runs."""
    async with (
        Emulator(max_retained=2) as emu,
        openai.AsyncOpenAI(base_url=emu.base_url, api_key="k", max_retries=0) as c,
    ):
        tool = {"type": "function", "function": {"name": "f"}}
        assistant = await c.beta.assistants.create(model="gpt-4o", tools=[tool])
        waiting = await c.beta.threads.create_and_run_poll(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": "/call f {}"}]},
        )
        assert waiting.status == "requires_action"
        for _ in range(5):
            await c.beta.threads.create_and_run_poll(
                assistant_id=assistant.id, thread={"messages": []}
            )
        store = emu._ctx.engine.store
        assert len(store.threads) <= 3 and len(store.runs) <= 3
        run = await c.beta.threads.runs.retrieve(waiting.id, thread_id=waiting.thread_id)
        assert run.status == "requires_action"


async def test_responses_and_conversations_are_bounded() -> None:
    """Responses and conversations past max_retained are evicted (404), newest kept."""
    async with Emulator(max_retained=2) as emu:
        async with openai.AsyncOpenAI(base_url=emu.base_url, api_key="k", max_retries=0) as c:
            responses = [await c.responses.create(model="gpt-4o", input="hi") for _ in range(4)]
            conversations = [await c.conversations.create() for _ in range(4)]
            with pytest.raises(openai.NotFoundError):
                await c.responses.retrieve(responses[0].id)
            with pytest.raises(openai.NotFoundError):
                await c.conversations.retrieve(conversations[1].id)
            assert (await c.responses.retrieve(responses[-1].id)).id == responses[-1].id
            assert (await c.conversations.retrieve(conversations[-1].id)).id == conversations[-1].id
        assert len(emu.responses()) == 2


async def test_many_runs_keep_the_store_bounded() -> None:
    """A long session of runs keeps at most max_retained threads and runs in memory."""
    async with Emulator(max_retained=10) as emu:
        async with openai.AsyncOpenAI(base_url=emu.base_url, api_key="k", max_retries=0) as c:
            assistant = await c.beta.assistants.create(model="gpt-4o")
            for _ in range(40):
                stream = await c.beta.threads.create_and_run(
                    assistant_id=assistant.id,
                    thread={"messages": [{"role": "user", "content": "hi"}]},
                    stream=True,
                )
                async for _event in stream:
                    pass
        store = emu._ctx.engine.store
        assert len(store.threads) == 10 and len(store.runs) == 10
        assert store.threads.evicted == 30


async def test_evicted_threads_and_runs_are_freed_without_the_cycle_collector(
    session: aiohttp.ClientSession,
) -> None:
    """An evicted thread and its runs are freed as soon as they go (no cycle left for the
    collector's full passes, whose cost grows with everything the emulator keeps)."""
    async with Emulator(max_retained=2) as emu:
        base = emu.base_url
        headers = {"Authorization": "Bearer k"}
        async with session.post(
            base + "/assistants", json={"model": "gpt-4o"}, headers=headers
        ) as r:
            assistant = (await r.json())["id"]
        gc.collect()
        gc.disable()
        try:
            for index in range(12):
                body = {
                    "assistant_id": assistant,
                    "stream": True,
                    "thread": {"messages": [{"role": "user", "content": f"hi {index}"}]},
                }
                async with session.post(base + "/threads/runs", json=body, headers=headers) as r:
                    assert b"thread.run.completed" in await r.read()
            alive = [o for o in gc.get_objects() if isinstance(o, ThreadState | RunState)]
        finally:
            gc.enable()
        assert emu._ctx.engine.store.threads.evicted == 10
        assert len(alive) <= 4, f"{len(alive)} threads and runs still in memory, 4 kept"


def test_max_retained_is_validated_and_documented() -> None:
    """max_retained must be >= 1; the CLI help documents --max-retained and its default."""
    with pytest.raises(EmulatorError):
        Emulator(max_retained=0)
    help_text = subprocess.run(
        [sys.executable, "-m", "runtime", "emulator", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--max-retained" in help_text and "default 1000" in help_text


# -- hostile input ------------------------------------------------------------------------------


async def test_deeply_nested_json_is_a_json_400(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """Bodies nested past the recursion limit, or past 128 levels, answer a JSON 400."""
    for body in (DEEP, f'{{"model": "gpt-4o", "input": "x", "metadata": {DEEP}}}'):
        async with session.post(
            emu.base_url + "/responses", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["type"] == "invalid_request_error"
    async with session.post(emu.base_url + "/threads", json={"metadata": deep_object(200)}) as resp:
        assert resp.status == 400 and "nested" in (await resp.json())["error"]["message"]
    async with session.post(emu.url + "/_emulator/inject", data=DEEP) as resp:
        assert resp.status == 400 and "error" in await resp.json()


async def test_bodies_in_every_json_encoding_are_read_as_json_loads_reads_them(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """A body in UTF-8 (with or without a byte order mark, lone surrogates escaped), UTF-16
    or UTF-32 creates the thread its JSON says; a body that is not valid UTF-8 is a JSON
    400, as ``json.loads`` would refuse it."""
    text = '{"metadata": {"k": "Zoë \\ud800 日本", "lone": "\ud800"}}'
    for encoded in (
        text.encode("utf-8", "surrogatepass"),
        b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass"),
        text.encode("utf-16", "surrogatepass"),
        text.encode("utf-16-le", "surrogatepass"),
        text.encode("utf-32-be", "surrogatepass"),
        b"  " + text.encode("utf-8", "surrogatepass"),
    ):
        async with session.post(
            emu.base_url + "/threads", data=encoded, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 200, encoded[:8]
            assert (await resp.json())["metadata"] == json.loads(text)["metadata"]
    for bad in (b'{"metadata": {"k": "\xff"}}', b"{"):
        async with session.post(
            emu.base_url + "/threads", data=bad, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 400
            assert "could not parse the JSON body" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1}',
        b'{"a" : [1, 2.5, {"b": null}], "c": "\\u00e9 \\ud800"}',
        b'{"a":1} \n',
        b'{"a":1}x',
        b'{"a":1}{"b":2}',
        b'{"a":',
        b'{"a":NaN}',
        b"{}",
        b"{" * 5000,
        b'{"\xc3\xa9":"\xe2\x82\xac"}',
    ],
)
def test_request_json_is_parsed_as_json_loads(raw: bytes) -> None:
    """A body that opens with a brace (scanned without ``decode``) parses to what
    ``json.loads`` gives, or fails with its error: trailing space, data, truncation."""

    def outcome(parse: Any) -> Any:
        try:
            return parse(raw)
        except (ValueError, RecursionError) as exc:
            return type(exc), str(exc)

    assert outcome(_parse_json) == outcome(json.loads)


async def test_oversized_body_is_a_json_413(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """A body over the 16 MiB cap answers an OpenAI-shaped JSON 413, not aiohttp's text, on
    the API and on the control endpoints alike."""
    body = b'{"metadata": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    for url in (emu.base_url + "/threads", emu.url + "/_emulator/faults"):
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 413, url
            assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_control_rejects_bad_rules_with_json_400(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """A bad path regex, a non-numeric ms, a non-string method or a bad limit are JSON 400s,
    and nothing is queued that could break the next call."""
    bad_rules = [
        {"kind": "500", "path": "(unclosed"},
        {"kind": "slow", "ms": "soon"},
        {"kind": "429", "retry_after": -1},
        {"kind": "500", "method": 7},
        {"kind": "500", "times": "x"},
    ]
    for rule in bad_rules:
        async with session.post(emu.url + "/_emulator/inject", json=rule) as resp:
            assert resp.status == 400, rule
            assert (await resp.json())["error"]["type"] == "invalid_request_error"
    async with session.get(emu.url + "/_emulator/requests", params={"limit": "many"}) as resp:
        assert resp.status == 400 and "error" in await resp.json()
    async with session.post(emu.url + "/_emulator/faults", json={"spec": 5}) as resp:
        assert resp.status == 400
    assert emu.stats["pending_injected_faults"] == 0
    async with session.post(emu.base_url + "/threads", json={}) as resp:
        assert resp.status == 200


def test_inject_validates_parameters_in_process() -> None:
    """Emulator.inject refuses a non-numeric ms or a bad regex at once (FaultSpecError)."""
    emu = Emulator()
    with pytest.raises(FaultSpecError):
        emu.inject("slow", ms="abc")
    with pytest.raises(FaultSpecError):
        emu.inject("500", path="[")


# -- control endpoints need the key ---------------------------------------------------------------


async def test_control_endpoints_require_the_api_key() -> None:
    """With api_key set, /_emulator/* answer 401 without it and work with it (bearer or
    api-key header, or Emulator.control_headers)."""
    async with Emulator(api_key="sk-secret") as emu, aiohttp.ClientSession() as anonymous:
        for method, path, body in [
            ("GET", "/_emulator/stats", None),
            ("GET", "/_emulator/requests", None),
            ("POST", "/_emulator/faults", {"spec": "429=1"}),
            ("POST", "/_emulator/inject", {"kind": "500"}),
        ]:
            async with anonymous.request(method, emu.url + path, json=body) as resp:
                assert resp.status == 401, path
                assert "sk-secret" not in await resp.text()
            wrong = {"Authorization": "Bearer sk-wrong"}
            async with anonymous.request(method, emu.url + path, json=body, headers=wrong) as resp:
                assert resp.status == 401, path
        assert emu.stats["pending_injected_faults"] == 0 and not emu.faults.rates
        async with anonymous.get(emu.url + "/_emulator/stats", headers=emu.control_headers) as resp:
            assert resp.status == 200
        async with anonymous.get(
            emu.url + "/_emulator/stats", headers={"api-key": "sk-secret"}
        ) as resp:
            assert resp.status == 200
    async with Emulator() as open_emu, aiohttp.ClientSession() as anonymous:
        assert open_emu.control_headers == {}
        async with anonymous.get(open_emu.url + "/_emulator/stats") as resp:
            assert resp.status == 200  # no key configured: no key needed
