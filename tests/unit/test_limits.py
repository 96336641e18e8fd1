"""UsageLimits and the price table: reasons at the exact count, prices by model name."""

from __future__ import annotations

import pytest

from runtime import ModelPrice, Usage, UsageLimits
from runtime.core.limits import price_for

GPT_4O = ModelPrice(input_per_million=2.5, output_per_million=10.0, cached_input_per_million=1.25)


def test_a_dated_snapshot_takes_its_base_price_and_no_other_model_does() -> None:
    """gpt-4o-2024-08-06 is priced as gpt-4o; gpt-4o-mini is not (no price); None is none."""
    prices = {"gpt-4o": GPT_4O}
    assert price_for(prices, "gpt-4o") is GPT_4O
    assert price_for(prices, "gpt-4o-2024-08-06") is GPT_4O
    assert price_for(prices, "gpt-4o-mini") is None
    assert price_for(prices, None) is None


def test_cached_input_tokens_take_the_cached_price() -> None:
    """1M input of which 400k cached, 100k output: 600k x 2.5 + 400k x 1.25 + 100k x 10."""
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cached_tokens=400_000)
    assert GPT_4O.cost(usage) == pytest.approx(1.5 + 0.5 + 1.0)
    assert ModelPrice(2.0, 4.0).cost(usage) == pytest.approx(2.0 + 0.4)


def test_limits_are_reached_at_the_limit_not_past_it() -> None:
    """A limit is reached when the usage equals it (the next request would pass it)."""
    limits = UsageLimits(max_total_tokens=1000)
    below = Usage(total_tokens=999)
    at = Usage(total_tokens=1000)
    assert limits.reached(requests=5, usage=below, cost=None, priced=False) is None
    reason = limits.reached(requests=5, usage=at, cost=None, priced=False)
    assert reason == "max_total_tokens (1000) reached: 1000 used"
    assert UsageLimits().reached(requests=10**6, usage=at, cost=None, priced=False) is None
