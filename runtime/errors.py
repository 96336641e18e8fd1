"""One exception tree for everything the runtime raises.

::

    RuntimeAPIError                     base of all our errors
    ├── TransportError                  no usable HTTP answer
    │   ├── ConnectError                could not connect (refused, connect timeout) / reset
    │   ├── RequestTimeout              the request or stream read timed out
    │   └── ClientClosedError           the client was closed and cannot be reused
    ├── APIStatusError                  the server answered with an error status (.status, .code, .request_id)
    │   ├── BadRequestError             400
    │   │   └── ThreadBusyError         400: the thread already has an active run (.active_run_id)
    │   ├── AuthenticationError         401
    │   ├── PermissionDeniedError       403
    │   ├── NotFoundError               404
    │   ├── ConflictError               409
    │   ├── UnprocessableEntityError    422
    │   ├── RateLimitError              429 (.retry_after_s)
    │   └── ServerError                 5xx (.retry_after_s)
    ├── PacingTimeout                   a request would wait too long for its rate-limit bucket
    ├── StreamError                     the event stream broke its contract
    │   ├── SSEDecodeError              malformed framing or an oversized line/event
    │   ├── StreamEventError            the server sent an ``error`` event (.code, .error_type)
    │   └── StreamInterrupted           the stream ended before a terminal event
    ├── InvalidResponseError            a 2xx answer whose body is not what the protocol says
    ├── HandlerError                    an EventHandler callback raised (.callback; cause chained)
    ├── ApprovalError                   a decision for a call no pause holds, or a changed decision
    └── RunError                        a run ended in a way the caller asked to raise for
        └── RunFailedError              terminal status other than completed (.status, .run_id)

Errors keep structured fields; their messages never contain API keys (the client never
passes headers into them and every message is passed through :func:`_redact`).
"""

from __future__ import annotations

import re
from typing import Any

from runtime.logging import redact

_SECRET_PATTERNS = (
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)bearer\s+\S+"),
)


def _redact(text: str) -> str:
    """Mask anything that looks like an API key (defence in depth).

    Besides ``sk-`` keys and bearer tokens this masks every secret registered with
    :func:`runtime.logging.register_secret` (the client registers its key): Azure keys are
    plain hex and a server may echo a wrong key back in its error message.
    """
    text = redact(text)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("***", text)
    return text


class RuntimeAPIError(Exception):
    """Base class of every error raised by agent-runtime."""

    def __init__(self, message: str) -> None:
        self.message = _redact(message)
        super().__init__(self.message)


class TransportError(RuntimeAPIError):
    """No usable HTTP answer was received."""


class ConnectError(TransportError):
    """The connection could not be made or was lost.

    Attributes:
        request_sent: False when the connection was never established, so the server cannot
            have acted on the request (safe to retry even a non-idempotent POST).
    """

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class RequestTimeout(TransportError):
    """The request or stream timed out."""


class ClientClosedError(TransportError):
    """The client has been closed; create a new one."""


class APIStatusError(RuntimeAPIError):
    """The server answered with an error status.

    Attributes:
        status: HTTP status code.
        code: the ``error.code`` field of the body, if any.
        error_type: the ``error.type`` field of the body, if any.
        param: the ``error.param`` field of the body, if any.
        request_id: the ``x-request-id`` response header, if any.
        body: the decoded JSON body (or None).
        retry_after_s: seconds the server asked us to wait (429/503), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.error_type = error_type
        self.param = param
        self.request_id = request_id
        self.body = body
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        rid = f" (request_id={self.request_id})" if self.request_id else ""
        return f"{self.status} {self.message}{rid}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class BadRequestError(APIStatusError):
    """400 Bad Request."""


class ThreadBusyError(BadRequestError):
    """400: the thread already has an active run.

    Attributes:
        thread_id: the busy thread, when the message names it.
        active_run_id: the run that keeps it busy, when the message names it.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        ids = parse_busy_thread_message(message)
        self.thread_id: str | None = ids[0]
        self.active_run_id: str | None = ids[1]


class AuthenticationError(APIStatusError):
    """401 Unauthorized: the API key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """403 Forbidden."""


class NotFoundError(APIStatusError):
    """404 Not Found."""


class ConflictError(APIStatusError):
    """409 Conflict (e.g. a resource lock)."""


class UnprocessableEntityError(APIStatusError):
    """422 Unprocessable Entity."""


class RateLimitError(APIStatusError):
    """429 Too Many Requests."""


class ServerError(APIStatusError):
    """5xx: the server failed."""


class PacingTimeout(RuntimeAPIError):
    """A request would wait for its rate-limit bucket longer than ``max_wait_s``; it was not
    sent (see :mod:`runtime.pacing`)."""


class StreamError(RuntimeAPIError):
    """The event stream broke its contract."""


class SSEDecodeError(StreamError):
    """Malformed server-sent-event framing, or a line/event larger than allowed."""


class StreamEventError(StreamError):
    """The server sent an ``error`` event in the stream.

    Attributes:
        code: ``error.code`` if given.
        error_type: ``error.type`` if given.
        param: ``error.param`` if given.
        data: the decoded event data.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
        data: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.error_type = error_type
        self.param = param
        self.data = data


class StreamInterrupted(StreamError):
    """The stream ended (or went idle) before the run reached a stopping point.

    Attributes:
        run_id: the run being streamed, if known.
        reason: "eof", "idle_timeout" or "connection".
    """

    def __init__(self, message: str, *, run_id: str | None = None, reason: str = "eof") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.reason = reason


class InvalidResponseError(RuntimeAPIError):
    """A successful answer whose body does not match the protocol (not JSON, wrong shape)."""


class HandlerError(RuntimeAPIError):
    """An EventHandler callback raised; the original exception is chained as ``__cause__``.

    Attributes:
        callback: the name of the callback that raised.
    """

    def __init__(self, message: str, *, callback: str) -> None:
        super().__init__(message)
        self.callback = callback


class ApprovalError(RuntimeAPIError, ValueError):
    """A decision the pause cannot take: an unknown call, a call decided otherwise before,
    or a turn that no longer awaits approval (nothing was sent)."""


class RunError(RuntimeAPIError):
    """A run ended in a way the caller asked to be raised."""


class RunFailedError(RunError):
    """The run reached a terminal status other than ``completed``.

    Attributes:
        status: the terminal status.
        run_id: the run's id.
        result: the full RunResult.
    """

    def __init__(self, message: str, *, status: str, run_id: str | None, result: Any) -> None:
        super().__init__(message)
        self.status = status
        self.run_id = run_id
        self.result = result


_BUSY_RE = re.compile(r"(thread_[A-Za-z0-9]+)\D.*?(run_[A-Za-z0-9]+)")


def parse_busy_thread_message(message: str) -> tuple[str | None, str | None]:
    """Extract (thread_id, run_id) from the service's 'already has an active run' message."""
    match = _BUSY_RE.search(message)
    if match is None:
        return None, None
    return match.group(1), match.group(2)


def is_busy_thread_message(message: str) -> bool:
    """True when a 400 message says the thread has an active run."""
    lowered = message.lower()
    return "active run" in lowered or ("while a run" in lowered and "is active" in lowered)


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error(
    status: int,
    body: Any,
    *,
    request_id: str | None = None,
    retry_after_s: float | None = None,
    fallback_message: str = "",
) -> APIStatusError:
    """Build the typed error for an HTTP error answer.

    Args:
        status: the HTTP status.
        body: the decoded JSON body, or None when it was not JSON.
        request_id: the x-request-id header.
        retry_after_s: parsed retry-after hint.
        fallback_message: text to use when the body carries no message.

    Returns:
        An instance of the matching APIStatusError subclass.
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    message = str(error.get("message") or fallback_message or f"HTTP {status}")
    cls = ServerError if status >= 500 else _STATUS_CLASSES.get(status, APIStatusError)
    if cls is BadRequestError and is_busy_thread_message(message):
        cls = ThreadBusyError
    return cls(
        message,
        status=status,
        code=_opt_str(error.get("code")),
        error_type=_opt_str(error.get("type")),
        param=_opt_str(error.get("param")),
        request_id=request_id,
        body=body,
        retry_after_s=retry_after_s,
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
