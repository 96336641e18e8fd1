"""The service's request rate limit, as the emulator plays it (``Emulator(rate_limit_rpm=N)``).

Requests that make the model work (creating a run, submitting tool outputs, creating a
response) take one request from a token bucket per API key: ``rpm`` a minute, holding at
most ``burst`` requests (default: one second's worth, at least one). A request the bucket
cannot pay for is answered 429 ``rate_limit_exceeded`` with ``retry-after-ms``; every answer
to such a request carries the service's headers: ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests`` and ``x-ratelimit-reset-requests``.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

MODEL_REQUEST = re.compile(
    r"/(?:threads/[^/]+/runs|threads/runs|runs/[^/]+/submit_tool_outputs|responses)$"
)


@dataclass
class _Bucket:
    level: float
    at: float


class RequestLimiter:
    """A token bucket of requests per API key.

    Args:
        rpm: requests a minute.
        burst: most requests the bucket holds (default: ``rpm / 60``, at least 1).
        clock: monotonic seconds.
    """

    def __init__(
        self, rpm: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rpm <= 0:
            raise ValueError("rate_limit_rpm must be > 0")
        self.rpm = rpm
        self.capacity = burst if burst is not None else max(1.0, rpm / 60.0)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def applies(self, method: str, path: str) -> bool:
        """Whether a request counts against the limit."""
        return method == "POST" and MODEL_REQUEST.search(path) is not None

    def take(self, key: str) -> tuple[bool, dict[str, str]]:
        """Take one request for ``key``: (allowed, the service's rate-limit headers)."""
        now = self._clock()
        name = hashlib.sha256(key.encode()).hexdigest()
        bucket = self._buckets.setdefault(name, _Bucket(self.capacity, now))
        rate = self.rpm / 60.0
        bucket.level = min(self.capacity, bucket.level + (now - bucket.at) * rate)
        bucket.at = now
        allowed = bucket.level >= 1.0
        if allowed:
            bucket.level -= 1.0
        refill_s = (self.capacity - bucket.level) / rate
        headers = {
            "x-ratelimit-limit-requests": f"{self.rpm:g}",
            "x-ratelimit-remaining-requests": str(math.floor(bucket.level)),
            "x-ratelimit-reset-requests": f"{refill_s:.3f}s",
        }
        if not allowed:
            wait_ms = math.ceil((1.0 - bucket.level) / rate * 1000)
            headers["retry-after-ms"] = str(wait_ms)
        return allowed, headers
