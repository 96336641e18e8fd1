"""Fault injection: seeded random faults per request, plus deterministic one-shot rules.

Spec grammar (CLI ``--faults``, :meth:`FaultSpec.parse`, ``POST /_emulator/faults``)::

    spec   := item ("," item)*
    item   := KIND "=" PROBABILITY | PARAM "=" VALUE
    KIND   := 429 | 500 | 503 | reset | reset_after | 500_after | cut | stall | slow
    PARAM  := seed | retry_after | retry_after_ms | cut_after | stall_after | slow_ms | paths

Example: ``429=0.05,503=0.05,reset=0.02,cut=0.02,slow=0.02,seed=7,retry_after_ms=200``.
``paths`` is a regular expression limiting random faults to matching request paths.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("429", "500", "503", "reset", "reset_after", "500_after", "cut", "stall", "slow")
STREAM_ONLY = frozenset({"cut", "stall"})
_PARAMS = {
    "retry_after": float,
    "retry_after_ms": int,
    "cut_after": int,
    "stall_after": int,
    "slow_ms": int,
}


class FaultSpecError(ValueError):
    """A fault spec string or rule is malformed."""


@dataclass(frozen=True)
class Fault:
    """One fault to apply to one request.

    Attributes:
        kind: one of :data:`FAULT_KINDS`.
        params: kind parameters: ``retry_after`` (s) / ``retry_after_ms`` for 429 and 503,
            ``after`` (events) for cut and stall, ``ms`` for slow.
    """

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """A short label for logs and the request log."""
        return self.kind


@dataclass(frozen=True)
class FaultSpec:
    """Random faults: a probability per kind, a seed and kind parameters.

    Attributes:
        rates: probability per fault kind (each request draws once; rates add up).
        seed: seed of the fault random generator.
        retry_after: seconds sent in ``retry-after`` with 429/503 (unless retry_after_ms).
        retry_after_ms: milliseconds sent in ``retry-after-ms`` with 429/503, if set.
        cut_after: number of SSE events sent before a ``cut``.
        stall_after: number of SSE events sent before a ``stall``.
        slow_ms: first-byte delay of ``slow``.
        paths: regular expression limiting random faults to some paths (None: all API paths).
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after: float = 1.0
    retry_after_ms: int | None = None
    cut_after: int = 3
    stall_after: int = 3
    slow_ms: int = 500
    paths: str | None = None

    @classmethod
    def parse(cls, spec: str) -> FaultSpec:
        """Parse ``"429=0.05,reset=0.02,seed=7,..."`` (see the module doc for the grammar)."""
        rates: dict[str, float] = {}
        params: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep:
                raise FaultSpecError(f"expected KEY=VALUE, got {item!r}")
            try:
                if key in FAULT_KINDS:
                    rates[key] = _probability(key, float(value))
                elif key == "seed":
                    params["seed"] = int(value)
                elif key == "paths":
                    re.compile(value)
                    params["paths"] = value
                elif key in _PARAMS:
                    params[key] = _PARAMS[key](value)
                else:
                    raise FaultSpecError(f"unknown fault kind or parameter {key!r}")
            except (ValueError, re.error) as exc:
                if isinstance(exc, FaultSpecError):
                    raise
                raise FaultSpecError(f"bad value for {key!r}: {value!r}") from exc
        if sum(rates.values()) > 1.0 + 1e-9:
            raise FaultSpecError("fault probabilities add up to more than 1")
        return cls(rates=rates, **params)

    def to_string(self) -> str:
        """Render back to the spec grammar."""
        parts = [f"{k}={v:g}" for k, v in self.rates.items()]
        parts.append(f"seed={self.seed}")
        parts.append(f"retry_after={self.retry_after:g}")
        if self.retry_after_ms is not None:
            parts.append(f"retry_after_ms={self.retry_after_ms}")
        parts += [f"cut_after={self.cut_after}", f"stall_after={self.stall_after}"]
        parts.append(f"slow_ms={self.slow_ms}")
        if self.paths:
            parts.append(f"paths={self.paths}")
        return ",".join(parts)

    def fault_for(self, kind: str) -> Fault:
        """The :class:`Fault` this spec produces for a kind."""
        if kind in {"429", "503"}:
            if self.retry_after_ms is not None:
                return Fault(kind, {"retry_after_ms": self.retry_after_ms})
            return Fault(kind, {"retry_after": self.retry_after})
        if kind == "cut":
            return Fault(kind, {"after": self.cut_after})
        if kind == "stall":
            return Fault(kind, {"after": self.stall_after})
        if kind == "slow":
            return Fault(kind, {"ms": self.slow_ms})
        return Fault(kind)


def _probability(kind: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(f"probability of {kind!r} must be within [0, 1], got {value}")
    return value


@dataclass
class FaultRule:
    """A deterministic fault for the next ``times`` matching requests.

    Attributes:
        fault: the fault to apply.
        method: HTTP method to match (None: any).
        path: regular expression searched in the request path (None: any API path).
        times: how many matching requests still get it.
    """

    fault: Fault
    method: str | None = None
    path: re.Pattern[str] | None = None
    times: int = 1

    def matches(self, method: str, path: str, streaming: bool) -> bool:
        """Whether this rule applies to a request."""
        if self.times <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is not None and not self.path.search(path):
            return False
        return streaming or self.fault.kind not in STREAM_ONLY


def make_rule(
    kind: str, *, method: str | None = None, path: str | None = None, times: int = 1, **params: Any
) -> FaultRule:
    """Build a :class:`FaultRule`, validating kind and parameters."""
    if kind not in FAULT_KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r} (expected one of {FAULT_KINDS})")
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise FaultSpecError(f"times must be an integer of at least 1, got {times!r}")
    allowed = {
        "429": {"retry_after", "retry_after_ms"},
        "503": {"retry_after", "retry_after_ms"},
        "cut": {"after"},
        "stall": {"after"},
        "slow": {"ms"},
    }.get(kind, set())
    unknown = set(params) - allowed
    if unknown:
        raise FaultSpecError(f"fault {kind!r} takes no parameter(s) {sorted(unknown)}")
    params = {name: _param_value(kind, name, value) for name, value in params.items()}
    if method is not None and not isinstance(method, str):
        raise FaultSpecError(f"method must be a string, got {method!r}")
    if path is not None and not isinstance(path, str):
        raise FaultSpecError(f"path must be a regular expression string, got {path!r}")
    try:
        pattern = re.compile(path) if path else None
    except re.error as exc:
        raise FaultSpecError(f"bad path regular expression {path!r}: {exc}") from None
    defaults: dict[str, Any] = {
        "cut": {"after": 3},
        "stall": {"after": 3},
        "slow": {"ms": 500},
    }.get(kind, {})
    if kind in {"429", "503"} and not params:
        defaults = {"retry_after": 1}
    return FaultRule(
        fault=Fault(kind, {**defaults, **params}),
        method=method,
        path=pattern,
        times=times,
    )


_RULE_PARAMS: dict[str, type[int] | type[float]] = {
    "retry_after": float,
    "retry_after_ms": int,
    "after": int,
    "ms": float,
}


def _param_value(kind: str, name: str, value: Any) -> int | float:
    """A rule parameter as a non-negative number (so a bad one fails here, not at a request)."""
    convert = _RULE_PARAMS[name]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FaultSpecError(f"fault {kind!r}: {name} must be a number, got {value!r}")
    try:
        number = convert(value)
    except ValueError:
        raise FaultSpecError(f"fault {kind!r}: {name} must be a number, got {value!r}") from None
    if number != number or number < 0 or number == float("inf"):
        raise FaultSpecError(f"fault {kind!r}: {name} must be a finite number >= 0")
    return number


class FaultInjector:
    """Chooses the fault (if any) for each API request: injected rules first, then random."""

    def __init__(self, spec: FaultSpec | None = None) -> None:
        self._spec = spec or FaultSpec()
        self._rng = random.Random(f"faults:{self._spec.seed}")
        self._rules: list[FaultRule] = []
        self.counts: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)

    @property
    def spec(self) -> FaultSpec:
        """The random fault spec in force."""
        return self._spec

    @spec.setter
    def spec(self, spec: FaultSpec) -> None:
        self._spec = spec
        self._rng = random.Random(f"faults:{spec.seed}")

    def add_rule(self, rule: FaultRule) -> None:
        """Queue a deterministic rule (checked in the order added)."""
        self._rules.append(rule)

    def clear_rules(self) -> None:
        """Drop all pending deterministic rules."""
        self._rules.clear()

    @property
    def pending_rules(self) -> int:
        """How many injected faults are still waiting for a request."""
        return sum(r.times for r in self._rules)

    def choose(self, method: str, path: str, streaming: bool) -> Fault | None:
        """Pick the fault for one request and count it."""
        if not self._rules and not self._spec.rates:
            return None  # the usual case: no fault configured
        fault = self._from_rules(method, path, streaming) or self._random(path, streaming)
        if fault is not None:
            self.counts[fault.kind] += 1
        return fault

    def _from_rules(self, method: str, path: str, streaming: bool) -> Fault | None:
        for rule in self._rules:
            if rule.matches(method, path, streaming):
                rule.times -= 1
                if rule.times <= 0:
                    self._rules.remove(rule)
                return rule.fault
        return None

    def _random(self, path: str, streaming: bool) -> Fault | None:
        spec = self._spec
        if not spec.rates:
            return None
        if spec.paths and not re.search(spec.paths, path):
            return None
        draw = self._rng.random()
        for kind in FAULT_KINDS:
            rate = spec.rates.get(kind, 0.0)
            if draw < rate:
                if kind in STREAM_ONLY and not streaming:
                    return None
                return spec.fault_for(kind)
            draw -= rate
        return None
