"""Value objects of one tool call: the request and its result."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.values import direct_init


@direct_init
@dataclass(frozen=True)
class ToolCall:
    """One call requested by the model.

    Attributes:
        id: the ``tool_call_id`` the output must be submitted under.
        name: the function name the model chose.
        arguments: raw JSON text exactly as the model sent it.
    """

    id: str
    name: str
    arguments: str


@direct_init
@dataclass(frozen=True)
class ToolCallResult:
    """The outcome of one call, ready to submit.

    Attributes:
        tool_call_id: id of the call.
        name: function name the model chose.
        arguments: raw JSON arguments as received.
        output: exactly the string submitted to the API (a JSON error object when is_error).
        is_error: True when output describes a failure instead of a tool result.
        seconds: wall-clock seconds the dispatcher spent on the call.
        error_type: machine-readable failure kind (``"timeout"``, ``"unknown_tool"``, ...).
        exception: the exception behind the failure, for logs; not compared, not in repr.
    """

    tool_call_id: str
    name: str
    arguments: str
    output: str
    is_error: bool
    seconds: float
    error_type: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        """Alias of ``tool_call_id``."""
        return self.tool_call_id
