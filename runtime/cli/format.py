"""Text helpers of the terminal views: one-line summaries of calls, usage and runs."""

from __future__ import annotations

import json
from typing import Any

from runtime.core.backend import Usage
from runtime.core.result import RunResult


def one_line(text: str, limit: int) -> str:
    """Collapse whitespace runs to single spaces and cut to ``limit`` characters (with …)."""
    flat = " ".join(text.split())
    if limit <= 0:
        return ""
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)] + "…"


def call_signature(name: str, arguments: str) -> str:
    """``name(key="value", n=1)`` from JSON arguments (the raw text when not an object)."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return f"{name}({arguments})"
    if not isinstance(parsed, dict):
        return f"{name}({arguments})"
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in parsed.items())
    return f"{name}({inner})"


def usage_fields(usage: Usage | None) -> dict[str, int]:
    """Token counts of a run's usage (empty when the server reported none)."""
    if usage is None:
        return {}
    total = usage.total_tokens or usage.input_tokens + usage.output_tokens
    return {"prompt": usage.input_tokens, "completion": usage.output_tokens, "total": total}


def status_summary(result: RunResult[Any], seconds: float) -> str:
    """One human line: status, rounds, tool calls, tokens and wall time."""
    parts = [result.status]
    if result.reason or result.incomplete_reason:
        parts[0] += f" ({result.reason or result.incomplete_reason})"
    elif result.status == "failed" and result.error is not None:
        parts[0] += f" ({result.error.message})"
    parts.append(f"{result.rounds} tool round{'s' if result.rounds != 1 else ''}")
    parts.append(f"{len(result.tool_calls)} tool call{'s' if len(result.tool_calls) != 1 else ''}")
    tokens = usage_fields(result.usage)
    if tokens:
        parts.append(
            f"tokens {tokens['prompt']} prompt + {tokens['completion']} completion"
            f" = {tokens['total']}"
        )
    parts.append(f"{seconds:.2f} s")
    return " · ".join(parts)
