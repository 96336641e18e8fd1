"""agent-runtime: run OpenAI-style assistant runs with concurrent local Python tools.

The public API is exactly ``__all__``; everything else is internal.
"""

from runtime.assistants.client import AssistantsClient
from runtime.assistants.orchestrator import Orchestrator
from runtime.assistants.stream import RunStream
from runtime.core import (
    EventHandler,
    ModelPrice,
    Runner,
    RunPolicy,
    RunResult,
    StartRequest,
    StatusUpdate,
    TurnRef,
    Usage,
    UsageLimits,
)
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
from runtime.retry import RetryPolicy

__all__ = [
    "APIStatusError",
    "AssistantsClient",
    "AuthenticationError",
    "BadRequestError",
    "EventHandler",
    "HandlerError",
    "ModelPrice",
    "NotFoundError",
    "Orchestrator",
    "RateLimitError",
    "RetryPolicy",
    "RunFailedError",
    "RunPolicy",
    "RunResult",
    "RunStream",
    "Runner",
    "RuntimeAPIError",
    "ServerError",
    "StartRequest",
    "StatusUpdate",
    "StreamError",
    "StreamInterrupted",
    "ThreadBusyError",
    "TransportError",
    "TurnRef",
    "Usage",
    "UsageLimits",
]
