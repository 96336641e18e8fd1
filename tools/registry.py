"""Tool registration, lookup, and ``definitions()`` for a run's ``tools=``."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, overload

from tools.errors import ToolRegistrationError
from tools.schema import FunctionSchema, build_schema

if TYPE_CHECKING:
    from tools.context import ToolContext

F = TypeVar("F", bound=Callable[..., Any])

#: What a tool does to the world: ``read`` (safe to repeat) or ``write`` (at most once).
Effects = Literal["read", "write"]
#: Decides per call whether a person must approve it: ``(context, arguments) -> bool``.
ApprovalCheck: TypeAlias = "Callable[[ToolContext, dict[str, Any]], bool]"
#: After a crash between a write's start and its recorded end: ``report`` answers that the
#: outcome is unknown and must be verified; ``rerun`` runs the call again.
UnknownOutcome = Literal["report", "rerun"]
_EFFECTS = ("read", "write")
_UNKNOWN = ("report", "rerun")

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Tool:
    """A registered function and its schema.

    Attributes:
        name: name the model calls (a-z, A-Z, 0-9, ``_``, ``-``; at most 64 characters).
        description: description sent to the model.
        parameters: JSON schema of the arguments.
        fn: the function itself.
        is_async: whether fn is a coroutine function (else it runs in a thread pool).
        timeout_s: per-call timeout; None uses the dispatcher's default, ``math.inf`` none.
        strict: whether the definition asks for the API's strict mode.
        schema: the arguments model and call plan built from the signature.
        needs_approval: True when a person must approve every call before it runs, or a
            callable ``(context, arguments) -> bool`` deciding per call (an exception counts
            as True: it fails closed).
        effects: ``"read"`` or ``"write"``: a write's execution is recorded before it starts
            and a repeated identical call is answered from the record (see
            :mod:`runtime.core.ledger`).
        unknown_outcome: what a write whose earlier execution never recorded its end gets:
            ``"report"`` (an error output saying the outcome must be verified) or ``"rerun"``.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any] = field(repr=False)
    is_async: bool
    schema: FunctionSchema = field(repr=False, compare=False)
    timeout_s: float | None = None
    strict: bool = False
    needs_approval: bool | ApprovalCheck = field(default=False, compare=False)
    effects: Effects = "read"
    unknown_outcome: UnknownOutcome = "report"

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        strict: bool = False,
        needs_approval: bool | ApprovalCheck = False,
        effects: Effects = "read",
        unknown_outcome: UnknownOutcome = "report",
    ) -> Tool:
        """Build a tool from a plain function.

        Args:
            fn: a sync or async function; its signature and docstring give the schema.
            name: tool name; defaults to ``fn.__name__``.
            description: description; defaults to the docstring's text before its sections.
            timeout_s: per-call timeout in seconds (None: the dispatcher's default).
            strict: produce a strict-mode schema (all properties required, no extras).
            needs_approval: a person approves each call first (bool, or a per-call check).
            effects: ``"read"`` or ``"write"`` (recorded, at most once).
            unknown_outcome: ``"report"`` or ``"rerun"`` (see the class attributes).

        Returns:
            The tool.

        Raises:
            ToolRegistrationError: bad name, timeout, declaration, or signature.
        """
        if not callable(fn):
            raise ToolRegistrationError(f"a tool must be callable, got {type(fn).__name__}")
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise ToolRegistrationError("generator functions cannot be tools; return a value")
        tool_name = name if name is not None else getattr(fn, "__name__", "")
        validate_name(tool_name)
        if timeout_s is not None and (math.isnan(timeout_s) or timeout_s <= 0):
            raise ToolRegistrationError(f"tool {tool_name!r}: timeout_s must be > 0")
        _check_declarations(tool_name, needs_approval, effects, unknown_outcome)
        schema = build_schema(fn, name=tool_name, description=description, strict=strict)
        return cls(
            name=tool_name,
            description=schema.description,
            parameters=schema.parameters,
            fn=fn,
            is_async=_is_async(fn),
            timeout_s=timeout_s,
            strict=strict,
            schema=schema,
            needs_approval=needs_approval,
            effects=effects,
            unknown_outcome=unknown_outcome,
        )

    def definition(self) -> dict[str, Any]:
        """Return this tool's entry for a run's ``tools=`` list."""
        function: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }
        if self.strict:
            function["strict"] = True
        return {"type": "function", "function": function}


def _check_declarations(
    name: str, needs_approval: object, effects: object, unknown_outcome: object
) -> None:
    if not (isinstance(needs_approval, bool) or callable(needs_approval)):
        raise ToolRegistrationError(
            f"tool {name!r}: needs_approval must be a bool or a callable (context, arguments)"
        )
    if effects not in _EFFECTS:
        raise ToolRegistrationError(f"tool {name!r}: effects must be 'read' or 'write'")
    if unknown_outcome not in _UNKNOWN:
        raise ToolRegistrationError(f"tool {name!r}: unknown_outcome must be 'report' or 'rerun'")


def validate_name(name: str) -> None:
    """Raise ToolRegistrationError unless name follows the API's rule for function names."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ToolRegistrationError(
            f"invalid tool name {name!r}: use 1-64 characters from a-z, A-Z, 0-9, '_' and '-' "
            "(pass name=... to choose one)"
        )


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class ToolRegistry:
    """A set of tools with unique names.

    Example:
        >>> registry = ToolRegistry()
        >>> @registry.tool
        ... async def get_weather(location: str) -> str:
        ...     '''Current weather in a city.'''
        ...     return "sunny"
        >>> [d["function"]["name"] for d in registry.definitions()]
        ['get_weather']
    """

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        strict: bool = False,
        needs_approval: bool | ApprovalCheck = False,
        effects: Effects = "read",
        unknown_outcome: UnknownOutcome = "report",
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        strict: bool = False,
        needs_approval: bool | ApprovalCheck = False,
        effects: Effects = "read",
        unknown_outcome: UnknownOutcome = "report",
    ) -> F | Callable[[F], F]:
        """Register a function, as ``@registry.tool`` or ``@registry.tool(name=...)``.

        The function is returned unchanged, so it stays directly callable.

        Args:
            fn: the function, when used without parentheses.
            name: tool name (default ``fn.__name__``).
            description: description (default from the docstring).
            timeout_s: per-call timeout in seconds.
            strict: strict-mode schema.
            needs_approval: a person approves each call first (bool, or a per-call check
                ``(context, arguments) -> bool``).
            effects: ``"read"`` (default) or ``"write"`` (recorded, at most once).
            unknown_outcome: a write whose earlier run never recorded its end: ``"report"``
                (default) or ``"rerun"``.

        Returns:
            The function, or a decorator when called with keyword arguments only.
        """

        def decorate(func: F) -> F:
            self.register(
                func,
                name=name,
                description=description,
                timeout_s=timeout_s,
                strict=strict,
                needs_approval=needs_approval,
                effects=effects,
                unknown_outcome=unknown_outcome,
            )
            return func

        return decorate(fn) if fn is not None else decorate

    def register(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        strict: bool = False,
        *,
        needs_approval: bool | ApprovalCheck = False,
        effects: Effects = "read",
        unknown_outcome: UnknownOutcome = "report",
    ) -> Tool:
        """Register a function as a tool.

        Args:
            fn: a sync or async function.
            name: tool name (default ``fn.__name__``).
            description: description (default from the docstring).
            timeout_s: per-call timeout in seconds.
            strict: strict-mode schema.
            needs_approval: see :meth:`tool`.
            effects: see :meth:`tool`.
            unknown_outcome: see :meth:`tool`.

        Returns:
            The registered tool.

        Raises:
            ToolRegistrationError: the name is taken or invalid, or the signature unsupported.
        """
        built = Tool.from_function(
            fn,
            name=name,
            description=description,
            timeout_s=timeout_s,
            strict=strict,
            needs_approval=needs_approval,
            effects=effects,
            unknown_outcome=unknown_outcome,
        )
        return self.add(built)

    def add(self, tool: Tool) -> Tool:
        """Register an already built tool; a duplicate name raises ToolRegistrationError."""
        if tool.name in self._tools:
            raise ToolRegistrationError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def remove(self, name: str) -> Tool | None:
        """Unregister the tool named name; return it, or None when none was registered."""
        return self._tools.pop(name, None)

    def get(self, name: str) -> Tool | None:
        """Return the tool registered under name, or None."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        """Return the registered names in registration order."""
        return list(self._tools)

    def definitions(self) -> list[dict[str, Any]]:
        """Return the ``tools=`` list of a run: one function definition per tool."""
        return [tool.definition() for tool in self._tools.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __repr__(self) -> str:
        return f"ToolRegistry({self.names()!r})"


default_registry = ToolRegistry()
"""The registry used by the module-level ``@tool`` decorator."""


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    strict: bool = False,
    needs_approval: bool | ApprovalCheck = False,
    effects: Effects = "read",
    unknown_outcome: UnknownOutcome = "report",
) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    strict: bool = False,
    needs_approval: bool | ApprovalCheck = False,
    effects: Effects = "read",
    unknown_outcome: UnknownOutcome = "report",
) -> F | Callable[[F], F]:
    """Register a function on ``default_registry`` (``@tool`` or ``@tool(name=...)``).

    Args:
        fn: the function, when used without parentheses.
        name: tool name (default ``fn.__name__``).
        description: description (default from the docstring).
        timeout_s: per-call timeout in seconds.
        strict: strict-mode schema.
        needs_approval: see :meth:`ToolRegistry.tool`.
        effects: see :meth:`ToolRegistry.tool`.
        unknown_outcome: see :meth:`ToolRegistry.tool`.

    Returns:
        The function unchanged, or a decorator.
    """
    if fn is not None:
        return default_registry.tool(fn)
    return default_registry.tool(
        name=name,
        description=description,
        timeout_s=timeout_s,
        strict=strict,
        needs_approval=needs_approval,
        effects=effects,
        unknown_outcome=unknown_outcome,
    )
