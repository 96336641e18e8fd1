"""MCP tool results -> the output string a model receives."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_types import CallToolResult


def render_result(result: CallToolResult) -> str:
    """Return the content of a tool result as one string.

    Text parts are kept as they are; images, audio and resources become one JSON object
    each (``{"type": "image", "mime_type": "image/png", "bytes": 68}``) since their bytes
    mean nothing to a text model. Parts are joined by newlines. A result with no content
    gives its structured content as JSON (or ``""``).
    """
    parts = [_render_part(part) for part in result.content]
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def _render_part(part: Any) -> str:
    kind = getattr(part, "type", None)
    if kind == "text":
        return str(part.text)
    if kind in ("image", "audio"):
        return _json({"type": kind, "mime_type": part.mime_type, "bytes": _size(part.data)})
    if kind == "resource":
        return _json(_describe_resource(part.resource))
    if kind == "resource_link":
        link: dict[str, Any] = {"type": "resource_link", "uri": str(part.uri), "name": part.name}
        if part.mime_type:
            link["mime_type"] = part.mime_type
        return _json(link)
    return _json({"type": str(kind or "unknown")})


def _describe_resource(resource: Any) -> dict[str, Any]:
    described: dict[str, Any] = {"type": "resource", "uri": str(resource.uri)}
    if getattr(resource, "mime_type", None):
        described["mime_type"] = resource.mime_type
    text = getattr(resource, "text", None)
    if text is not None:
        described["text"] = text
    else:
        described["bytes"] = _size(getattr(resource, "blob", ""))
    return described


def _size(data: str) -> int:
    """Decoded size of base64 data (its text length when it is not valid base64)."""
    try:
        return len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return len(data)


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


def error_text(result: CallToolResult) -> str:
    """The message of an ``isError`` result: its text parts (a generic one when empty)."""
    texts = [str(getattr(p, "text", "")) for p in result.content if p.type == "text"]
    return "\n".join(texts) or "the MCP tool reported an error without a message"
