"""Tool outputs: JSON encoding of return values, error objects, size cap."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pydantic_core

from tools.errors import ArgumentIssue

TRUNCATION_MARKER = "…[truncated {n} chars]"
MIN_OUTPUT_CHARS = 256
_MAX_MESSAGE_CHARS = 2000


def encode_output(value: Any) -> str:
    """Return a tool's return value as the output text.

    A str is sent as is; anything else is JSON (pydantic models, dataclasses, datetimes,
    UUIDs, enums, sets and tuples handled; unknown objects fall back to ``str()``).
    """
    if isinstance(value, str):
        return value
    return pydantic_core.to_json(value, serialize_unknown=True, inf_nan_mode="constants").decode()


def truncate(text: str, limit: int) -> str:
    """Cap text at limit characters, ending with a visible marker when cut.

    Args:
        text: the output.
        limit: maximum length of the result, marker included.

    Returns:
        text itself when short enough, else its head plus ``…[truncated N chars]``.
    """
    if len(text) <= limit:
        return text
    keep = limit - len(TRUNCATION_MARKER.format(n=len(text)))
    # The marker's digit count can only shrink as keep grows, so one refinement settles it.
    for _ in range(2):
        marker = TRUNCATION_MARKER.format(n=len(text) - keep)
        keep = max(0, limit - len(marker))
    return text[:keep] + TRUNCATION_MARKER.format(n=len(text) - keep)


def error_output(
    error_type: str,
    message: str,
    tool: str,
    *,
    details: Sequence[ArgumentIssue] = (),
    extra: dict[str, Any] | None = None,
    max_chars: int | None = None,
) -> str:
    """Return the JSON error object submitted as the output of a failed call.

    Shape: ``{"error": {"type", "message", "tool"[, "details"][, extra...]}}``. With
    ``max_chars`` the object stays valid JSON within the cap: trailing details are dropped
    (``"details_omitted": N`` says how many), then the message is shortened.
    """
    body: dict[str, Any] = {
        "type": error_type,
        "message": truncate(message, _MAX_MESSAGE_CHARS),
        "tool": tool,
    }
    if extra:
        body.update(extra)
    issues = [issue.as_dict() for issue in details]
    text = _encode_error(body, issues, 0)
    if max_chars is None or len(text) <= max_chars:
        return text
    for kept in range(len(issues) - 1, -1, -1):
        text = _encode_error(body, issues[:kept], len(issues) - kept)
        if len(text) <= max_chars:
            return text
    message = body["message"]
    while len(text) > max_chars and len(body["message"]) > 40:
        # JSON escapes make the encoded text longer than the message: shrink until it fits.
        keep = max(len(body["message"]) - (len(text) - max_chars) - 8, 40)
        body["message"] = truncate(message, keep)
        text = _encode_error(body, [], len(issues))
    return text


def _encode_error(body: dict[str, Any], issues: list[dict[str, Any]], omitted: int) -> str:
    full = dict(body)
    if issues:
        full["details"] = issues
    if omitted:
        full["details_omitted"] = omitted
    return json.dumps({"error": full}, ensure_ascii=False)
