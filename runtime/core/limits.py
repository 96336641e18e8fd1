"""Usage limits and prices: a run stops, cancelled, before a request that would pass a limit.

The loop checks :class:`UsageLimits` before every request that creates or continues a turn
(a start, a submission of tool outputs, a rerun) against what the run used so far (the
usage of the turns it has seen, the requests it sent, the tool calls it executed), and
before a tool round against the calls it would execute. Costs come from a price table
(:class:`ModelPrice` per model name, in USD per million tokens).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.core.backend import Usage


@dataclass(frozen=True)
class UsageLimits:
    """Most a run may use; every field is optional (None: no limit).

    Attributes:
        max_requests: requests sent to create or continue a turn (the HTTP client's retries
            of one request count once).
        max_input_tokens: input tokens over the run's turns.
        max_output_tokens: output tokens over the run's turns.
        max_total_tokens: total tokens over the run's turns.
        max_tool_calls: tool calls executed.
        max_cost: cost in USD (needs a price for the run's model; without one it cannot
            be known and the run is stopped before its next request).
    """

    max_requests: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_total_tokens: int | None = None
    max_tool_calls: int | None = None
    max_cost: float | None = None

    def reached(
        self, *, requests: int, usage: Usage, cost: float | None, priced: bool
    ) -> str | None:
        """Why the next request must not be sent (a readable reason), or None.

        Args:
            requests: requests sent so far.
            usage: the run's usage so far.
            cost: its cost so far (None when unknown).
            priced: every model the run used has a price.
        """
        counted: tuple[tuple[str, int | None, int], ...] = (
            ("max_requests", self.max_requests, requests),
            ("max_input_tokens", self.max_input_tokens, usage.input_tokens),
            ("max_output_tokens", self.max_output_tokens, usage.output_tokens),
            ("max_total_tokens", self.max_total_tokens, usage.total_tokens),
        )
        for name, limit, used in counted:
            if limit is not None and used >= limit:
                unit = "sent" if name == "max_requests" else "used"
                return f"{name} ({limit}) reached: {used} {unit}"
        if self.max_cost is not None:
            if cost is None or not priced:
                # Fail closed: a limit on an unknown cost cannot be kept.
                return f"max_cost ({self.max_cost:g}) cannot be checked: no price for the model"
            if cost >= self.max_cost:
                return f"max_cost ({self.max_cost:g}) reached: {cost:.6f} USD used"
        return None

    def tool_calls_exceeded(self, executed: int, new: int) -> str | None:
        """Why a round of ``new`` calls must not run after ``executed`` ones, or None."""
        limit = self.max_tool_calls
        if limit is not None and executed + new > limit:
            return f"max_tool_calls ({limit}) reached: {executed} executed, {new} more requested"
        return None


@dataclass(frozen=True)
class ModelPrice:
    """What one model costs, in USD per million tokens.

    Attributes:
        input_per_million: input tokens not served from the cache.
        output_per_million: output tokens (reasoning included).
        cached_input_per_million: cached input tokens (None: the input price).
    """

    input_per_million: float
    output_per_million: float
    cached_input_per_million: float | None = None

    def cost(self, usage: Usage) -> float:
        """The cost of ``usage`` in USD."""
        cached = usage.cached_tokens or 0
        cached_price = (
            self.input_per_million
            if self.cached_input_per_million is None
            else self.cached_input_per_million
        )
        fresh = max(usage.input_tokens - cached, 0)
        total = (
            fresh * self.input_per_million
            + cached * cached_price
            + usage.output_tokens * self.output_per_million
        )
        return total / 1_000_000


_SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")


def price_for(prices: Mapping[str, ModelPrice], model: str | None) -> ModelPrice | None:
    """The price of ``model``: its own entry, else, for a dated snapshot such as
    ``gpt-4o-2024-08-06``, its base name's (never another model's: ``gpt-4o-mini`` does not
    take the ``gpt-4o`` price)."""
    if model is None:
        return None
    if model in prices:
        return prices[model]
    snapshot = _SNAPSHOT.match(model)
    return prices.get(snapshot["base"]) if snapshot else None
