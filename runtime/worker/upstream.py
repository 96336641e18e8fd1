"""Whether the model API answers: a transport wrapper that counts connection failures.

The client retries a refused connection for a long time; meanwhile ``/readyz`` should say the
worker cannot do its job. Counting consecutive connect failures at the transport sees every
attempt (retries included) at the cost of one integer per request.
"""

from __future__ import annotations

from runtime.errors import ConnectError
from runtime.transport import Request, Response, Transport

__all__ = ["UNREACHABLE_AFTER", "UpstreamTracker"]

#: Consecutive failed connects after which the API counts as unreachable.
UNREACHABLE_AFTER = 3


class UpstreamTracker:
    """A :class:`~runtime.transport.Transport` that remembers whether the API is reachable.

    Args:
        inner: the transport doing the work (closed by :meth:`aclose`).
        threshold: consecutive connection failures that make :attr:`unreachable` true; any
            answer from the server (an error status included) resets the count.
    """

    def __init__(self, inner: Transport, *, threshold: int = UNREACHABLE_AFTER) -> None:
        self._inner = inner
        self.threshold = threshold
        self.failures = 0
        self.last_error: str | None = None

    @property
    def unreachable(self) -> bool:
        """True after ``threshold`` connection failures in a row."""
        return self.failures >= self.threshold

    async def send(self, request: Request) -> Response:
        try:
            response = await self._inner.send(request)
        except ConnectError as exc:
            if not exc.request_sent:  # never connected; a lost connection is not this
                self.failures += 1
                self.last_error = str(exc)
            raise
        self.failures = 0
        self.last_error = None
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
