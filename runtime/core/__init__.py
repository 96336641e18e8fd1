"""The protocol-neutral engine: the run loop, its seam, policies, hooks and results.

Nothing here imports a protocol package; ``runtime.assistants`` and ``runtime.responses``
implement :class:`Backend` and the loop drives either.
"""

from runtime.core.backend import (
    Backend,
    StartRequest,
    TextPart,
    Turn,
    TurnError,
    TurnRef,
    TurnStream,
    Usage,
)
from runtime.core.hooks import EventHandler, StatusUpdate
from runtime.core.limits import ModelPrice, UsageLimits
from runtime.core.policy import RunPolicy
from runtime.core.result import RunResult
from runtime.core.runner import Runner

__all__ = [
    "Backend",
    "EventHandler",
    "ModelPrice",
    "RunPolicy",
    "RunResult",
    "Runner",
    "StartRequest",
    "StatusUpdate",
    "TextPart",
    "Turn",
    "TurnError",
    "TurnRef",
    "TurnStream",
    "Usage",
    "UsageLimits",
]
