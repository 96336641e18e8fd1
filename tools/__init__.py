"""Function tools: register plain Python functions, run a model's tool calls safely.

Example:
    >>> from tools import ToolRegistry
    >>> registry = ToolRegistry()
    >>> @registry.tool
    ... def add(a: int, b: int) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> registry.definitions()[0]["function"]["name"]
    'add'

Registration: ``@tool`` registers on :data:`default_registry`, ``@registry.tool`` or
``@registry.tool(name=, description=, timeout_s=, strict=)`` on ``registry`` (the function is
returned unchanged), ``registry.register(fn, ...)`` returns the :class:`Tool`. Sync and async
functions, ``functools.partial`` and objects with an async ``__call__`` (given a ``name=``).
Names are 1-64 characters from ``a-z A-Z 0-9 _ -``. A duplicate or invalid name, ``*args``,
a generator, a non-positive ``timeout_s`` or a type pydantic cannot handle raise
:class:`ToolRegistrationError`. ``timeout_s=None`` uses the dispatcher's default;
``math.inf`` means no timeout.

Schemas are built with pydantic from the signature; descriptions come from the docstring
(Google, NumPy and Sphinx styles) or ``Annotated[X, Field(description=...)]``; unknown
arguments are rejected unless the function takes ``**kwargs``; a :class:`ToolContext`
parameter is injected, never in the schema. ``strict=True`` produces a schema for the API's
strict mode.

Dispatch (:class:`ToolDispatcher`): every call of a batch runs concurrently, bounded per batch
(``max_concurrency``) and per process (``tools.dispatch.set_process_limit``, default 256);
sync tools run in a bounded pool of daemon threads (``set_thread_pool_size``, default 32)
with the caller's contextvars. Each call gets ``min(tool timeout, batch deadline)``. A
returned ``str`` is sent as is, anything else as JSON, capped at ``max_output_chars`` with
``…[truncated N chars]``. A ``tool_call_id`` executes at most once per dispatcher.

Error outputs: nothing a tool or the model does crashes the batch. A failed call's output is
``{"error": {"type", "message", "tool"[, "details"]}}`` (messages redacted with ``redact=``
and capped at 2,000 characters), where ``type`` is one of:

    invalid_json       arguments are not JSON (empty text counts as ``{}``)
    invalid_arguments  schema violation, unknown argument, or not a JSON object (``details``)
    unknown_tool       no tool with that name (the message lists the available tools)
    tool_exception     the tool raised (``ExcType: message``; traceback logged)
    tool_error         the tool raised :class:`ToolError` (expected; no traceback)
    timeout            per-tool timeout, or the batch deadline
    cancelled          the batch was cancelled, or the tool raised ``CancelledError``
    invalid_output     the return value cannot be encoded
    tool_exit, interrupted, loop_stop   the tool raised SystemExit / KeyboardInterrupt or
                       stopped the loop: only its own call ends
    pool_exhausted     no thread left for a sync tool (abandoned threads are capped)
    internal_error     a dispatcher bug (should never happen)

Logs at INFO: one ``tool.batch_started`` per batch (``calls``, ``tools``, ``tool_call_ids``)
and one ``tool.finished`` per call (``seconds``, ``outcome``, ``error_type``); failures that
point at a bug are warnings with the traceback. Per-call ``tool.started`` is DEBUG (INFO with
``log_payloads=True``, which adds the arguments and outputs). MCP servers as tool sources:
:mod:`tools.mcp`; built-in clock and calculator tools: :mod:`tools.builtin`.
"""

from tools.calls import ToolCall, ToolCallResult
from tools.context import ToolContext
from tools.dispatch import ToolDispatcher
from tools.errors import ToolError, ToolRegistrationError
from tools.quiet import install_library_defaults as _install_library_defaults
from tools.registry import Tool, ToolRegistry, default_registry, tool

_install_library_defaults()

__all__ = [
    "Tool",
    "ToolCall",
    "ToolCallResult",
    "ToolContext",
    "ToolDispatcher",
    "ToolError",
    "ToolRegistrationError",
    "ToolRegistry",
    "default_registry",
    "tool",
]
