"""Rate pacing: a token bucket per model and API key, so clients stay under the provider's
limits instead of discovering them by 429 storms.

A client given a :class:`RatePacer` (``HTTPClient(pacer=...)``, or ``[pacing]`` in the
config) waits for its bucket before every request that makes the model work: creating a
run (``POST .../runs``), submitting tool outputs and creating a response (``POST
.../responses``), each attempt of the client's retries included. Other requests (polling,
listing, cancelling) are not paced.

Buckets:

* one per API key (a fingerprint of it: the key itself is never stored, logged or sent) and
  model (the request's ``model``; ``default`` when it names none, e.g. an Assistants run on
  the assistant's own model, or a tool-output submission);
* two limits each: ``requests_per_minute`` and ``tokens_per_minute``, from the config
  (``[rate_limits."<model>"]``, then ``[rate_limits.default]``), else learned from the
  service's ``x-ratelimit-limit-requests`` / ``x-ratelimit-limit-tokens`` headers; a
  bucket with no limit is not paced;
* a bucket holds what refills in ``burst_s`` seconds (at least one request), so requests
  are spread over the minute rather than sent in one burst the service may refuse;
* tokens are charged before the request, estimated from its body (about 4 bytes a token);
  the service's ``x-ratelimit-remaining-requests`` / ``-tokens`` headers lower a bucket that
  believes it holds more than the service says is left (other clients share the key).

Stores (:class:`BucketStore`): :class:`LocalBuckets` in the process (one shared by every
client of the process, the default), or :class:`RedisBuckets` for a fleet of workers (one
Lua script, atomic, on the Redis clock), so N workers together stay under the limits.

A store that cannot be reached (Redis down) does not stop requests: they go unpaced, and
``runtime.pacing_unavailable`` is logged. Waiting is bounded: by the run's own deadline (``total_deadline_s``, the worker's
``job_deadline_s``: the wait is cancelled with the run), and by ``max_wait_s`` for one
request, past which :class:`~runtime.errors.PacingTimeout` is raised without sending.
Every wait is a ``runtime.rate_paced`` event of the current span, a
``runtime.rate_paced`` debug log line and, in the worker, the
``agent_worker_pacing_wait_seconds`` histogram (waits of 0 included).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime import tracing
from runtime.errors import PacingTimeout
from runtime.logging import ModuleLogger

__all__ = [
    "BucketStore",
    "LocalBuckets",
    "RateLimits",
    "RatePacer",
    "RedisBuckets",
    "pacer_from_settings",
]

log = ModuleLogger("runtime.pacing")

DEFAULT_MODEL = "default"
# Requests that make the model work, on OpenAI and Azure URLs alike.
PACED_PATH = re.compile(
    r"/(?:threads/[^/]+/runs|threads/runs|runs/[^/]+/submit_tool_outputs|responses)$"
)
_BYTES_PER_TOKEN = 4


@dataclass(frozen=True)
class RateLimits:
    """Limits of one bucket (None: not limited).

    Attributes:
        requests_per_minute: requests a minute.
        tokens_per_minute: tokens a minute (input estimated, see the module doc).
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    @property
    def any(self) -> bool:
        """True when one of the limits is set."""
        return bool(self.requests_per_minute) or bool(self.tokens_per_minute)


class BucketStore(Protocol):
    """Where buckets live: in the process, or in Redis for a fleet."""

    async def take(self, bucket: str, limits: RateLimits, tokens: int, burst_s: float) -> float:
        """Take one request and ``tokens`` from ``bucket`` if it holds them (answers 0.0);
        otherwise take nothing and answer the seconds until it will."""
        ...

    async def lower(self, bucket: str, requests: float | None, tokens: float | None) -> None:
        """The service says at most this much is left: lower the bucket to it."""
        ...


def _capacity(per_minute: float, burst_s: float, floor: float) -> float:
    return max(floor, per_minute * burst_s / 60.0)


@dataclass
class _Level:
    requests: float
    tokens: float
    at: float


class LocalBuckets:
    """Buckets of one process (asyncio: no lock needed, every step is synchronous)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._levels: dict[str, _Level] = {}

    async def take(self, bucket: str, limits: RateLimits, tokens: int, burst_s: float) -> float:
        level = self._refilled(bucket, limits, burst_s)
        wait = 0.0
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        if rpm:
            wait = max(wait, (1.0 - level.requests) * 60.0 / rpm)
        if tpm:
            need = min(float(tokens), _capacity(tpm, burst_s, 1.0))
            wait = max(wait, (need - level.tokens) * 60.0 / tpm)
        if wait > 0:
            return wait
        level.requests -= 1.0
        level.tokens -= tokens
        return 0.0

    async def lower(self, bucket: str, requests: float | None, tokens: float | None) -> None:
        level = self._levels.get(bucket)
        if level is None:
            return
        if requests is not None:
            level.requests = min(level.requests, requests)
        if tokens is not None:
            level.tokens = min(level.tokens, tokens)

    def _refilled(self, bucket: str, limits: RateLimits, burst_s: float) -> _Level:
        now = self._clock()
        rpm = limits.requests_per_minute or 0.0
        tpm = limits.tokens_per_minute or 0.0
        request_cap = _capacity(rpm, burst_s, 1.0)
        token_cap = _capacity(tpm, burst_s, 1.0)
        level = self._levels.get(bucket)
        if level is None:
            level = self._levels[bucket] = _Level(request_cap, token_cap, now)
        elapsed = max(now - level.at, 0.0)
        level.requests = min(request_cap, level.requests + elapsed * rpm / 60.0)
        level.tokens = min(token_cap, level.tokens + elapsed * tpm / 60.0)
        level.at = now
        return level


# KEYS[1]: the bucket. ARGV: rpm, tpm, tokens, burst_s (0: no limit). The Redis clock, so
# every worker of the fleet refills the same bucket alike. Answers the wait in microseconds.
_TAKE = """
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rcap = math.max(1, rpm * burst / 60)
local tcap = math.max(1, tpm * burst / 60)
local state = redis.call('HMGET', KEYS[1], 'r', 't', 'at')
local r = tonumber(state[1]) or rcap
local tk = tonumber(state[2]) or tcap
local at = tonumber(state[3]) or now
local elapsed = math.max(now - at, 0)
r = math.min(rcap, r + elapsed * rpm / 60)
tk = math.min(tcap, tk + elapsed * tpm / 60)
local wait = 0
if rpm > 0 then wait = math.max(wait, (1 - r) * 60 / rpm) end
if tpm > 0 then wait = math.max(wait, (math.min(tokens, tcap) - tk) * 60 / tpm) end
if wait <= 0 then
  r = r - 1
  tk = tk - tokens
  wait = 0
end
redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(tk), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 600)
return math.ceil(wait * 1000000)
"""

# KEYS[1]: the bucket. ARGV: requests, tokens left (empty: unknown).
_LOWER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] ~= '' then
  local r = tonumber(redis.call('HGET', KEYS[1], 'r'))
  if r and tonumber(ARGV[1]) < r then redis.call('HSET', KEYS[1], 'r', ARGV[1]) end
end
if ARGV[2] ~= '' then
  local tk = tonumber(redis.call('HGET', KEYS[1], 't'))
  if tk and tonumber(ARGV[2]) < tk then redis.call('HSET', KEYS[1], 't', ARGV[2]) end
end
return 1
"""


class RedisBuckets:
    """Buckets in Redis, shared by a fleet (each step one atomic script).

    Args:
        client: a ``redis.asyncio.Redis`` client (the caller closes it).
        prefix: key prefix of the buckets.
    """

    def __init__(self, client: Any, prefix: str = "runtime") -> None:
        self._redis = client
        self._prefix = prefix
        self._take = client.register_script(_TAKE)
        self._lower = client.register_script(_LOWER)

    def _key(self, bucket: str) -> str:
        return f"{self._prefix}:pace:{bucket}"

    async def take(self, bucket: str, limits: RateLimits, tokens: int, burst_s: float) -> float:
        args = [
            limits.requests_per_minute or 0,
            limits.tokens_per_minute or 0,
            tokens,
            burst_s,
        ]
        micros = await self._take(keys=[self._key(bucket)], args=args)
        return int(micros) / 1_000_000

    async def lower(self, bucket: str, requests: float | None, tokens: float | None) -> None:
        args = ["" if requests is None else requests, "" if tokens is None else tokens]
        await self._lower(keys=[self._key(bucket)], args=args)


_PROCESS_BUCKETS = LocalBuckets()


@dataclass
class RatePacer:
    """Paces a client's model requests (see the module doc).

    Attributes:
        limits: limits by model name; ``default`` applies to a model without its own and to
            requests that name none.
        store: where the buckets live (default: the process's own).
        burst_s: a bucket holds what refills in this many seconds (at least one request).
        max_wait_s: the longest one request waits before :class:`PacingTimeout`.
        learn_from_headers: take limits the config does not set from the service's
            ``x-ratelimit-limit-*`` headers.
        on_wait: called with the seconds each paced request waited (metrics).
        waits: requests that had to wait; waited_s: seconds waited in all.
    """

    limits: Mapping[str, RateLimits] = field(default_factory=dict)
    store: BucketStore = field(default_factory=lambda: _PROCESS_BUCKETS)
    burst_s: float = 1.0
    max_wait_s: float = 60.0
    learn_from_headers: bool = True
    on_wait: Callable[[float], None] | None = None
    waits: int = field(default=0, init=False)
    waited_s: float = field(default=0.0, init=False)
    _learned: dict[str, RateLimits] = field(default_factory=dict, init=False, repr=False)

    def paces(self, method: str, url: str) -> bool:
        """Whether a request makes the model work (and is paced)."""
        return method == "POST" and PACED_PATH.search(url.split("?", 1)[0]) is not None

    async def acquire(self, headers: Mapping[str, str], body: Any) -> None:
        """Wait until the request's bucket allows it, at most ``max_wait_s``.

        Raises:
            PacingTimeout: the bucket would make it wait longer (nothing is sent).
        """
        bucket, model = _bucket(headers, body)
        limits = self._limits(bucket, model)
        if not limits.any:
            return
        tokens = _estimate_tokens(body) if limits.tokens_per_minute else 0
        waited = 0.0
        while True:
            try:
                wait = await self.store.take(bucket, limits, tokens, self.burst_s)
            except Exception as exc:  # a store outage must not stop the fleet: send unpaced
                log.warning("runtime.pacing_unavailable", error=type(exc).__name__)
                return
            if wait <= 0:
                break
            if waited + wait > self.max_wait_s:
                raise PacingTimeout(
                    f"the rate limits of model {model!r} would delay this request past "
                    f"max_wait_s ({self.max_wait_s:g} s); it was not sent"
                )
            await asyncio.sleep(wait)
            waited += wait
        if waited > 0:
            self.waits += 1
            self.waited_s += waited
            log.debug("runtime.rate_paced", model=model, waited_s=round(waited, 3))
            tracing.add_event("runtime.rate_paced", {"waited_s": round(waited, 3)})
        if self.on_wait is not None:
            self.on_wait(waited)

    async def observe(
        self, headers: Mapping[str, str], body: Any, answer: Mapping[str, str]
    ) -> None:
        """Learn from the service's ``x-ratelimit-*`` answer headers (lower-case keys)."""
        limit_requests = _number(answer.get("x-ratelimit-limit-requests"))
        limit_tokens = _number(answer.get("x-ratelimit-limit-tokens"))
        left_requests = _number(answer.get("x-ratelimit-remaining-requests"))
        left_tokens = _number(answer.get("x-ratelimit-remaining-tokens"))
        if limit_requests is None and limit_tokens is None and left_requests is None:
            return
        bucket, _model = _bucket(headers, body)
        if self.learn_from_headers and (limit_requests or limit_tokens):
            self._learned[bucket] = RateLimits(limit_requests, limit_tokens)
        if left_requests is not None or left_tokens is not None:
            try:
                await self.store.lower(bucket, left_requests, left_tokens)
            except Exception as exc:
                log.warning("runtime.pacing_unavailable", error=type(exc).__name__)

    def _limits(self, bucket: str, model: str) -> RateLimits:
        configured = self.limits.get(model) or self.limits.get(DEFAULT_MODEL)
        if configured is not None and configured.any:
            return configured
        return self._learned.get(bucket, RateLimits())


def _bucket(headers: Mapping[str, str], body: Any) -> tuple[str, str]:
    """(bucket name, model) of a request: a fingerprint of its API key, and its model."""
    secret = headers.get("Authorization") or headers.get("api-key") or ""
    fingerprint = hashlib.sha256(secret.encode()).hexdigest()[:16]
    model = body.get("model") if isinstance(body, Mapping) else None
    name = model if isinstance(model, str) and model else DEFAULT_MODEL
    return f"{fingerprint}:{name[:100]}", name


def _estimate_tokens(body: Any) -> int:
    try:
        size = len(json.dumps(body, separators=(",", ":"), default=str))
    except (TypeError, ValueError):
        return 1
    return max(1, size // _BYTES_PER_TOKEN)


def _number(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def pacer_from_settings(settings: Any, store: BucketStore | None = None) -> RatePacer | None:
    """The pacer of the settings' ``[pacing]`` section; None when it is not enabled, or when
    it asks for ``store = "redis"`` and no ``store`` is given (the worker gives its own).

    Args:
        settings: settings with a ``pacing`` section.
        store: the buckets (default: the process's own for ``store = "memory"``).
    """
    section = getattr(settings, "pacing", None)
    if section is None or not section.enabled:
        return None
    if store is None:
        if section.store != "memory":
            return None
        store = _PROCESS_BUCKETS
    table = getattr(settings, "rate_limits", None) or {}
    limits = {
        name: RateLimits(m.requests_per_minute, m.tokens_per_minute) for name, m in table.items()
    }
    return RatePacer(
        limits=limits,
        store=store,
        burst_s=section.burst_s,
        max_wait_s=section.max_wait_s,
        learn_from_headers=section.learn_from_headers,
    )
