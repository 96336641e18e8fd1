"""Rate pacing shared by a fleet through a real Redis: processes with their own Redis
connections share one bucket and together stay under the service's limit (the emulator's),
where buckets of their own would not; a Redis outage leaves requests unpaced, not stopped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from worker_harness import REDIS_URL

import runtime.retry
from runtime.config import ConfigError
from runtime.emulator import Emulator
from runtime.pacing import (
    BucketStore,
    LocalBuckets,
    RateLimits,
    RatePacer,
    RedisBuckets,
    pacer_from_settings,
)
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from runtime.worker.metrics import WorkerMetrics
from runtime.worker.settings import load_worker_settings
from tools import ToolRegistry

RPM = 600.0
WORKERS = 3
RUNS_EACH = 4
#: The service's burst: two requests above the pacers' own (0.2 s at 10/s), so arrivals that a
#: loaded machine bunches together are not refused; a bucket per worker (6 at once) still is.
SERVICE_BURST = 4

registry = ToolRegistry()


@registry.tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _call(a: int) -> str:
    return "/call add " + json.dumps({"a": a, "b": 1})


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Any:
    runtime.retry.set_testing(True)  # a 429 storm shows at once, not after backoffs
    yield
    runtime.retry.set_testing(False)


async def _fleet(emu: Emulator, stores: list[BucketStore]) -> list[RatePacer]:
    """WORKERS clients, one pacer each over its store, running RUNS_EACH runs each at once."""
    pacers = [
        RatePacer(limits={"gpt-4o": RateLimits(requests_per_minute=RPM)}, store=s, burst_s=0.2)
        for s in stores
    ]
    async with AsyncExitStack() as stack:
        runs = []
        for pacer in pacers:
            client = await stack.enter_async_context(
                ResponsesClient(base_url=emu.base_url, api_key="sk-fleet-key-0123", pacer=pacer)
            )
            orch = ResponsesOrchestrator(client, registry)
            runs += [orch.run(_call(i), model="gpt-4o") for i in range(RUNS_EACH)]
        await asyncio.gather(*runs, return_exceptions=True)
    return pacers


@pytest.fixture
async def redis_clients(redis_prefix: str) -> AsyncIterator[list[Any]]:
    """One Redis connection per simulated worker process."""
    clients = [aioredis.Redis.from_url(REDIS_URL) for _ in range(WORKERS)]
    yield clients
    for client in clients:
        await client.aclose()


async def test_a_fleet_sharing_redis_buckets_stays_under_the_limit(
    redis_clients: list[Any], redis_prefix: str
) -> None:
    """Three workers, each with its own Redis connection, pace through one Redis bucket:
    the service refuses none of their requests, and they waited for it."""
    async with Emulator(rate_limit_rpm=RPM, rate_limit_burst=SERVICE_BURST) as emu:
        stores: list[BucketStore] = [RedisBuckets(c, prefix=redis_prefix) for c in redis_clients]
        pacers = await _fleet(emu, stores)
        assert emu.stats.get("rate_limited", 0) == 0
        assert emu.stats.get("responses_completed", 0) == 2 * WORKERS * RUNS_EACH  # a tool round
    assert sum(p.waits for p in pacers) > 0
    keys = [k async for k in redis_clients[0].scan_iter(match=f"{redis_prefix}:pace:*")]
    assert len(keys) == 1, "one bucket: the key's fingerprint and the model"
    assert b"sk-fleet-key" not in keys[0], "the API key is never stored"


async def test_workers_with_buckets_of_their_own_hit_the_limit() -> None:
    """The same fleet with a bucket per process (each believing it has the whole limit) is
    refused by the service: sharing the bucket is what keeps the fleet under it."""
    async with Emulator(rate_limit_rpm=RPM, rate_limit_burst=SERVICE_BURST) as emu:
        await _fleet(emu, [LocalBuckets() for _ in range(WORKERS)])
        assert emu.stats.get("rate_limited", 0) > 0


async def test_an_unreachable_redis_leaves_requests_unpaced_not_stopped() -> None:
    """With the bucket store down, runs still complete (unpaced) and the outage is logged."""
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    pacer = RatePacer(
        limits={"default": RateLimits(requests_per_minute=RPM)}, store=RedisBuckets(dead)
    )
    try:
        with structlog.testing.capture_logs() as logs:
            async with (
                Emulator() as emu,
                ResponsesClient(base_url=emu.base_url, api_key="sk-x-key", pacer=pacer) as c,
            ):
                result = await ResponsesOrchestrator(c, registry).run(_call(1))
    finally:
        await dead.aclose()
    assert result.status == "completed"
    assert any(e["event"] == "runtime.pacing_unavailable" for e in logs)


def test_pacing_is_configured_in_the_worker_file_and_its_waits_are_a_metric(
    tmp_path: Any,
) -> None:
    """[pacing] of worker.toml gives the limits by model; the worker's metrics have the
    pacing wait histogram."""
    config = tmp_path / "worker.toml"
    config.write_text(
        "[queue]\nbackend = 'redis'\n[pacing]\nenabled = true\nstore = 'redis'\nburst_s = 0.5\n"
        "[rate_limits.default]\nrequests_per_minute = 500\ntokens_per_minute = 30000\n"
    )
    settings = load_worker_settings(config)
    assert settings.pacing.enabled and settings.pacing.store == "redis"
    assert settings.rate_limits["default"].requests_per_minute == 500
    pacer = pacer_from_settings(settings, LocalBuckets())
    assert pacer is not None and pacer.burst_s == 0.5
    assert pacer.limits == {"default": RateLimits(500, 30000)}
    assert settings.runtime_settings().pacing == settings.pacing
    metrics = WorkerMetrics()
    metrics.pacing_wait.observe(0.25)
    text = metrics.render().decode()
    assert "agent_worker_pacing_wait_seconds_count 1.0" in text
    config.write_text("[queue]\nbackend = 'sqlite'\n[pacing]\nenabled = true\nstore = 'redis'\n")
    with pytest.raises(ConfigError, match=r"needs queue\.backend"):
        load_worker_settings(config)
