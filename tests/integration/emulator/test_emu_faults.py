"""Fault injection: every kind, deterministic rules, seeded random spec, control endpoints."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from runtime.emulator import Emulator, FaultSpec, FaultSpecError
from runtime.emulator.faults import FaultInjector


async def test_429_carries_retry_after_or_retry_after_ms(
    emu: Emulator, api: Any, session: Any
) -> None:
    """Injected 429s answer an OpenAI error body with retry-after(-ms); the next call passes."""
    emu.inject("429", path=r"/threads$", retry_after_ms=250)
    emu.inject("429", path=r"/threads$", retry_after=2)
    async with session.post(emu.base_url + "/threads", json={}) as resp:
        assert resp.status == 429 and resp.headers["retry-after-ms"] == "250"
        assert (await resp.json())["error"]["code"] == "rate_limit_exceeded"
    async with session.post(emu.base_url + "/threads", json={}) as resp:
        assert resp.status == 429 and resp.headers["retry-after"] == "2"
    await api.post("/threads")
    assert emu.stats["faults"]["429"] == 2
    assert [r["fault"] for r in emu.requests] == ["429", "429", None]


@pytest.mark.parametrize("kind", ["500", "503"])
async def test_server_errors(emu: Emulator, api: Any, kind: str) -> None:
    """500 and 503 are OpenAI-shaped server errors and nothing is created."""
    emu.inject(kind, method="POST", path=r"/threads$")
    error = await api.post("/threads", status=int(kind))
    assert error["error"]["type"] == "server_error"
    assert emu.stats["faults"][kind] == 1
    assert emu.stats["requests"] == 1


async def test_reset_before_processing_creates_nothing(
    emu: Emulator, api: Any, session: Any
) -> None:
    """reset drops the connection without a response and without processing the request."""
    assistant = await api.assistant()
    thread = await api.thread("hi")
    emu.inject("reset", path=r"/runs$")
    with pytest.raises(aiohttp.ClientError):
        await session.post(
            f"{emu.base_url}/threads/{thread['id']}/runs", json={"assistant_id": assistant["id"]}
        )
    assert emu.runs(thread["id"]) == []


async def test_reset_after_processing_creates_the_run(
    emu: Emulator, api: Any, session: Any
) -> None:
    """reset_after processes the request (the run exists and proceeds) but sends no response."""
    assistant = await api.assistant()
    thread = await api.thread("hi")
    emu.inject("reset_after", path=r"/runs$")
    body = {"assistant_id": assistant["id"], "stream": True, "metadata": {"key": "k1"}}
    with pytest.raises(aiohttp.ClientError):
        await session.post(f"{emu.base_url}/threads/{thread['id']}/runs", json=body)
    (run,) = emu.runs(thread["id"])
    assert run["metadata"] == {"key": "k1"}
    done = await api.wait_run(thread["id"], run["id"], {"completed"})
    assert done["usage"] is not None


async def test_500_after_accepts_outputs_then_answers_500(emu: Emulator, api: Any) -> None:
    """500_after on submit: the outputs are accepted (run completes), the client sees 500."""
    assistant = await api.assistant()
    thread = await api.thread("/call get_weather {}")
    events = await api.stream(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    run = events[-2][1]
    (call,) = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    emu.inject("500_after", path=r"/submit_tool_outputs$")
    url = f"/threads/{thread['id']}/runs/{run['id']}/submit_tool_outputs"
    await api.post(
        url, {"tool_outputs": [{"tool_call_id": call["id"], "output": "ok"}]}, status=500
    )
    await api.wait_run(thread["id"], run["id"], {"completed"})
    assert emu.stats["tool_output_submissions"] == 1


async def test_cut_closes_the_stream_after_n_events_and_the_run_goes_on(
    emu: Emulator, api: Any, session: Any
) -> None:
    """cut sends N events then closes mid-stream; polling finds the run completed."""
    assistant = await api.assistant()
    thread = await api.thread("hi")
    emu.inject("cut", path=r"/runs$", after=3)
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(
            f"{emu.base_url}/threads/{thread['id']}/runs",
            json={"assistant_id": assistant["id"], "stream": True},
        ) as resp:
            async for chunk in resp.content.iter_any():
                received += chunk
    assert received.count(b"event: ") == 3
    (run,) = emu.runs(thread["id"])
    await api.wait_run(thread["id"], run["id"], {"completed"})


async def test_cut_only_hits_streaming_requests(emu: Emulator, api: Any) -> None:
    """A cut rule waits for a streaming request; plain requests pass untouched."""
    emu.inject("cut", after=0)
    await api.post("/threads")
    assert emu.stats["pending_injected_faults"] == 1


async def test_stall_keeps_the_stream_open_without_events(
    emu: Emulator, api: Any, session: Any
) -> None:
    """stall sends N events then nothing, without closing, until the client gives up."""
    assistant = await api.assistant()
    thread = await api.thread("hi")
    emu.inject("stall", after=2)
    received = b""
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            f"{emu.base_url}/threads/{thread['id']}/runs",
            json={"assistant_id": assistant["id"], "stream": True},
            timeout=aiohttp.ClientTimeout(sock_read=0.3),
        ) as resp:
            async for chunk in resp.content.iter_any():
                received += chunk
    assert received.count(b"event: ") == 2
    assert emu.get_run(emu.runs(thread["id"])[0]["id"])["status"] == "completed"


async def test_stall_before_any_event_still_sends_the_headers(
    emu: Emulator, api: Any, session: Any
) -> None:
    """Headers wait for a stream's first events; a stream stalled before any event still
    answers 200 with its SSE headers, then stays silent until the client gives up."""
    assistant = await api.assistant()
    thread = await api.thread("hi")
    emu.inject("stall", after=0)
    async with session.post(
        f"{emu.base_url}/threads/{thread['id']}/runs",
        json={"assistant_id": assistant["id"], "stream": True},
        timeout=aiohttp.ClientTimeout(sock_read=2.0),
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["x-request-id"].startswith("req_")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(resp.content.read(1), 0.3)


async def test_slow_delays_the_first_byte(emu: Emulator, api: Any) -> None:
    """slow holds the response back for the given milliseconds (generous bound)."""
    emu.inject("slow", ms=200)
    started = time.monotonic()
    await api.get("/assistants")
    assert time.monotonic() - started >= 0.19


def test_fault_spec_parse_and_errors() -> None:
    """The spec grammar parses rates and parameters and rejects nonsense."""
    spec = FaultSpec.parse(
        "429=0.05,503=0.05,reset=0.02,cut=0.02,slow=0.02,seed=7,retry_after_ms=200"
    )
    assert spec.rates["429"] == 0.05 and spec.seed == 7 and spec.retry_after_ms == 200
    assert FaultSpec.parse(spec.to_string()) == spec
    for bad in ("429=2", "teapot=0.1", "429", "429=0.6,500=0.6", "cut_after=x"):
        with pytest.raises(FaultSpecError):
            FaultSpec.parse(bad)


def test_random_faults_are_seeded() -> None:
    """The same seed gives the same fault sequence; rates are roughly honoured."""

    def sequence(seed: int) -> list[str | None]:
        injector = FaultInjector(FaultSpec.parse(f"429=0.2,500=0.1,seed={seed}"))
        return [
            (f.kind if (f := injector.choose("POST", "/v1/threads", False)) else None)
            for _ in range(500)
        ]

    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)
    assert 50 < sequence(3).count("429") < 150


async def test_random_faults_spare_control_endpoints(session: Any) -> None:
    """With every request failing, /_emulator endpoints still answer and count the faults."""
    async with Emulator(faults="503=1.0,seed=1") as emu:
        for _ in range(3):
            async with session.get(emu.base_url + "/assistants") as resp:
                assert resp.status == 503
        async with session.get(emu.url + "/_emulator/stats") as resp:
            stats = await resp.json()
        assert stats["faults"]["503"] == 3 and stats["faults_total"] == 3
        emu.faults = None
        async with session.get(emu.base_url + "/assistants") as resp:
            assert resp.status == 200


async def test_control_endpoints_set_faults_and_inject(emu: Emulator, session: Any) -> None:
    """POST /_emulator/faults and /_emulator/inject work across processes; bad input is 400."""
    async with session.post(
        emu.url + "/_emulator/inject", json={"kind": "503", "path": "/assistants", "retry_after": 3}
    ) as resp:
        assert resp.status == 200 and (await resp.json())["pending"] == 1
    async with session.get(emu.base_url + "/assistants") as resp:
        assert resp.status == 503 and resp.headers["retry-after"] == "3"
    async with session.post(emu.url + "/_emulator/inject", json={"kind": "teapot"}) as resp:
        assert resp.status == 400
    async with session.post(emu.url + "/_emulator/faults", json={"spec": "429=1,seed=2"}) as resp:
        assert resp.status == 200
    assert emu.faults.rates == {"429": 1.0}
    async with session.get(emu.base_url + "/assistants") as resp:
        assert resp.status == 429
    async with session.post(emu.url + "/_emulator/faults", json={"spec": "429=7"}) as resp:
        assert resp.status == 400
    async with session.post(emu.url + "/_emulator/faults", json={"spec": ""}) as resp:
        assert resp.status == 200
    async with session.get(emu.url + "/_emulator/requests", params={"limit": "2"}) as resp:
        log = (await resp.json())["data"]
    assert [entry["fault"] for entry in log] == ["503", "429"]
