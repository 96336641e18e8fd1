"""Wire objects (plain dicts, every field present as in the recorded streams) and validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runtime.emulator.errors import invalid

Obj = dict[str, Any]

MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
DEFAULT_MODEL = "gpt-4o"


def usage_obj(prompt_tokens: int, completion_tokens: int) -> Obj:
    """Usage as in the recorded stream."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_token_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def assistant_obj(assistant_id: str, created_at: int, body: Mapping[str, Any]) -> Obj:
    """An assistant object from a create request body."""
    return {
        "id": assistant_id,
        "object": "assistant",
        "created_at": created_at,
        "name": body.get("name"),
        "description": body.get("description"),
        "model": body.get("model") or DEFAULT_MODEL,
        "instructions": body.get("instructions"),
        "tools": list(body.get("tools") or []),
        "top_p": body.get("top_p", 1.0),
        "temperature": body.get("temperature", 1.0),
        "reasoning_effort": body.get("reasoning_effort"),
        "tool_resources": body.get("tool_resources") or {},
        "metadata": dict(body.get("metadata") or {}),
        "response_format": body.get("response_format") or "auto",
    }


def thread_obj(thread_id: str, created_at: int, body: Mapping[str, Any]) -> Obj:
    """A thread object."""
    return {
        "id": thread_id,
        "object": "thread",
        "created_at": created_at,
        "metadata": dict(body.get("metadata") or {}),
        "tool_resources": body.get("tool_resources") or {},
    }


def message_obj(
    message_id: str,
    created_at: int,
    thread_id: str,
    *,
    role: str,
    content: list[Obj],
    run_id: str | None = None,
    assistant_id: str | None = None,
    status: str = "completed",
    attachments: Sequence[Any] = (),
    metadata: Mapping[str, str] | None = None,
) -> Obj:
    """A message object (assistant messages start ``in_progress`` with empty content)."""
    return {
        "id": message_id,
        "object": "thread.message",
        "created_at": created_at,
        "assistant_id": assistant_id,
        "thread_id": thread_id,
        "run_id": run_id,
        "status": status,
        "incomplete_details": None,
        "incomplete_at": None,
        "completed_at": created_at if status == "completed" else None,
        "role": role,
        "content": content,
        "attachments": list(attachments),
        "metadata": dict(metadata or {}),
    }


def text_part(value: str) -> Obj:
    """A text content part of a message."""
    return {"type": "text", "text": {"value": value, "annotations": []}}


def run_obj(
    run_id: str,
    created_at: int,
    thread_id: str,
    assistant: Mapping[str, Any],
    body: Mapping[str, Any],
    expires_at: int,
) -> Obj:
    """A queued run object, overrides taken from the request body, defaults from the assistant."""
    instructions = body.get("instructions")
    if instructions is None:
        instructions = assistant.get("instructions")
    extra = body.get("additional_instructions")
    if extra:
        instructions = f"{instructions}\n{extra}" if instructions else extra
    tools = body.get("tools")
    return {
        "id": run_id,
        "object": "thread.run",
        "created_at": created_at,
        "assistant_id": assistant["id"],
        "thread_id": thread_id,
        "status": "queued",
        "started_at": None,
        "expires_at": expires_at,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "required_action": None,
        "last_error": None,
        "model": body.get("model") or assistant.get("model") or DEFAULT_MODEL,
        "instructions": instructions or "",  # a string on the wire, never null
        "tools": list(tools) if tools is not None else list(assistant.get("tools") or []),
        "tool_resources": body.get("tool_resources") or assistant.get("tool_resources") or {},
        "metadata": dict(body.get("metadata") or {}),
        "temperature": _first(body.get("temperature"), assistant.get("temperature"), 1.0),
        "top_p": _first(body.get("top_p"), assistant.get("top_p"), 1.0),
        "reasoning_effort": body.get("reasoning_effort", assistant.get("reasoning_effort")),
        "max_completion_tokens": body.get("max_completion_tokens"),
        "max_prompt_tokens": body.get("max_prompt_tokens"),
        "truncation_strategy": body.get("truncation_strategy")
        or {"type": "auto", "last_messages": None},
        "incomplete_details": None,
        "usage": None,
        "response_format": body.get("response_format")
        or assistant.get("response_format")
        or "auto",
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)),
    }


RUN_OVERRIDES = frozenset(
    {
        "instructions",
        "additional_instructions",
        "model",
        "tools",
        "tool_resources",
        "metadata",
        "temperature",
        "top_p",
        "reasoning_effort",
        "max_completion_tokens",
        "max_prompt_tokens",
        "truncation_strategy",
        "response_format",
        "tool_choice",
        "parallel_tool_calls",
    }
)
"""The fields of a request body :func:`run_obj` reads: a body with none of them makes a run
of the assistant's settings and the defaults alone (:func:`run_from_defaults`)."""


def run_from_defaults(
    defaults: Mapping[str, Any], run_id: str, created_at: int, thread_id: str, expires_at: int
) -> Obj:
    """:func:`run_obj` for a body without any of :data:`RUN_OVERRIDES`, copied from
    ``defaults`` (``run_obj`` of the same assistant and an empty body); the containers
    ``run_obj`` makes anew for each run are made anew here too."""
    run = dict(defaults)
    run["id"] = run_id
    run["created_at"] = created_at
    run["thread_id"] = thread_id
    run["expires_at"] = expires_at
    run["tools"] = list(defaults["tools"])
    run["tool_resources"] = defaults["tool_resources"] or {}
    run["metadata"] = {}
    run["truncation_strategy"] = {"type": "auto", "last_messages": None}
    return run


def _first(*values: Any) -> Any:
    """The first value that is not None (the last one is the default)."""
    for value in values[:-1]:
        if value is not None:
            return value
    return values[-1]


def step_obj(
    step_id: str,
    created_at: int,
    run: Mapping[str, Any],
    step_type: str,
    details: Obj,
) -> Obj:
    """An in-progress run step (``message_creation`` or ``tool_calls``)."""
    return {
        "id": step_id,
        "object": "thread.run.step",
        "created_at": created_at,
        "run_id": run["id"],
        "assistant_id": run["assistant_id"],
        "thread_id": run["thread_id"],
        "type": step_type,
        "status": "in_progress",
        "cancelled_at": None,
        "completed_at": None,
        "expires_at": run["expires_at"],
        "failed_at": None,
        "last_error": None,
        "step_details": details,
        "usage": None,
    }


def page(items: Sequence[Obj], query: Mapping[str, str]) -> Obj:
    """A list page with ``limit``/``order``/``after``/``before`` (items in creation order)."""
    limit = _limit(query.get("limit"))
    order = query.get("order", "desc")
    if order not in {"asc", "desc"}:
        raise invalid(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    seq = list(items) if order == "asc" else list(reversed(items))
    after, before = query.get("after"), query.get("before")
    if after:
        seq = seq[_cursor_index(seq, after, "after") + 1 :]
    if before:
        seq = seq[: _cursor_index(seq, before, "before")]
    if before and not after:
        data, has_more = seq[-limit:], len(seq) > limit
    else:
        data, has_more = seq[:limit], len(seq) > limit
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    try:
        limit = int(raw)
    except ValueError:
        raise invalid(
            f"Invalid 'limit': expected an integer, but got '{raw}' instead.",
            param="limit",
            code="invalid_type",
        ) from None
    if not 1 <= limit <= 100:
        raise invalid(
            f"Invalid 'limit': integer out of range. Expected a value between 1 and 100, "
            f"but got {limit} instead.",
            param="limit",
            code="integer_out_of_range",
        )
    return limit


def _cursor_index(seq: Sequence[Obj], cursor: str, param: str) -> int:
    for index, item in enumerate(seq):
        if item["id"] == cursor:
            return index
    raise invalid(f"Invalid '{param}': no object with id '{cursor}' in this list.", param=param)


def check_metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    """Validate metadata like the service: a map of at most 16 string pairs, 64/512 chars."""
    if value is None:
        return {}
    if type(value) is not dict and not isinstance(value, Mapping):
        raise invalid(
            f"Invalid type for '{param}': expected an object, but got {_json_type(value)} instead.",
            param=param,
            code="invalid_type",
        )
    if len(value) > MAX_METADATA_KEYS:
        raise invalid(
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{MAX_METADATA_KEYS} properties, but got an object with {len(value)} properties "
            "instead.",
            param=param,
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise invalid(
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{MAX_METADATA_KEY_CHARS}, but got a string with length {len(key)} instead.",
                param=f"{param}.{key}",
                code="string_above_max_length",
            )
        if not isinstance(item, str):
            raise invalid(
                f"Invalid type for '{param}.{key}': expected a string, but got "
                f"{_json_type(item)} instead.",
                param=f"{param}.{key}",
                code="invalid_type",
            )
        if len(item) > MAX_METADATA_VALUE_CHARS:
            raise invalid(
                f"Invalid '{param}.{key}': string too long. Expected a string with maximum "
                f"length {MAX_METADATA_VALUE_CHARS}, but got a string with length {len(item)} "
                "instead.",
                param=f"{param}.{key}",
                code="string_above_max_length",
            )
    return dict(value)


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    return names.get(type(value), "an object")


def check_content(value: Any, param: str = "content") -> list[Obj]:
    """Normalise message content (a string or a list of parts) to content parts."""
    if isinstance(value, str):
        return [text_part(value)]
    if not isinstance(value, list) or not value:
        raise invalid(
            f"Invalid '{param}': expected a string or a non-empty array of content parts.",
            param=param,
            code="invalid_type",
        )
    parts = []
    for index, part in enumerate(value):
        if not isinstance(part, Mapping) or "type" not in part:
            raise invalid(f"Invalid '{param}[{index}]': expected a content part object.")
        if part["type"] == "text":
            parts.append(text_part(str(part.get("text", ""))))
        elif part["type"] in {"image_url", "image_file"}:
            parts.append(dict(part))
        else:
            raise invalid(
                f"Invalid value: '{part['type']}'. Supported values are: 'text', 'image_url' "
                "and 'image_file'.",
                param=f"{param}[{index}].type",
                code="invalid_value",
            )
    return parts


def check_role(value: Any) -> str:
    """Message role: user or assistant."""
    if value not in {"user", "assistant"}:
        raise invalid(
            f"Invalid value: '{value}'. Supported values are: 'user' and 'assistant'.",
            param="role",
            code="invalid_value",
        )
    return str(value)


def check_run_options(body: Mapping[str, Any]) -> None:
    """Validate run options shared by create run and create thread and run."""
    for name in ("max_completion_tokens", "max_prompt_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise invalid(f"Invalid type for '{name}': expected an integer.", param=name)
        if isinstance(value, int) and value < 1:
            raise invalid(f"Invalid '{name}': must be positive.", param=name)
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid("Invalid type for 'tools': expected an array.", param="tools")
    choice = body.get("tool_choice")
    if choice is not None and not (
        (isinstance(choice, str) and choice in {"none", "auto", "required"})
        or (isinstance(choice, Mapping) and choice.get("type") in {"function", "file_search"})
    ):
        raise invalid(
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a tool.",
            param="tool_choice",
            code="invalid_value",
        )
    strategy = body.get("truncation_strategy")
    if strategy is not None and (
        not isinstance(strategy, Mapping) or strategy.get("type") not in {"auto", "last_messages"}
    ):
        raise invalid(
            "Invalid 'truncation_strategy': type must be 'auto' or 'last_messages'.",
            param="truncation_strategy.type",
            code="invalid_value",
        )
    check_metadata(body.get("metadata"))
