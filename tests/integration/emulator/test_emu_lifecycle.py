"""Emulator lifecycle: start/close, shutdown with open streams and timers, refusals."""

from __future__ import annotations

import asyncio
import string
from typing import Any

import aiohttp
import pytest

from runtime.emulator import Emulator, EmulatorError
from runtime.emulator.ids import IdFactory


async def test_close_reaps_open_streams_and_timers(session: aiohttp.ClientSession) -> None:
    """aclose ends a slow open stream and a pending expiry timer, and the port stops answering."""
    emu = await Emulator(delta_delay_s=0.05).start()
    base = emu.base_url
    async with session.post(base + "/assistants", json={"model": "gpt-4o"}) as resp:
        assistant = await resp.json()
    async with session.post(
        base + "/threads", json={"messages": [{"role": "user", "content": "/call f {}"}]}
    ) as resp:
        waiting = await resp.json()
    async with session.post(
        f"{base}/threads/{waiting['id']}/runs", json={"assistant_id": assistant["id"]}
    ) as resp:
        run = await resp.json()
    while emu.get_run(run["id"])["status"] != "requires_action":
        await asyncio.sleep(0.01)

    async def slow_stream() -> bytes:
        body = {
            "assistant_id": assistant["id"],
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": "word " * 200}]},
        }
        async with session.post(base + "/threads/runs", json=body) as resp:
            return await resp.read()

    reader = asyncio.create_task(slow_stream())
    await asyncio.sleep(0.2)
    await asyncio.wait_for(emu.aclose(), timeout=10)
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(reader, timeout=10)
    with pytest.raises(aiohttp.ClientError):
        await session.get(base + "/assistants")
    with pytest.raises(EmulatorError):
        await emu.start()
    await emu.aclose()  # idempotent


async def test_non_loopback_host_needs_consent() -> None:
    """A non-loopback host is refused unless allow_remote is given."""
    with pytest.raises(EmulatorError):
        Emulator(host="0.0.0.0")
    emulator = Emulator(host="0.0.0.0", allow_remote=True)
    assert "new" in repr(emulator)


async def test_base_urls_and_port(emu: Emulator) -> None:
    """url, base_url and azure_endpoint agree on the bound ephemeral port."""
    assert emu.port > 0
    assert emu.base_url == f"http://127.0.0.1:{emu.port}/v1"
    assert emu.azure_endpoint == emu.url == f"http://127.0.0.1:{emu.port}"


async def test_ids_are_seeded(session: Any) -> None:
    """Two emulators with the same seed hand out the same ids in the same order."""
    ids = []
    for _ in range(2):
        async with (
            Emulator(seed=42) as emu,
            session.post(emu.base_url + "/threads", json={}) as resp,
        ):
            ids.append((await resp.json())["id"])
    assert ids[0] == ids[1] and ids[0].startswith("thread_") and len(ids[0]) == 31


def test_ids_keep_the_service_format_and_do_not_repeat() -> None:
    """Ids are the prefix, an underscore and 24 letters and digits, all distinct, and every
    letter and digit turns up (no symbol left out of the alphabet)."""
    factory = IdFactory(3)
    made = [factory.new(prefix) for prefix in ("run", "msg", "call", "resp") for _ in range(5000)]
    assert len(set(made)) == len(made)
    for made_id in made:
        prefix, tail = made_id.split("_")
        assert prefix in {"run", "msg", "call", "resp"} and len(tail) == 24 and tail.isalnum()
        assert tail.isascii()
    assert set("".join(i.split("_")[1] for i in made)) == set(string.ascii_letters + string.digits)
    assert IdFactory(3).new("run") == made[0] != IdFactory(4).new("run")
    assert len(factory.new("step", length=8)) == len("step_") + 8
