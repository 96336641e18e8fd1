"""Usage limits, on both protocols: checked before every request, a run that reached one is
cancelled with the limit named; costs from a price table."""

from __future__ import annotations

from typing import Any

import pytest

from runtime import ModelPrice, RunResult, UsageLimits

from .conftest import Driver, OpenDriver, Probe, call, fast, lines

GPT_4O = ModelPrice(input_per_million=2.5, output_per_million=10.0, cached_input_per_million=1.25)
PRICES = {"gpt-4o": GPT_4O}


def sequential(calls: int) -> tuple[str, dict[str, Any]]:
    """A model that asks for ``calls`` tool rounds of one call each, then answers."""
    return lines(*(call("add", a=i, b=i) for i in range(calls))), {"parallel_tool_calls": False}


async def stopped_after(driver: Driver, result: RunResult[Any]) -> None:
    """The run ended as a usage limit ends it, and nothing stays active on the server."""
    assert result.status == "cancelled", result
    assert result.stopped_by == "usage_limit"
    await driver.wait_settled()
    assert driver.active_turns() == 0
    if driver.is_assistants:
        assert driver.emu.get_run(result.run_id or "")["status"] == "cancelled"


def sent(driver: Driver) -> int:
    """Start and submit requests the server received."""
    return driver.start_requests() + len(driver.submit_requests())


async def test_max_requests_stops_before_the_request_past_it(
    open_driver: OpenDriver, probe: Probe
) -> None:
    """max_requests=2 with a two-round model: the start and the first submit reach the
    server, the second round runs no tool and its submit is never sent."""
    driver = await open_driver(policy=fast(usage_limits=UsageLimits(max_requests=2)))
    text, params = sequential(2)
    result = await driver.run(text, **params)
    await stopped_after(driver, result)
    assert result.reason == "max_requests (2) reached: 2 sent"
    assert result.requests == 2
    assert driver.start_requests() == 1 and len(driver.submit_requests()) == 1
    assert probe.total == 1 and result.rounds == 1


async def test_a_retried_submit_counts_once(open_driver: OpenDriver, probe: Probe) -> None:
    """A 500 on the submit that the HTTP client retries is one request of the run: with
    max_requests=3 a three-round model still gets its second submit, not its third."""
    driver = await open_driver(policy=fast(usage_limits=UsageLimits(max_requests=3)))
    driver.inject_on_submit("500")
    text, params = sequential(3)
    result = await driver.run(text, **params)
    await stopped_after(driver, result)
    assert driver.emu.stats["faults"]["500"] == 1
    assert result.reason == "max_requests (3) reached: 3 sent"
    assert result.requests == 3
    assert probe.total == 2 and result.rounds == 2
    assert len({tuple(o["call_id"] for o in batch) for batch in driver.submit_requests()}) == 2


async def test_max_tool_calls_refuses_the_round_past_it(
    open_driver: OpenDriver, probe: Probe
) -> None:
    """max_tool_calls=2 with three one-call rounds: two calls run, the third round is
    refused before it runs and its turn is cancelled."""
    driver = await open_driver(policy=fast(usage_limits=UsageLimits(max_tool_calls=2)))
    text, params = sequential(3)
    result = await driver.run(text, **params)
    await stopped_after(driver, result)
    assert result.reason == "max_tool_calls (2) reached: 2 executed, 1 more requested"
    assert probe.total == len(result.tool_calls) == 2
    assert result.requests == sent(driver) == 3


@pytest.mark.parametrize(
    ("limit", "counter"),
    [
        ("max_total_tokens", "total_tokens"),
        ("max_input_tokens", "input_tokens"),
        ("max_output_tokens", "output_tokens"),
    ],
)
async def test_token_limits_stop_at_the_exact_count(
    driver: Driver, probe: Probe, limit: str, counter: str
) -> None:
    """With the emulator's deterministic usage: a limit equal to what the first turn used
    stops the run before any tool runs; one above it lets one round through and stops
    the next, the reason quoting the tokens the run used."""
    text, params = sequential(2)
    first = await driver.run(text, usage_limits=UsageLimits(max_requests=1), **params)
    used = getattr(first.usage, counter)
    assert used > 0

    at = await driver.run(text, usage_limits=UsageLimits(**{limit: used}), **params)
    await stopped_after(driver, at)
    assert at.reason == f"{limit} ({used}) reached: {used} used"
    assert at.requests == 1 and at.rounds == 0 and probe.total == 0

    above = await driver.run(text, usage_limits=UsageLimits(**{limit: used + 1}), **params)
    await stopped_after(driver, above)
    now = getattr(above.usage, counter)
    assert now > used
    assert above.reason == f"{limit} ({used + 1}) reached: {now} used"
    assert above.requests == 2 and above.rounds == 1 and probe.total == 1


async def test_cost_comes_from_the_price_table(open_driver: OpenDriver) -> None:
    """result.cost is the run's usage priced by the table (USD per million tokens) for the
    model the server reports."""
    driver = await open_driver(policy=fast(prices=PRICES))
    result = await driver.run(call("add", a=1, b=2))
    assert result.status == "completed" and result.usage is not None
    assert result.raw is not None and result.raw.model == "gpt-4o"
    usage = result.usage
    expected = (usage.input_tokens * 2.5 + usage.output_tokens * 10.0) / 1_000_000
    assert expected > 0
    assert result.cost == pytest.approx(expected)


async def test_no_price_no_cost(driver: Driver) -> None:
    """A model without a price gives no cost (None), never a made-up 0."""
    result = await driver.run("hello")
    assert result.status == "completed" and result.usage is not None
    assert result.cost is None


async def test_max_cost_stops_the_run(open_driver: OpenDriver, probe: Probe) -> None:
    """A cost limit below what the first turn cost stops the run before its first submit;
    the reason quotes the cost."""
    limits = UsageLimits(max_cost=1e-9)
    driver = await open_driver(policy=fast(prices=PRICES, usage_limits=limits))
    text, params = sequential(2)
    result = await driver.run(text, **params)
    await stopped_after(driver, result)
    assert result.cost is not None and result.cost >= 1e-9
    assert result.reason == f"max_cost (1e-09) reached: {result.cost:.6f} USD used"
    assert result.requests == 1 and probe.total == 0


async def test_max_cost_without_a_price_fails_closed(open_driver: OpenDriver, probe: Probe) -> None:
    """max_cost on a model the table does not price cannot be kept: the run stops before
    its next request instead of running unbounded."""
    limits = UsageLimits(max_cost=100.0)
    driver = await open_driver(policy=fast(prices={"other-model": GPT_4O}, usage_limits=limits))
    text, params = sequential(1)
    result = await driver.run(text, **params)
    await stopped_after(driver, result)
    assert result.reason == "max_cost (100) cannot be checked: no price for the model"
    assert result.requests == 1 and probe.total == 0


async def test_a_run_within_its_limits_completes(open_driver: OpenDriver, probe: Probe) -> None:
    """Limits that are not reached change nothing: the run completes and counts its
    requests."""
    limits = UsageLimits(max_requests=3, max_tool_calls=2, max_total_tokens=10_000)
    driver = await open_driver(policy=fast(usage_limits=limits))
    text, params = sequential(2)
    result = await driver.run(text, **params)
    assert result.status == "completed" and result.stopped_by is None
    assert result.requests == sent(driver) == 3
    assert probe.total == 2
