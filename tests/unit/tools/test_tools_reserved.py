"""The injected ToolContext parameter is reserved: the model can never set it."""

from __future__ import annotations

import json
from typing import Any

from tools import ToolCall, ToolContext, ToolDispatcher, ToolRegistry

registry = ToolRegistry()


@registry.tool
async def flexible(ctx: ToolContext, **options: Any) -> dict[str, Any]:
    """Take any options; report what the context parameter really is."""
    return {"ctx_is_context": isinstance(ctx, ToolContext), "options": options}


@registry.tool
def flexible_positional(ctx: ToolContext, /, **options: Any) -> str:
    """A positional-only context and free options, in a thread."""
    return f"{type(ctx).__name__} {sorted(options)}"


async def test_model_argument_named_like_the_context_is_refused() -> None:
    """An argument named like the ToolContext parameter of a **kwargs tool is an
    invalid_arguments error naming the reserved parameter; the tool does not run with it."""
    dispatcher = ToolDispatcher(registry)
    calls = [
        ToolCall("c1", "flexible", '{"ctx": "forged", "a": 1}'),
        ToolCall("c2", "flexible_positional", '{"ctx": {"run_id": "x"}}'),
        ToolCall("c3", "flexible", '{"a": 1}'),
    ]
    results = await dispatcher.run_batch(calls)
    for result in results[:2]:
        assert result.is_error and result.error_type == "invalid_arguments"
        body = json.loads(result.output)["error"]
        assert "'ctx' is reserved" in body["message"]
        assert body["details"] == [
            {"loc": "ctx", "msg": body["message"], "type": "reserved_parameter"}
        ]
    assert json.loads(results[2].output) == {"ctx_is_context": True, "options": {"a": 1}}
