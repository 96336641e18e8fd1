"""Schemas built from signatures: every supported type, strict mode, context injection."""

import dataclasses
import datetime
import enum
import uuid
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from tools import Tool, ToolContext, ToolRegistrationError, ToolRegistry
from tools.schema import to_strict_schema


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str
    zip_code: str = Field(description="Postal code.")


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


def params(fn: Any, **options: Any) -> dict[str, Any]:
    return Tool.from_function(fn, **options).parameters


def test_scalars_snapshot() -> None:
    """str/int/float/bool map to JSON types and are all required without defaults."""

    def scalars(s: str, i: int, f: float, b: bool) -> None:
        """Scalars."""

    assert params(scalars) == {
        "additionalProperties": False,
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "f": {"type": "number"},
            "b": {"type": "boolean"},
        },
        "required": ["s", "i", "f", "b"],
        "type": "object",
    }


def test_literal_and_enum_snapshot() -> None:
    """Literal and Enum parameters become JSON schema enums."""

    def choices(mode: Literal["fast", "slow"], color: Color, level: Literal[1, 2] = 1) -> None:
        """Choices."""

    assert params(choices) == {
        "$defs": {"Color": {"enum": ["red", "green"], "type": "string"}},
        "additionalProperties": False,
        "properties": {
            "mode": {"enum": ["fast", "slow"], "type": "string"},
            "color": {"$ref": "#/$defs/Color"},
            "level": {"default": 1, "enum": [1, 2], "type": "integer"},
        },
        "required": ["mode", "color"],
        "type": "object",
    }


def test_optional_and_defaults_snapshot() -> None:
    """Optional parameters and parameters with defaults are not required."""

    def optionals(
        a: Optional[int] = None,  # noqa: UP045 - the typing spelling is what is tested
        b: str | None = None,
        c: int = 3,
        d: list[str] | None = None,
    ) -> None:
        """Optionals."""

    assert params(optionals) == {
        "additionalProperties": False,
        "properties": {
            "a": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            "b": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "c": {"default": 3, "type": "integer"},
            "d": {
                "anyOf": [{"items": {"type": "string"}, "type": "array"}, {"type": "null"}],
                "default": None,
            },
        },
        "type": "object",
    }


def test_containers_snapshot() -> None:
    """list, dict, tuple (fixed and variadic) and set map to arrays and objects."""

    def containers(
        items: list[int], d: dict[str, float], t: tuple[int, str], tv: tuple[int, ...], s: set[str]
    ) -> None:
        """Containers."""

    assert params(containers) == {
        "additionalProperties": False,
        "properties": {
            "items": {"items": {"type": "integer"}, "type": "array"},
            "d": {"additionalProperties": {"type": "number"}, "type": "object"},
            "t": {
                "maxItems": 2,
                "minItems": 2,
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "type": "array",
            },
            "tv": {"items": {"type": "integer"}, "type": "array"},
            "s": {"items": {"type": "string"}, "type": "array", "uniqueItems": True},
        },
        "required": ["items", "d", "t", "tv", "s"],
        "type": "object",
    }


NESTED_DEFS = {
    "Address": {
        "properties": {
            "street": {"type": "string"},
            "zip_code": {"description": "Postal code.", "type": "string"},
        },
        "required": ["street", "zip_code"],
        "type": "object",
        "additionalProperties": False,
    },
    "Point": {
        "additionalProperties": False,
        "properties": {"x": {"type": "number"}, "y": {"default": 0.0, "type": "number"}},
        "required": ["x"],
        "type": "object",
    },
}


def nested(address: Address, points: list[Point], home: Address | None = None) -> str:
    """Nested."""
    return f"{address.street} {points[0].x} {home}"


def test_nested_model_and_dataclass_snapshot() -> None:
    """Nested pydantic models and dataclasses become closed $defs referenced by $ref."""
    assert params(nested) == {
        "$defs": NESTED_DEFS,
        "additionalProperties": False,
        "properties": {
            "address": {"$ref": "#/$defs/Address"},
            "points": {"items": {"$ref": "#/$defs/Point"}, "type": "array"},
            "home": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": None},
        },
        "required": ["address", "points"],
        "type": "object",
    }


def test_annotated_field_snapshot() -> None:
    """Annotated[..., Field(...)] gives descriptions and constraints, overriding the docstring."""

    def annotated(
        n: Annotated[int, Field(description="How many.", ge=1, le=10)],
        q: Annotated[str, Field(min_length=1)] = "x",
    ) -> None:
        """Annotated.

        Args:
            n: Docstring text that loses to Field(description=...).
            q: Query text.
        """

    assert params(annotated) == {
        "additionalProperties": False,
        "properties": {
            "n": {"description": "How many.", "maximum": 10, "minimum": 1, "type": "integer"},
            "q": {"default": "x", "description": "Query text.", "minLength": 1, "type": "string"},
        },
        "required": ["n"],
        "type": "object",
    }


def test_datetime_date_uuid_formats_snapshot() -> None:
    """datetime, date and UUID are strings with their JSON schema formats."""

    def formats(when: datetime.datetime, day: datetime.date, ident: uuid.UUID) -> None:
        """Formats."""

    assert params(formats) == {
        "additionalProperties": False,
        "properties": {
            "when": {"format": "date-time", "type": "string"},
            "day": {"format": "date", "type": "string"},
            "ident": {"format": "uuid", "type": "string"},
        },
        "required": ["when", "day", "ident"],
        "type": "object",
    }


def test_strict_schema_snapshot() -> None:
    """strict=True closes every object, requires every property and drops null defaults."""

    def strict_nested(
        address: Address, points: list[Point], home: Address | None = None, unit: str = "c"
    ) -> None:
        """Nested."""

    assert params(strict_nested, strict=True) == {
        "$defs": {
            "Address": {**NESTED_DEFS["Address"], "additionalProperties": False},
            "Point": {
                "properties": {"x": {"type": "number"}, "y": {"default": 0.0, "type": "number"}},
                "required": ["x", "y"],
                "type": "object",
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
        "properties": {
            "address": {"$ref": "#/$defs/Address"},
            "points": {"items": {"$ref": "#/$defs/Point"}, "type": "array"},
            "home": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]},
            "unit": {"default": "c", "type": "string"},
        },
        "required": ["address", "points", "home", "unit"],
        "type": "object",
    }


def test_strict_inlines_ref_with_siblings() -> None:
    """A $ref next to other keywords is inlined so strict mode accepts it."""
    schema = {
        "$defs": {"A": {"type": "object", "properties": {"x": {"type": "integer"}}}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A", "description": "An A."}},
    }
    strict = to_strict_schema(schema)
    assert strict["properties"]["a"] == {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "description": "An A.",
        "additionalProperties": False,
        "required": ["x"],
    }
    assert "additionalProperties" not in schema  # the input is not modified


def test_strict_rejects_free_form_dict() -> None:
    """strict=True with a dict parameter fails at registration with a clear message."""

    def free(d: dict[str, int]) -> None:
        """Free."""

    with pytest.raises(ToolRegistrationError, match="strict mode does not allow free-form"):
        Tool.from_function(free, strict=True)


def test_tool_context_is_not_in_schema() -> None:
    """A ToolContext parameter (plain or Optional) is injected, never in the schema."""

    def with_ctx(ctx: ToolContext, city: str, other: ToolContext | None = None) -> None:
        """Ctx."""

    built = Tool.from_function(with_ctx)
    assert built.parameters["properties"] == {"city": {"type": "string"}}
    context = ToolContext(tool_call_id="c1", tool_name="with_ctx")
    _, kwargs = built.schema.call_args(built.schema.validate('{"city": "Oslo"}'), context)
    assert kwargs == {"ctx": context, "city": "Oslo", "other": context}


def test_property_named_title_is_kept() -> None:
    """Only pydantic's generated titles are removed, never a parameter named title."""

    def book(title: str) -> None:
        """Book."""

    assert params(book)["properties"] == {"title": {"type": "string"}}


def test_parameter_names_that_shadow_basemodel_attributes() -> None:
    """Parameters named like BaseModel attributes (json, model_config) work."""

    def odd(json: int, model_config: str = "x") -> None:
        """Odd."""

    built = Tool.from_function(odd)
    assert list(built.parameters["properties"]) == ["json", "model_config"]
    validated = built.schema.validate('{"json": 2}')
    assert built.schema.call_args(validated, None) == ([], {"json": 2, "model_config": "x"})


def test_definitions_shape() -> None:
    """definitions() lists function definitions; strict appears only for strict tools."""
    registry = ToolRegistry()

    @registry.tool
    async def get_weather(location: str, unit: Literal["c", "f"] = "c") -> str:
        """Current weather in a city."""
        return location

    @registry.tool(strict=True, description="Explicit.")
    def ping() -> str:
        return "pong"

    assert registry.definitions() == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "parameters": {
                    "additionalProperties": False,
                    "properties": {
                        "location": {"type": "string"},
                        "unit": {"default": "c", "enum": ["c", "f"], "type": "string"},
                    },
                    "required": ["location"],
                    "type": "object",
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "ping",
                "description": "Explicit.",
                "parameters": {
                    "additionalProperties": False,
                    "properties": {},
                    "required": [],
                    "type": "object",
                },
                "strict": True,
            },
        },
    ]


def test_var_keyword_accepts_extra_arguments() -> None:
    """With **kwargs the schema allows extra properties and they reach the function."""

    def flexible(name: str, **options: Any) -> None:
        """Flexible."""

    built = Tool.from_function(flexible)
    assert built.parameters["additionalProperties"] is True
    validated = built.schema.validate('{"name": "a", "color": "red"}')
    assert built.schema.call_args(validated, None) == ([], {"name": "a", "color": "red"})


def test_positional_only_parameters_are_passed_positionally() -> None:
    """Positional-only parameters (and a positional-only context) are passed by position."""

    def positional(ctx: ToolContext, a: int, /, b: int) -> None:
        """Positional."""

    built = Tool.from_function(positional)
    context = ToolContext(tool_call_id="c1", tool_name="positional")
    validated = built.schema.validate('{"a": 1, "b": 2}')
    assert built.schema.call_args(validated, context) == ([context, 1], {"b": 2})


def test_positional_only_context_keeps_its_place() -> None:
    """A positional-only ToolContext after another positional-only parameter stays second."""

    def second(a: int, ctx: ToolContext, /) -> None:
        """Second."""

    built = Tool.from_function(second)
    context = ToolContext(tool_call_id="c1", tool_name="second")
    validated = built.schema.validate('{"a": 1}')
    assert built.schema.call_args(validated, context) == ([1, context], {})
