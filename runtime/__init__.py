"""agent-runtime: run OpenAI-style assistant runs with concurrent local Python tools.

The public API is exactly ``__all__``; everything else is internal. Names are imported on
first use, so ``python -m runtime --help`` and the emulator start without the clients.
"""

import importlib as _importlib
import typing as _typing

from runtime._shadow import check_tools_package as _check_tools_package

_check_tools_package()

if _typing.TYPE_CHECKING:
    from runtime.assistants.client import AssistantsClient
    from runtime.assistants.orchestrator import Orchestrator
    from runtime.assistants.stream import RunStream
    from runtime.core import (
        Decision,
        EventHandler,
        MemoryLedger,
        ModelPrice,
        PendingApproval,
        Runner,
        RunPolicy,
        RunResult,
        StartRequest,
        StatusUpdate,
        TurnRef,
        Usage,
        UsageLimits,
        WriteLedger,
        approve,
        reject,
    )
    from runtime.errors import (
        APIStatusError,
        ApprovalError,
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

_ERRORS = (
    "APIStatusError",
    "ApprovalError",
    "AuthenticationError",
    "BadRequestError",
    "HandlerError",
    "NotFoundError",
    "RateLimitError",
    "RunFailedError",
    "RuntimeAPIError",
    "ServerError",
    "StreamError",
    "StreamInterrupted",
    "ThreadBusyError",
    "TransportError",
)
_CORE = (
    "Decision",
    "EventHandler",
    "MemoryLedger",
    "ModelPrice",
    "PendingApproval",
    "Runner",
    "RunPolicy",
    "RunResult",
    "StartRequest",
    "StatusUpdate",
    "TurnRef",
    "Usage",
    "UsageLimits",
    "WriteLedger",
    "approve",
    "reject",
)
#: Public name -> the module defining it.
_HOMES: dict[str, str] = {
    "AssistantsClient": "runtime.assistants.client",
    "Orchestrator": "runtime.assistants.orchestrator",
    "RunStream": "runtime.assistants.stream",
    "RetryPolicy": "runtime.retry",
    **dict.fromkeys(_CORE, "runtime.core"),
    **dict.fromkeys(_ERRORS, "runtime.errors"),
}

__all__ = [
    "APIStatusError",
    "ApprovalError",
    "AssistantsClient",
    "AuthenticationError",
    "BadRequestError",
    "Decision",
    "EventHandler",
    "HandlerError",
    "MemoryLedger",
    "ModelPrice",
    "NotFoundError",
    "Orchestrator",
    "PendingApproval",
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
    "WriteLedger",
    "approve",
    "reject",
]


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
