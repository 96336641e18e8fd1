"""The schema a model sees is decided by the runtime, not by the installed pydantic release.

Each snapshot here is exact: CI runs it on the locked pydantic, on the newest release and on
the lowest supported one, so a pydantic default that moves shows up as a failure here.
"""

import dataclasses
import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict

from tools import Tool


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Tag(TypedDict):
    name: str
    weight: float


@dataclasses.dataclass
class Window:
    start: str
    end: str | None = None


class Owner(BaseModel):
    login: str
    team: Literal["core", "ops"] = "core"


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: str


def file_ticket(
    title: str,
    owner: Owner,
    tags: list[Tag],
    window: Window | None = None,
    priority: Priority = Priority.LOW,
    extra: Loose | None = None,
    labels: dict[str, int] | None = None,
) -> str:
    """File a ticket."""
    return title


PINNED = {
    "$defs": {
        "Loose": {
            "additionalProperties": True,
            "properties": {"kind": {"type": "string"}},
            "required": ["kind"],
            "type": "object",
        },
        "Owner": {
            "additionalProperties": False,
            "properties": {
                "login": {"type": "string"},
                "team": {"default": "core", "enum": ["core", "ops"], "type": "string"},
            },
            "required": ["login"],
            "type": "object",
        },
        "Priority": {"enum": [1, 2], "type": "integer"},
        "Tag": {
            "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "weight": {"type": "number"}},
            "required": ["name", "weight"],
            "type": "object",
        },
        "Window": {
            "additionalProperties": False,
            "properties": {
                "start": {"type": "string"},
                "end": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            },
            "required": ["start"],
            "type": "object",
        },
    },
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string"},
        "owner": {"$ref": "#/$defs/Owner"},
        "tags": {"items": {"$ref": "#/$defs/Tag"}, "type": "array"},
        "window": {"anyOf": [{"$ref": "#/$defs/Window"}, {"type": "null"}], "default": None},
        "priority": {"$ref": "#/$defs/Priority", "default": 1},
        "extra": {"anyOf": [{"$ref": "#/$defs/Loose"}, {"type": "null"}], "default": None},
        "labels": {
            "anyOf": [
                {"additionalProperties": {"type": "integer"}, "type": "object"},
                {"type": "null"},
            ],
            "default": None,
        },
    },
    "required": ["title", "owner", "tags"],
    "type": "object",
}


def test_nested_models_dataclasses_typeddicts_enums_optionals_pinned() -> None:
    """Every structured type is closed unless it allows extras; $defs are short-named, sorted."""
    schema = Tool.from_function(file_ticket).parameters
    assert schema == PINNED
    assert list(schema["$defs"]) == sorted(schema["$defs"])


def _clashing_models() -> tuple[type[BaseModel], type[BaseModel]]:
    first = type("Address", (BaseModel,), {"__annotations__": {"street": str}})
    second = type(
        "Address",
        (BaseModel,),
        {"__annotations__": {"city": str}, "__module__": "elsewhere.models"},
    )
    return first, second


def test_clashing_class_names_get_numbered_short_names() -> None:
    """Two classes named Address become Address and Address_2, never module-qualified names."""
    home_type, work_type = _clashing_models()

    def route(home, work) -> str:  # type: ignore[no-untyped-def]
        """Route between two addresses."""
        return ""

    route.__annotations__ = {"home": home_type, "work": work_type, "return": str}
    schema = Tool.from_function(route).parameters
    assert sorted(schema["$defs"]) == ["Address", "Address_2"]
    refs = {schema["properties"][p]["$ref"] for p in ("home", "work")}
    assert refs == {"#/$defs/Address", "#/$defs/Address_2"}
    bodies = [set(d["properties"]) for d in schema["$defs"].values()]
    assert sorted(map(sorted, bodies)) == [["city"], ["street"]]


def test_strict_pinned_schema_keeps_closed_defs() -> None:
    """Strict mode on top of the normalized schema requires every property at every level."""

    def strict_tool(owner: Owner, window: Window) -> str:
        """Strict."""
        return ""

    schema = Tool.from_function(strict_tool, strict=True).parameters
    assert schema["$defs"]["Owner"]["required"] == ["login", "team"]
    assert schema["$defs"]["Window"]["required"] == ["start", "end"]
    assert all(d["additionalProperties"] is False for d in schema["$defs"].values())
