"""The body parameters each endpoint accepts; anything else is refused as the service does.

The sets follow the official openai-python SDK's request signatures, so every parameter the SDK
(or this project's runtime) can send is accepted, and a misspelt one is a 400
``unknown_parameter`` naming it, instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runtime.emulator.errors import ApiError

RESPONSE_CREATE = frozenset(
    {
        "access_programs",
        "background",
        "background_options",
        "context_management",
        "conversation",
        "image",
        "include",
        "input",
        "instructions",
        "max_output_tokens",
        "max_tool_calls",
        "metadata",
        "model",
        "moderation",
        "parallel_tool_calls",
        "previous_response_id",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "truncation",
        "user",
    }
)
ASSISTANT = frozenset(
    {
        "description",
        "instructions",
        "metadata",
        "model",
        "name",
        "reasoning_effort",
        "response_format",
        "temperature",
        "tool_resources",
        "tools",
        "top_p",
    }
)
THREAD_CREATE = frozenset({"messages", "metadata", "tool_resources"})
THREAD_UPDATE = frozenset({"metadata", "tool_resources"})
MESSAGE_CREATE = frozenset({"role", "content", "attachments", "metadata"})
METADATA_ONLY = frozenset({"metadata"})
RUN_OPTIONS = frozenset(
    {
        "assistant_id",
        "instructions",
        "max_completion_tokens",
        "max_prompt_tokens",
        "metadata",
        "model",
        "parallel_tool_calls",
        "reasoning_effort",
        "response_format",
        "stream",
        "temperature",
        "tool_choice",
        "tools",
        "top_p",
        "truncation_strategy",
    }
)
RUN_CREATE = RUN_OPTIONS | {"additional_instructions", "additional_messages"}
THREAD_AND_RUN = RUN_OPTIONS | {"thread", "tool_resources"}
SUBMIT_OUTPUTS = frozenset({"tool_outputs", "stream"})
CONVERSATION_CREATE = frozenset({"items", "metadata"})
CONVERSATION_ITEMS_CREATE = frozenset({"items"})


def check_params(body: Mapping[str, Any], known: Iterable[str], prefix: str = "") -> None:
    """400 ``unknown_parameter`` for the first body key not in ``known``."""
    allowed = known if isinstance(known, (frozenset, set)) else frozenset(known)
    for name in body:
        if name not in allowed:
            param = f"{prefix}{name}"
            raise ApiError(
                400, f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter"
            )
