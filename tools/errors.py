"""Exceptions of the tools package.

Tree::

    ToolError                     base; raised by a tool, its message goes to the model
    ├── ToolRegistrationError     bad name, duplicate name, unsupported signature (ValueError too)
    ├── ToolArgumentsError        arguments that are not valid JSON or fail the schema
    └── ToolUnavailableError      the service behind a tool (an MCP server) is down or dropped the call

Exceptions raised by tools never escape the dispatcher: they become error outputs (see
``tools.dispatch``). Raising ``ToolError`` from a tool marks an expected failure: the model
gets its message and the log gets no traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ToolError(Exception):
    """A failure a tool reports on purpose; the message is shown to the model."""


class ToolRegistrationError(ToolError, ValueError):
    """A function cannot be registered as a tool (name, duplicate, signature, schema)."""


class ToolUnavailableError(ToolError):
    """The service behind a tool cannot serve the call: not running, unreachable, or it
    stopped mid-call. The error output's type is ``tool_unavailable``; a later call may work.
    """


@dataclass(frozen=True)
class ArgumentIssue:
    """One field-level problem with the arguments of a call.

    Attributes:
        loc: dotted path of the field (``"address.zip"``), empty for the whole object.
        msg: human readable message the model can act on.
        type: pydantic error type (``"missing"``, ``"int_parsing"``, ...).
    """

    loc: str
    msg: str
    type: str

    def as_dict(self) -> dict[str, Any]:
        """Return the issue as the JSON object used in error outputs."""
        return {"loc": self.loc, "msg": self.msg, "type": self.type}


class ToolArgumentsError(ToolError):
    """The raw arguments of a call are not valid JSON or do not match the schema.

    Attributes:
        error_type: ``"invalid_json"`` or ``"invalid_arguments"``.
        details: field-level issues (empty for invalid JSON).
    """

    def __init__(
        self, message: str, *, error_type: str, details: tuple[ArgumentIssue, ...] = ()
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.details = details

    def __repr__(self) -> str:
        return f"ToolArgumentsError({str(self)!r}, error_type={self.error_type!r}, details={len(self.details)})"
