"""Request and object shapes of the Responses front end: input items, tools, usage, checks.

Input items are normalised to the stored item shapes of openai-python's ``ResponseItem`` /
``ConversationItem`` (each with an ``id`` and a ``status``), so the same dicts serve as the
model's context, ``GET /responses/{id}/input_items`` and a conversation's items.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from runtime.emulator.errors import ApiError, invalid, missing
from runtime.emulator.ids import IdFactory
from runtime.emulator.model import ChatMessage, ToolExchange, frozen_instance
from runtime.emulator.objects import DEFAULT_MODEL, Obj, check_metadata

MIN_OUTPUT_TOKENS = 16
OUTPUT_PART_TYPES = frozenset({"input_text", "input_image", "input_file"})
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def usage_obj(input_tokens: int, output_tokens: int) -> Obj:
    """``ResponseUsage`` with every detail field."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def response_obj(
    response_id: str,
    body: Mapping[str, Any],
    tools: list[Obj],
    *,
    background: bool,
    store: bool,
    conversation_id: str | None,
) -> Obj:
    """A new response object (``queued`` when in background, else ``in_progress``)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "queued" if background else "in_progress",
        "background": background,
        "completed_at": None,
        "conversation": None if conversation_id is None else {"id": conversation_id},
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": body.get("model") or DEFAULT_MODEL,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": body.get("service_tier") or "default",
        "store": store,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": tools,
        "top_logprobs": body.get("top_logprobs") or 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation") or "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": check_metadata(body.get("metadata")),
    }


def check_max_output_tokens(value: Any) -> None:
    """``max_output_tokens``: an integer of at least 16, as the service demands."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(
            "Invalid type for 'max_output_tokens': expected an integer.",
            param="max_output_tokens",
            code="invalid_type",
        )
    if value < MIN_OUTPUT_TOKENS:
        raise invalid(
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {value} instead.",
            param="max_output_tokens",
            code="integer_below_min_value",
        )


def input_items(raw: Any, ids: IdFactory, param: str = "input") -> list[Obj]:
    """Normalise ``input`` (or a conversation's ``items``) into stored items with ids."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [user_message(raw, ids)]
    if not isinstance(raw, list):
        raise invalid(f"Invalid type for '{param}': expected a string or an array.", param=param)
    return [_input_item(f"{param}[{i}]", item, ids) for i, item in enumerate(raw)]


def user_message(text: str, ids: IdFactory) -> Obj:
    """A user message item holding one text part."""
    return {
        "id": ids.new("msg"),
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": text}],
    }


def _input_item(where: str, item: Any, ids: IdFactory) -> Obj:
    if not isinstance(item, Mapping):
        raise invalid(f"Invalid type for '{where}': expected an object.", param=where)
    kind = item.get("type", "message")
    if kind not in _ITEM_PREFIX:
        raise invalid(f"Invalid value for '{where}.type': {kind!r}.", param=f"{where}.type")
    raw_id = item.get("id")
    item_id = raw_id if isinstance(raw_id, str) and raw_id else ids.new(_ITEM_PREFIX[kind])
    if kind == "message":
        return _message_item(where, item, item_id)
    if not isinstance(item.get("call_id"), str):
        raise missing(f"{where}.call_id")
    if kind == "function_call_output":
        output = _check_output(where, item.get("output"))
        return {
            "id": item_id,
            "type": "function_call_output",
            "call_id": item["call_id"],
            "output": output,
            "status": "completed",
        }
    if not isinstance(item.get("name"), str):
        raise missing(f"{where}.name")
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": item["call_id"],
        "name": item["name"],
        "arguments": str(item.get("arguments", "")),
        "status": "completed",
    }


def _message_item(where: str, item: Mapping[str, Any], item_id: str) -> Obj:
    role = item.get("role")
    if role not in _ROLES:
        raise invalid(f"Invalid value for '{where}.role'.", param=f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        part_type = "output_text" if role == "assistant" else "input_text"
        parts: list[Obj] = [{"type": part_type, "text": content}]
    elif isinstance(content, list):
        parts = [_content_part(f"{where}.content[{i}]", p) for i, p in enumerate(content)]
    else:
        raise missing(f"{where}.content")
    if role == "assistant":
        for part in parts:
            if part.get("type") == "output_text":
                part.setdefault("annotations", [])
    return {
        "id": item_id,
        "type": "message",
        "role": role,
        "status": "completed",
        "content": parts,
    }


def _content_part(where: str, part: Any) -> Obj:
    if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
        raise missing(f"{where}.type")
    return dict(part)


def _check_output(where: str, output: Any) -> str | list[Obj]:
    """A function call output: a string or a list of input_text/input_image/input_file parts."""
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise invalid(
            f"Invalid type for '{where}.output': expected a string or an array of content parts.",
            param=f"{where}.output",
            code="invalid_type",
        )
    parts: list[Obj] = []
    for index, part in enumerate(output):
        at = f"{where}.output[{index}]"
        if not isinstance(part, Mapping) or part.get("type") not in OUTPUT_PART_TYPES:
            raise invalid(
                f"Invalid value for '{at}.type': expected one of 'input_text', 'input_image' "
                "or 'input_file'.",
                param=f"{at}.type",
                code="invalid_value",
            )
        if part["type"] == "input_text" and not isinstance(part.get("text"), str):
            raise missing(f"{at}.text")
        parts.append(dict(part))
    return parts


def output_text(output: str | list[Obj]) -> str:
    """What the model reads of a function call output: the string, or its text parts."""
    if isinstance(output, str):
        return output
    return "\n".join(str(p["text"]) for p in output if p.get("type") == "input_text")


def check_outputs(calls: list[Obj], items: list[Obj]) -> None:
    """Every pending function call needs one output; outputs must answer a known call."""
    expected = {i["call_id"] for i in calls}
    given = [i["call_id"] for i in items if i.get("type") == "function_call_output"]
    for call_id in given:
        if call_id not in expected:
            raise invalid(
                f"No tool call found for function call output with call_id {call_id}.",
                param="input",
            )
    for call_id in sorted(expected - set(given)):
        raise invalid(f"No tool output found for function call {call_id}.", param="input")


def pending_calls(items: list[Obj]) -> list[Obj]:
    """Function calls of a conversation that have no output yet."""
    answered = {i["call_id"] for i in items if i.get("type") == "function_call_output"}
    return [i for i in items if i.get("type") == "function_call" and i["call_id"] not in answered]


def check_tools(tools: Any) -> list[Obj]:
    """``tools``: an array of typed tools; function tools need a name."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("Invalid type for 'tools': expected an array.", param="tools")
    out = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("type"), str):
            raise missing(f"tools[{index}].type")
        if tool["type"] == "function" and not tool.get("name"):
            raise missing(f"tools[{index}].name")
        out.append(dict(tool))
    return out


def conversation_ref(value: Any) -> str | None:
    """The conversation id of ``conversation`` (a string or ``{"id": ...}``)."""
    if value is None:
        return None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    raise invalid(
        "Invalid 'conversation': expected a conversation id or an object with an 'id'.",
        param="conversation",
        code="invalid_type",
    )


def exclusive(body: Mapping[str, Any]) -> None:
    """``previous_response_id`` and ``conversation`` cannot be used together."""
    if body.get("previous_response_id") is not None and body.get("conversation") is not None:
        raise ApiError(
            400,
            "Mutually exclusive parameters: Ensure you are only providing one of: "
            "'previous_response_id' or 'conversation'.",
            param="conversation",
            code="mutually_exclusive_parameters",
        )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [p.get("text") for p in content if type(p) is dict or isinstance(p, Mapping)]
    return "\n".join(p for p in parts if isinstance(p, str))


def chat_messages(items: list[Obj]) -> tuple[list[ChatMessage], list[str]]:
    """User/assistant messages, and system/developer texts (they join the instructions)."""
    messages: list[ChatMessage] = []
    system: list[str] = []
    for item in items:
        if item.get("type") != "message":
            continue
        text = _text_of(item.get("content") or [])
        if item.get("role") in {"system", "developer"}:
            system.append(text)
        else:
            messages.append(
                frozen_instance(ChatMessage, {"role": str(item.get("role")), "text": text})
            )
    return messages, system


def exchanges(items: list[Obj]) -> list[ToolExchange]:
    """Function calls answered since the last user message, with their outputs."""
    last_user = max(
        (
            i
            for i, it in enumerate(items)
            if it.get("type") == "message" and it.get("role") == "user"
        ),
        default=-1,
    )
    recent = items[last_user + 1 :]
    outputs = {
        i["call_id"]: output_text(i["output"])
        for i in recent
        if i.get("type") == "function_call_output"
    }
    return [
        frozen_instance(
            ToolExchange,
            {
                "call_id": i["call_id"],
                "name": str(i.get("name", "")),
                "arguments": str(i.get("arguments", "")),
                "output": outputs[i["call_id"]],
            },
        )
        for i in recent
        if i.get("type") == "function_call" and i.get("call_id") in outputs
    ]


def assistants_tool_choice(choice: Any) -> Any:
    """Responses' ``{"type": "function", "name": X}`` in the model's (Assistants) shape."""
    if type(choice) is str:  # mostly "auto": spared the (slower) abstract Mapping check
        return choice
    if isinstance(choice, Mapping) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def json_schema_of(text: Any) -> Mapping[str, Any] | None:
    """The schema of ``text.format`` when it is ``json_schema``."""
    fmt = text.get("format") if type(text) is dict or isinstance(text, Mapping) else None
    if (type(fmt) is dict or isinstance(fmt, Mapping)) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        return schema if isinstance(schema, Mapping) else {}
    return None
