"""Value objects of one tool call: the request and its result."""

from __future__ import annotations

from dataclasses import dataclass, field


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

    # Written here, so the dataclass keeps it: a store a field into the instance's dict, not
    # the frozen __init__'s object.__setattr__ call a field (one ToolCall a call and a turn).
    # tests/unit/tools/test_value_inits.py checks that it takes what the generated one would.
    def __init__(self, id: str, name: str, arguments: str) -> None:
        fields = self.__dict__
        fields["id"] = id
        fields["name"] = name
        fields["arguments"] = arguments


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

    def __init__(  # the dict written directly, as ToolCall's
        self,
        tool_call_id: str,
        name: str,
        arguments: str,
        output: str,
        is_error: bool,
        seconds: float,
        error_type: str | None = None,
        exception: BaseException | None = None,
    ) -> None:
        fields = self.__dict__
        fields["tool_call_id"] = tool_call_id
        fields["name"] = name
        fields["arguments"] = arguments
        fields["output"] = output
        fields["is_error"] = is_error
        fields["seconds"] = seconds
        fields["error_type"] = error_type
        fields["exception"] = exception

    @property
    def id(self) -> str:
        """Alias of ``tool_call_id``."""
        return self.tool_call_id
