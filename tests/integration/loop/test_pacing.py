"""Rate pacing on both protocols, against the emulator's own request limit: paced clients
stay under it (no 429), unpaced ones hit it; limits learned from the service's headers; the
wait is bounded by max_wait_s and by the run's deadline."""

from __future__ import annotations

import asyncio
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime.errors import PacingTimeout
from runtime.otel import instrument, uninstrument
from runtime.pacing import LocalBuckets, RateLimits, RatePacer

from .conftest import Driver, OpenDriver, call, fast

RPM = 600.0  # 10 a second
# The emulator lets 4 through at once; the pacer never sends more than 2 (its bucket holds
# 0.2 s of refill): two requests of slack for the time a request takes to arrive (on a
# loaded machine, requests the pacer let go 0.1 s apart can reach the server together).
SERVICE = {"rate_limit_rpm": RPM, "rate_limit_burst": 4}
RUNS = 6  # each a tool round: 12 model requests, at least 1 s of the limit


def pacer(**changes: object) -> RatePacer:
    """A pacer with buckets of its own (not the process's), for one test."""
    values: dict[str, object] = {
        "limits": {"default": RateLimits(requests_per_minute=RPM)},
        "store": LocalBuckets(),
        "burst_s": 0.2,
    }
    values.update(changes)
    return RatePacer(**values)  # type: ignore[arg-type]


async def _burst(driver: Driver) -> list[str]:
    results = await asyncio.gather(*(driver.run(call("add", a=i, b=1)) for i in range(RUNS)))
    return [r.status for r in results]


async def test_paced_runs_stay_under_the_services_limit(open_driver: OpenDriver) -> None:
    """Concurrent runs sharing a pacer configured with the service's limit send no request
    the service refuses, and some of them waited for their bucket."""
    paced = pacer()
    driver = await open_driver(emulator=SERVICE, client={"pacer": paced})
    assert await _burst(driver) == ["completed"] * RUNS
    assert driver.emu.stats.get("rate_limited", 0) == 0
    assert paced.waits > 0 and paced.waited_s > 0


async def test_unpaced_runs_hit_the_services_limit(open_driver: OpenDriver) -> None:
    """The same load without a pacer is refused (429) by the service again and again: the
    limit is real, and pacing is what avoids it."""
    driver = await open_driver(emulator=SERVICE)
    await asyncio.gather(
        *(driver.run(call("add", a=i, b=1)) for i in range(RUNS)), return_exceptions=True
    )
    assert driver.emu.stats.get("rate_limited", 0) > RUNS


async def test_limits_are_learned_from_the_services_headers(open_driver: OpenDriver) -> None:
    """A pacer with no configured limit learns it from x-ratelimit-limit-requests on the
    first answer, and paces the burst that follows under it."""
    paced = pacer(limits={})
    driver = await open_driver(emulator=SERVICE, client={"pacer": paced})
    first = await driver.run("hello")
    assert first.status == "completed"
    assert paced.waits == 0, "nothing to pace before the limit is known"
    await asyncio.sleep(0.3)  # the service's bucket refills after the first run
    assert await _burst(driver) == ["completed"] * RUNS
    assert driver.emu.stats.get("rate_limited", 0) == 0
    assert paced.waits > 0


async def test_a_wait_past_max_wait_s_fails_without_sending(open_driver: OpenDriver) -> None:
    """A request whose bucket would hold it past max_wait_s raises PacingTimeout and is
    never sent."""
    paced = pacer(limits={"default": RateLimits(requests_per_minute=1)}, max_wait_s=0.2)
    driver = await open_driver(client={"pacer": paced}, policy=fast(create_attempts=1))
    assert (await driver.run("first")).status == "completed"
    sent = driver.start_requests()
    with pytest.raises(PacingTimeout, match="max_wait_s"):
        await driver.run("second")
    assert driver.start_requests() == sent


async def test_the_wait_is_bounded_by_the_runs_deadline(open_driver: OpenDriver) -> None:
    """A run whose bucket is empty waits no longer than its total deadline: it ends expired
    at the deadline, and its request was never sent."""
    paced = pacer(limits={"default": RateLimits(requests_per_minute=1)}, max_wait_s=120.0)
    driver = await open_driver(client={"pacer": paced}, policy=fast(total_deadline_s=0.5))
    assert (await driver.run("first")).status == "completed"
    sent = driver.start_requests()
    began = time.monotonic()
    result = await driver.run("second")
    assert result.status == "expired" and result.stopped_by == "total_deadline"
    assert time.monotonic() - began < 5.0
    assert driver.start_requests() == sent


async def test_a_token_limit_paces_by_the_requests_size(open_driver: OpenDriver) -> None:
    """With only a tokens-per-minute limit, requests wait for the tokens their size costs:
    the bucket refuses a second large request until it has refilled."""
    clock = [0.0]
    buckets = LocalBuckets(clock=lambda: clock[0])
    limits = RateLimits(tokens_per_minute=6000)  # 100 a second
    burst = 1.0
    assert await buckets.take("k", limits, 80, burst) == 0.0
    wait = await buckets.take("k", limits, 80, burst)
    assert wait == pytest.approx(0.6)  # 20 left, 80 needed, 100 a second
    clock[0] += wait
    assert await buckets.take("k", limits, 80, burst) == 0.0
    await buckets.lower("k", None, 0)  # the service says no tokens are left
    assert await buckets.take("k", limits, 50, burst) == pytest.approx(0.5)


async def test_a_pacing_wait_is_an_event_of_the_requests_span(open_driver: OpenDriver) -> None:
    """With tracing on, a request that waited for its bucket has a ``runtime.rate_paced``
    event (with the seconds waited) on its chat span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(provider)
    try:
        paced = pacer()
        driver = await open_driver(emulator=SERVICE, client={"pacer": paced})
        assert await _burst(driver) == ["completed"] * RUNS
    finally:
        uninstrument()
    events = [
        e
        for s in exporter.get_finished_spans()
        if s.name.startswith("chat")
        for e in s.events
        if e.name == "runtime.rate_paced"
    ]
    assert len(events) == paced.waits > 0
    assert all(float((e.attributes or {})["waited_s"]) > 0 for e in events)
