"""Fixtures of the worker end-to-end tests: an in-process emulator, an assistant, redis."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from runtime import AssistantsClient
from runtime.emulator import Emulator

# The helpers and the tool module live beside this file (tests are not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker_harness import REDIS_URL, redis_skip_reason


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An emulator on a loopback port, serving the worker subprocesses."""
    async with Emulator() as emu:
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[AssistantsClient]:
    """A client of the emulator (for setup and checks)."""
    async with AssistantsClient(base_url=emulator.base_url, api_key="sk-worker-test-key") as c:
        yield c


@pytest.fixture
async def assistant_id(client: AssistantsClient) -> str:
    """An assistant on the emulator."""
    return (await client.create_assistant(model="gpt-4o", name="worker-test")).id


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A fresh key prefix on the test redis-server (skips without one); keys removed after."""
    if reason := redis_skip_reason():
        pytest.skip(reason)
    prefix = f"wtest-{uuid.uuid4().hex[:10]}"
    yield prefix
    r = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in r.scan_iter(match=f"{prefix}:*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()
