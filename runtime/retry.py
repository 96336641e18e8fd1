"""Retries, in one place: a typed policy, one retry loop, and a switch that turns waits off.

What is retried: connection errors, timeouts, 408, 409, 429 and 5xx. The wait is exponential
with jitter, never shorter than what the server asked for with ``retry-after-ms`` or
``retry-after`` (capped). Requests that are not idempotent (creating a run, submitting tool
outputs, ...) are retried only when the server surely did not act on them: the connection
could not be opened, or it answered 429. Everything else is the orchestrator's decision.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from runtime.errors import (
    APIStatusError,
    ConnectError,
    RateLimitError,
    RequestTimeout,
    RuntimeAPIError,
)
from runtime.logging import ModuleLogger

T = TypeVar("T")
log = ModuleLogger("runtime.retry")

_TESTING = False


def set_testing(enabled: bool) -> None:
    """Turn all retry waits off (True) or back on (False), for tests."""
    global _TESTING
    _TESTING = enabled


RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries one request.

    Attributes:
        max_attempts: attempts in all, the first included (1 disables retries).
        initial_wait_s: first backoff.
        max_wait_s: cap of the exponential backoff.
        jitter_s: up to this much random time is added to each wait.
        respect_retry_after: wait at least what retry-after(-ms) asks.
        max_retry_after_s: the longest server-requested wait we accept.
    """

    max_attempts: int = 5
    initial_wait_s: float = 0.5
    max_wait_s: float = 20.0
    jitter_s: float = 0.5
    respect_retry_after: bool = True
    max_retry_after_s: float = 60.0

    def backoff_s(self, attempt: int) -> float:
        """The exponential wait (with jitter) after failed attempt number ``attempt`` (1-based)."""
        base: float = min(self.max_wait_s, self.initial_wait_s * 2.0 ** (attempt - 1))
        return base + random.uniform(0, self.jitter_s)

    def wait_s(self, attempt: int, error: BaseException | None) -> float:
        """The wait before the next attempt: the server's hint when sane, else the backoff."""
        hint = getattr(error, "retry_after_s", None)
        if (
            self.respect_retry_after
            and isinstance(hint, int | float)
            and 0 <= hint <= self.max_retry_after_s
        ):
            return float(hint)
        return self.backoff_s(attempt)


def is_retryable(error: BaseException, *, idempotent: bool) -> bool:
    """Whether ``error`` may be retried for a request of the given kind."""
    if isinstance(error, RateLimitError):
        return True
    if not idempotent:
        return isinstance(error, ConnectError) and not error.request_sent
    if isinstance(error, ConnectError | RequestTimeout):
        return True
    return isinstance(error, APIStatusError) and error.status in RETRYABLE_STATUSES


def parse_retry_after(headers: dict[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` (preferred) or ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            return _retry_after_date(raw)
    return None


def _retry_after_date(raw: str) -> float | None:
    import email.utils
    import time

    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - time.time())


async def call_with_retries(
    func: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    operation: str,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Run ``func`` under ``policy``; return its value or raise its last error.

    Args:
        func: the attempt (no arguments).
        policy: the retry policy.
        idempotent: whether repeating the request is harmless.
        operation: a name for logs ("create_run", "GET /threads/...").
        on_retry: called with (attempt, error, wait_s) before each wait.

    Returns:
        What ``func`` returned on the first successful attempt.
    """
    # A plain loop: every request of a run passes here, and almost every one succeeds at
    # once, so the first attempt costs one try block (no retry machinery is built).
    max_attempts = max(1, policy.max_attempts)
    attempt = 1
    while True:
        try:
            return await func()
        except BaseException as error:
            if attempt >= max_attempts or not _retryable(error, idempotent):
                raise
            wait_s = policy.wait_s(attempt, error)
            log.warning(
                "runtime.retry_scheduled",
                operation=operation,
                attempt=attempt,
                wait_s=round(wait_s, 3),
                status=getattr(error, "status", None),
                error=type(error).__name__,
            )
            if on_retry is not None:
                on_retry(attempt, error, wait_s)
        await asyncio.sleep(0.0 if _TESTING else wait_s)
        attempt += 1


def _retryable(error: BaseException, idempotent: bool) -> bool:
    return isinstance(error, RuntimeAPIError) and is_retryable(error, idempotent=idempotent)
