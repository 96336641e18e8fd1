"""Schema-built values (structured outputs, forced calls) are valid against their schema."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from runtime.emulator.schema_values import object_for, value_for


class Node(BaseModel):
    """A recursive model: generation must stop."""

    name: str
    children: list[Node]
    parent: Node | None


class Mixed(BaseModel):
    """Literals, bounds, formats and unions as pydantic renders them."""

    kind: Literal["a", "b"]
    count: int = Field(ge=10, le=20)
    share: float = Field(gt=0, lt=1)
    when: datetime
    day: date
    ident: UUID
    either: int | str
    code: str = Field(min_length=12, max_length=12)


def test_recursive_model_terminates_and_validates() -> None:
    """A self-referencing schema yields a finite value the model accepts."""
    schema = to_strict_json_schema(Node)
    value = value_for(schema)
    node = Node.model_validate(value)
    depth = 0
    while node.children:
        node, depth = node.children[0], depth + 1
    assert 1 <= depth <= 10


def test_bounds_formats_and_unions_validate() -> None:
    """Bounds, date/datetime/uuid formats, literals and unions give a valid instance."""
    value = value_for(to_strict_json_schema(Mixed))
    parsed = Mixed.model_validate(value)
    assert parsed.kind == "a" and 10 <= parsed.count <= 20 and 0 < parsed.share < 1
    assert parsed.either == 1 and len(parsed.code) == 12


def test_all_of_min_items_multiple_of_and_prefix_items() -> None:
    """allOf merges, minItems/maxItems, multipleOf and prefixItems are honoured."""
    schema = {
        "allOf": [
            {
                "type": "object",
                "properties": {"a": {"type": "integer", "multipleOf": 7, "minimum": 8}},
                "required": ["a"],
            },
            {
                "properties": {"b": {"type": "array", "items": {"type": "boolean"}, "minItems": 3}},
                "required": ["b"],
            },
        ],
        "properties": {
            "c": {"type": "array", "maxItems": 0},
            "d": {"prefixItems": [{"const": 1}, {"type": "string"}]},
        },
        "required": ["c", "d"],
    }
    assert value_for(schema) == {"a": 14, "b": [True, True, True], "c": [], "d": [1, "example"]}


def test_nullable_type_lists_and_one_of_take_the_first_real_branch() -> None:
    """["null", "integer"] gives an integer; oneOf skips a null branch; const and default win."""
    assert value_for({"type": ["null", "integer"]}) == 1
    assert value_for({"oneOf": [{"type": "null"}, {"type": "string", "format": "email"}]}) == (
        "user@example.com"
    )
    assert value_for({"type": "string", "default": "dflt"}) == "dflt"
    assert value_for({"const": None}) is None


def test_object_for_takes_every_property_without_required() -> None:
    """Function arguments without a required list get every property (the old behaviour)."""
    schema = {"type": "object", "properties": {"x": {"type": "number"}, "y": {"enum": ["p"]}}}
    assert object_for(schema, all_if_none=True) == {"x": 1.0, "y": "p"}
    assert value_for(schema) == {}
