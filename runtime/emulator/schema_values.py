"""Deterministic example values built from a JSON schema (structured outputs, forced calls).

:func:`value_for` returns a value valid against the schema for the subset of JSON Schema that
structured outputs and function parameters use: ``type`` (or a list of types), ``const``,
``enum`` (first value), ``default``, objects (every ``required`` property, nested), arrays (one
item, or ``minItems`` of them), numbers within ``minimum``/``maximum`` (exclusive bounds and
``multipleOf`` roughly honoured), strings honouring ``minLength``/``maxLength`` and common
``format``\\ s, ``$ref`` into ``$defs``/``definitions``, ``anyOf``/``oneOf`` (first non-null
branch) and ``allOf`` (merged). Recursive schemas stop growing past a fixed depth (empty arrays,
null branches where the schema allows them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 8
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_EXAMPLE = "example"


def value_for(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """A deterministic value valid against ``schema`` (``root`` resolves ``$ref``\\ s)."""
    return _value(schema, schema if root is None else root, 0)


def object_for(
    schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, *, all_if_none: bool = False
) -> dict[str, Any]:
    """Values for an object schema's required properties (every property when ``all_if_none``
    and the schema lists no ``required``)."""
    return _object(schema, schema if root is None else root, 0, all_if_none=all_if_none)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while isinstance(schema.get("$ref"), str) and seen < 32:
        target: Any = root
        for part in schema["$ref"].lstrip("#").strip("/").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping):
            return {}
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings}
        seen += 1
    return schema


def _value(schema: Any, root: Mapping[str, Any], depth: int) -> Any:
    if not isinstance(schema, Mapping):
        return _EXAMPLE  # ``true`` / unknown: anything goes
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _value(_pick_branch(schema[key], root, depth), root, depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, Mapping):
                _merge(merged, _resolve(part, root))
        return _value(merged, root, depth)
    kind = _kind(schema, depth)
    if kind == "object":
        return _object(schema, root, depth, all_if_none=False)
    if kind == "array":
        return _array(schema, root, depth)
    if kind == "integer":
        return _integer(schema)
    if kind == "number":
        return _number(schema)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema)


def _merge(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        if key == "properties" and isinstance(value, Mapping):
            into["properties"] = {**(into.get("properties") or {}), **value}
        elif key == "required" and isinstance(value, list):
            into["required"] = [*(into.get("required") or []), *value]
        else:
            into.setdefault(key, value)


def _is_null(schema: Any, root: Mapping[str, Any]) -> bool:
    if not isinstance(schema, Mapping):
        return False
    schema = _resolve(schema, root)
    return schema.get("type") == "null" or ("const" in schema and schema["const"] is None)


def _pick_branch(branches: list[Any], root: Mapping[str, Any], depth: int) -> Any:
    """The first non-null branch (a null one past the depth limit, to end recursion)."""
    nulls = [b for b in branches if _is_null(b, root)]
    if depth >= MAX_DEPTH and nulls:
        return nulls[0]
    return next((b for b in branches if not _is_null(b, root)), branches[0])


def _kind(schema: Mapping[str, Any], depth: int) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        real = [k for k in kind if k != "null"]
        if depth >= MAX_DEPTH and "null" in kind:
            return "null"
        kind = real[0] if real else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _object(
    schema: Mapping[str, Any], root: Mapping[str, Any], depth: int, *, all_if_none: bool
) -> dict[str, Any]:
    props = schema.get("properties")
    props = props if isinstance(props, Mapping) else {}
    required = schema.get("required")
    if not isinstance(required, list) or (not required and all_if_none):
        required = list(props) if all_if_none else []
    return {str(name): _value(props.get(name, {}), root, depth + 1) for name in required}


def _array(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    values = [_value(p, root, depth + 1) for p in prefix] if isinstance(prefix, list) else []
    wanted = int(schema.get("minItems") or 0)
    if depth < MAX_DEPTH:
        wanted = max(wanted, 1)
    maximum = schema.get("maxItems")
    if isinstance(maximum, int):
        wanted = min(wanted, maximum)
    items = schema.get("items", {})
    while len(values) < wanted:
        values.append(_value(items, root, depth + 1))
    return values


def _bounds(schema: Mapping[str, Any]) -> tuple[float, float]:
    low, high = -math.inf, math.inf
    if isinstance(schema.get("minimum"), int | float):
        low = float(schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = max(low, float(schema["exclusiveMinimum"]) + 1e-9)
    if isinstance(schema.get("maximum"), int | float):
        high = float(schema["maximum"])
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = min(high, float(schema["exclusiveMaximum"]) - 1e-9)
    return low, high


def _integer(schema: Mapping[str, Any]) -> int:
    low, high = _bounds(schema)
    value = 1 if low <= 1 <= high else (math.ceil(low) if low > -math.inf else math.floor(high))
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0 and value % step:
        value += step - value % step
        if value > high:
            value -= step
    return int(value)


def _number(schema: Mapping[str, Any]) -> float:
    low, high = _bounds(schema)
    if low <= 1.0 <= high:
        value = 1.0
    elif low > -math.inf:
        value = float(math.ceil(low)) if math.ceil(low) <= high else low
    else:
        value = float(math.floor(high)) if math.floor(high) >= low else high
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        value = math.ceil(value / step) * step
        if value > high:
            value -= step
    return float(value)


def _string(schema: Mapping[str, Any]) -> str:
    text = _FORMATS.get(str(schema.get("format")), _EXAMPLE)
    minimum = schema.get("minLength")
    if isinstance(minimum, int) and len(text) < minimum:
        text = text + "x" * (minimum - len(text))
    maximum = schema.get("maxLength")
    if isinstance(maximum, int) and len(text) > maximum:
        text = text[:maximum]
    return text
