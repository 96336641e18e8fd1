"""Fixtures for the worker unit tests: one factory per queue backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runtime.worker.memory import MemoryQueue
from runtime.worker.queue import JobQueue
from runtime.worker.redis import RedisQueue
from runtime.worker.sqlite import SqliteQueue

REDIS_URL = os.environ.get("RUNTIME_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")

QueueFactory = Callable[..., Awaitable[JobQueue]]


async def _redis_reachable() -> str | None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        await client.ping()
        return None
    except (RedisError, OSError) as exc:
        return f"no redis-server at {REDIS_URL} ({exc}); start one with .ci/redis.sh"
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueFactory]:
    """Build queues of one backend; all queues built in one test share the same store."""
    backend: str = request.param
    if backend == "redis" and (reason := await _redis_reachable()):
        pytest.skip(reason)
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    made: list[JobQueue] = []
    shared_memory: dict[str, MemoryQueue] = {}

    async def factory(*, lease_s: float = 30.0, max_deliveries: int = 5) -> JobQueue:
        queue: JobQueue
        if backend == "memory":
            # The memory backend cannot be shared between objects: hand out the same one.
            if "q" not in shared_memory:
                shared_memory["q"] = MemoryQueue(lease_s=lease_s, max_deliveries=max_deliveries)
            return shared_memory["q"]
        if backend == "sqlite":
            queue = SqliteQueue(
                tmp_path / "jobs.db", lease_s=lease_s, max_deliveries=max_deliveries
            )
        else:
            queue = RedisQueue(
                REDIS_URL, prefix=prefix, lease_s=lease_s, max_deliveries=max_deliveries
            )
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.aclose()
    if backend == "redis":
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
