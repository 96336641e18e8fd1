"""Fuzzing tool-argument validation and dispatch with random JSON (and random non-JSON).

Whatever arguments the model sends, validation answers a model or ``ToolArgumentsError``, and a
dispatched batch gives exactly one string output per call: the tool's, or a JSON error object
of a documented type. Nothing escapes; nothing is an ``internal_error``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tools import ToolCall, ToolDispatcher, ToolRegistry
from tools.errors import ToolArgumentsError

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ERROR_TYPES = {"invalid_json", "invalid_arguments", "unknown_tool", "tool_exception", "tool_error"}
MAX_OUTPUT = 4096


class Address(BaseModel):
    """A nested model argument."""

    city: str
    zip: int | None = None


@dataclass
class Window:
    """A dataclass argument."""

    start: float
    end: float


def build_registry() -> ToolRegistry:
    """Tools covering the supported parameter kinds."""
    registry = ToolRegistry()

    @registry.tool
    def scalars(a: int, b: float, c: str, d: bool = False) -> str:
        """Scalars."""
        return f"{a}{b}{c}{d}"

    @registry.tool
    async def choice(unit: Literal["c", "f"], tags: list[str] | None = None) -> dict[str, Any]:
        """Literal and optional list."""
        return {"unit": unit, "tags": tags}

    @registry.tool
    def nested(address: Address, window: Window, counts: dict[str, int]) -> str:
        """Nested model, dataclass and mapping."""
        return f"{address.city}:{window.start}:{sum(counts.values())}"

    @registry.tool
    def loose(name: str, **extra: Any) -> str:
        """Accepts extra keyword arguments."""
        return name + json.dumps(extra, default=str) * 100  # long: exercises the output cap

    @registry.tool
    def fails(n: int) -> str:
        """Raises for every input."""
        raise ValueError(f"no {n}")

    return registry


REGISTRY = build_registry()
NAMES = [*REGISTRY.names(), "missing_tool"]
PARAM_KEYS = ["a", "b", "c", "d", "unit", "tags", "address", "window", "counts", "name", "n"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["c", "f", "1", "1.5", "true"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from([*PARAM_KEYS, "city", "zip", "start", "end"]) | st.text(max_size=6),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)
argument_objects = st.dictionaries(st.sampled_from(PARAM_KEYS), json_values, max_size=6)
raw_arguments = (
    argument_objects.map(json.dumps)
    | json_values.map(json.dumps)
    | st.text(max_size=60)
    | st.sampled_from(["", " ", "{", "null", "NaN", '{"a": 1e999}', '{"a": Infinity}', "\ud800"])
)


@FUZZ
@given(name=st.sampled_from(REGISTRY.names()), raw=raw_arguments)
def test_validation_answers_a_model_or_tool_arguments_error(name: str, raw: str) -> None:
    """Random JSON, non-JSON and lone surrogates: a model or ToolArgumentsError, nothing else."""
    tool = REGISTRY.get(name)
    assert tool is not None
    try:
        validated = tool.schema.validate(raw)
    except ToolArgumentsError as exc:
        assert exc.error_type in {"invalid_json", "invalid_arguments"}
        assert str(exc)
    else:
        assert isinstance(validated, BaseModel)


@FUZZ
@given(calls=st.lists(st.tuples(st.sampled_from(NAMES), raw_arguments), min_size=1, max_size=6))
def test_dispatch_gives_one_string_output_per_call(calls: list[tuple[str, str]]) -> None:
    """A batch of random calls yields one capped string output each, errors of known types only."""
    batch = [ToolCall(f"call_{i}", name, raw) for i, (name, raw) in enumerate(calls)]

    async def go() -> list[Any]:
        dispatcher = ToolDispatcher(REGISTRY, max_output_chars=MAX_OUTPUT, default_timeout_s=5)
        try:
            return await dispatcher.run_batch(batch)
        finally:
            await dispatcher.aclose()

    results = asyncio.run(go())
    assert [r.tool_call_id for r in results] == [c.id for c in batch]
    for call, result in zip(batch, results, strict=True):
        assert isinstance(result.output, str) and len(result.output) <= MAX_OUTPUT
        if call.name == "missing_tool":
            assert result.error_type == "unknown_tool"
        if call.name == "fails" and not result.is_error:
            pytest.fail("a raising tool produced a normal output")
        if result.is_error:
            assert result.error_type in ERROR_TYPES, result.output
            body = json.loads(result.output)
            assert body["error"]["type"] == result.error_type


DEEP = ["[" * 100_000, '{"a":' * 100_000, "[" * 5_000 + "]" * 5_000]


@pytest.mark.parametrize("raw", DEEP, ids=["deep-array", "deep-object", "balanced-5000"])
def test_deeply_nested_arguments_are_invalid_json(raw: str) -> None:
    """Arguments nested deeper than json's recursion limit are invalid JSON, not RecursionError."""
    tool = REGISTRY.get("scalars")
    assert tool is not None
    with pytest.raises(ToolArgumentsError):
        tool.schema.validate(raw)


def test_deeply_nested_arguments_dispatch_as_invalid_json() -> None:
    """A call with absurdly nested arguments gets an invalid_json error output."""

    async def go() -> Any:
        dispatcher = ToolDispatcher(REGISTRY)
        (result,) = await dispatcher.run_batch([ToolCall("call_deep", "scalars", DEEP[0])])
        return result

    result = asyncio.run(go())
    assert result.is_error
    assert result.error_type == "invalid_json", result.output


def test_error_output_stays_json_under_a_small_cap() -> None:
    """With the smallest allowed cap, an error output with many issues is still valid JSON."""
    raw = json.dumps({f"extra_{i}": i for i in range(30)})

    async def go() -> Any:
        dispatcher = ToolDispatcher(REGISTRY, max_output_chars=256)
        (result,) = await dispatcher.run_batch([ToolCall("call_x", "scalars", raw)])
        return result

    result = asyncio.run(go())
    assert result.error_type == "invalid_arguments"
    assert len(result.output) <= 256
    assert json.loads(result.output)["error"]["type"] == "invalid_arguments"
