"""agent-runtime: run OpenAI-style assistant runs with concurrent local Python tools.

The public API is exactly ``__all__``; everything else is internal.
"""

from runtime.client import AssistantsClient
from runtime.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    HandlerError,
    NotFoundError,
    RateLimitError,
    RunFailedError,
    RuntimeAPIError,
    ServerError,
    StreamError,
    StreamInterrupted,
    ThreadBusyError,
    TransportError,
)
from runtime.handler import EventHandler
from runtime.orchestrator import Orchestrator
from runtime.policy import RunPolicy
from runtime.result import RunResult
from runtime.retry import RetryPolicy
from runtime.stream import RunStream

__all__ = [
    "APIStatusError",
    "AssistantsClient",
    "AuthenticationError",
    "BadRequestError",
    "EventHandler",
    "HandlerError",
    "NotFoundError",
    "Orchestrator",
    "RateLimitError",
    "RetryPolicy",
    "RunFailedError",
    "RunPolicy",
    "RunResult",
    "RunStream",
    "RuntimeAPIError",
    "ServerError",
    "StreamError",
    "StreamInterrupted",
    "ThreadBusyError",
    "TransportError",
]
