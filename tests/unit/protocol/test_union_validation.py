"""The API objects' ``Known | Unknown`` unions validate first-match: the same outcome as
pydantic's default (smart) mode, on any JSON-shaped input."""

from __future__ import annotations

import functools
import json
import typing
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from runtime.assistants import models as assistants
from runtime.protocol.objects import FIRST_MATCH
from runtime.responses import models as responses

UNIONS: dict[str, Any] = {
    "Annotation": assistants.Annotation,
    "MessageContent": assistants.MessageContent,
    "StepToolCall": assistants.StepToolCall,
    "StepDetails": assistants.StepDetails,
    "OutputContent": responses.OutputContent,
    "OutputItem": responses.OutputItem,
}
# How the models validate each union: the member the ``type`` names, then the fallback.
BY_TYPE: dict[str, Any] = {
    "Annotation": assistants.AnnotationByType,
    "MessageContent": assistants.MessageContentByType,
    "StepToolCall": assistants.StepToolCallByType,
    "StepDetails": assistants.StepDetailsByType,
    "OutputContent": responses.OutputContentByType,
    "OutputItem": responses.OutputItemByType,
}


def _members(union: Any) -> list[type[BaseModel]]:
    return list(typing.get_args(union))


def _nested_models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    """Every model reachable from ``model``'s fields (to name their keys in inputs)."""
    if model in seen:
        return
    seen.add(model)
    stack = [f.annotation for f in model.model_fields.values()]
    while stack:
        annotation = stack.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _nested_models(annotation, seen)
        stack.extend(typing.get_args(annotation))


def _keys(union: Any) -> list[str]:
    models: set[type[BaseModel]] = set()
    for member in _members(union):
        _nested_models(member, models)
    return sorted({name for model in models for name in model.model_fields} | {"extra"})


def _tags(union: Any) -> list[str]:
    tags = []
    for member in _members(union):
        tags.extend(typing.get_args(member.model_fields["type"].annotation))
    return [*tags, "not_a_known_type"]


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([1.0, 2.5, -0.0]),
    st.sampled_from(["", "x", "1", "2.5", "true", "function", "text", "message"]),
)


def inputs(union: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts shaped like the union's members: a tag, known keys (of every nested model) with
    values of every JSON kind, coercible strings and numbers included, and unknown keys."""
    keys = st.sampled_from(_keys(union))
    values = st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4)
        ),
        max_leaves=8,
    )
    tag = st.one_of(st.sampled_from(_tags(union)), SCALARS)
    tagged = st.builds(
        lambda t, rest: {**rest, "type": t}, tag, st.dictionaries(keys, values, max_size=6)
    )
    return tagged | st.dictionaries(keys, values, max_size=6)  # with or without a tag


@functools.cache  # building an adapter of a big union takes long: one per union and module
def _smart(name: str) -> TypeAdapter[Any]:
    """Pydantic's default (smart) validation of union ``name``."""
    return TypeAdapter[Any](UNIONS[name])


def _outcome(adapter: TypeAdapter[Any], value: Any, *, error_count: bool = True) -> tuple[Any, ...]:
    try:
        model = adapter.validate_python(value)
    except ValidationError as exc:
        return ("invalid", exc.error_count() if error_count else None)
    return (type(model), model.model_dump(), model.model_fields_set)


@pytest.mark.parametrize("name", sorted(UNIONS))
def test_first_match_validates_as_smart_mode(name: str) -> None:
    """For random member-shaped inputs, first-match validation of the union gives the member,
    values and fields set that smart mode gives (or fails alike)."""
    union = UNIONS[name]
    smart = _smart(name)
    first = TypeAdapter[Any](Annotated[union, FIRST_MATCH])

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(inputs(union))
    def check(value: dict[str, Any]) -> None:
        assert _outcome(first, value) == _outcome(smart, value)

    check()


@pytest.mark.parametrize("name", sorted(UNIONS))
def test_by_type_validates_as_smart_mode(name: str) -> None:
    """For random member-shaped inputs (dicts, JSON text and models of every member), the
    unions as the models validate them (the member the ``type`` names, then the fallback)
    give the member, values and fields set that smart mode gives, or fail alike (with fewer
    errors: members that cannot match are not tried)."""
    union = UNIONS[name]
    smart = _smart(name)
    by_type = TypeAdapter[Any](BY_TYPE[name])

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(inputs(union))
    def check(value: dict[str, Any]) -> None:
        expected = _outcome(smart, value, error_count=False)
        assert _outcome(by_type, value, error_count=False) == expected
        try:
            text = json.dumps(value)
        except ValueError:
            return
        from_json = _outcome(smart, json.loads(text), error_count=False)
        try:
            model = by_type.validate_json(text)
            got: tuple[Any, ...] = (type(model), model.model_dump(), model.model_fields_set)
        except ValidationError:
            got = ("invalid", None)
        assert got == from_json
        if expected[0] != "invalid":
            # A model already validated (of whichever member) is kept as it is.
            assert _outcome(by_type, smart.validate_python(value), error_count=False)[:2] == (
                expected[0],
                expected[1],
            )

    check()


def test_first_match_keeps_the_known_member_and_the_fallback() -> None:
    """A known type still becomes its own model, an invalid one or an unknown type the
    fallback, inside whole objects (a run step's tool calls, a response's output)."""
    step = assistants.RunStep.model_validate(
        {
            "id": "step_1",
            "step_details": {
                "type": "tool_calls",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f"}},
                    {"id": "call_2", "type": "function", "function": {"name": 3}},
                    {"id": "call_3", "type": "web_browser"},
                ],
            },
        }
    )
    assert isinstance(step.step_details, assistants.ToolCallsStepDetails)
    kinds = [type(c) for c in step.step_details.tool_calls]
    assert kinds == [
        assistants.FunctionToolCall,
        assistants.UnknownToolCall,
        assistants.UnknownToolCall,
    ]
    response = responses.Response.model_validate(
        {
            "id": "resp_1",
            "output": [
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "message", "content": [{"type": "output_text", "text": "hi"}]},
                {"type": "reasoning", "id": "rs_1"},
            ],
        }
    )
    assert [type(i) for i in response.output] == [
        responses.FunctionCallItem,
        responses.OutputMessage,
        responses.UnknownItem,
    ]
    assert response.output_text == "hi"
