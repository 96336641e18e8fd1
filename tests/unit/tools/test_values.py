"""direct_init: the same constructor as the dataclass's, and the same frozen value."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from runtime.core.turn import TextPart, Turn, TurnError, TurnRef, Usage
from tools import ToolCall, ToolCallResult
from tools.values import direct_init

DIRECT = [ToolCall, ToolCallResult, Turn, TurnRef, Usage, TurnError, TextPart]
EXAMPLES: dict[type, dict[str, Any]] = {
    ToolCall: {"id": "call_1", "name": "ping", "arguments": "{}"},
    ToolCallResult: {
        "tool_call_id": "call_1",
        "name": "ping",
        "arguments": "{}",
        "output": "pong",
        "is_error": False,
        "seconds": 0.5,
    },
    Turn: {"ref": TurnRef("run_1", "thread_1"), "status": "completed", "model": "m"},
    TurnRef: {"id": "run_1"},
    Usage: {"input_tokens": 3, "total_tokens": 3},
    TurnError: {"code": None, "message": "boom"},
    TextPart: {"id": "msg_1", "text": "hi"},
}


def _reference(cls: type) -> type:
    """The same fields under the dataclass's own generated ``__init__``."""
    copy = type(cls.__name__, (), {"__annotations__": dict(cls.__annotations__)})
    for param in dataclasses.fields(cls):
        if param.default is not dataclasses.MISSING:
            setattr(copy, param.name, param.default)
    return dataclass(frozen=True)(copy)


@pytest.mark.parametrize("cls", DIRECT, ids=lambda cls: cls.__name__)
def test_direct_init_takes_what_the_dataclass_init_takes(cls: type) -> None:
    """Same parameters, defaults and order; the same field values from the same arguments;
    still frozen, comparable, replaceable and picklable."""
    reference = _reference(cls)
    ours = inspect.signature(cls.__init__).parameters
    theirs = inspect.signature(reference.__init__).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]
    kwargs = EXAMPLES[cls]
    value = cls(**kwargs)
    assert {f.name: getattr(value, f.name) for f in dataclasses.fields(cls)} == {
        f.name: getattr(reference(**kwargs), f.name) for f in dataclasses.fields(reference)
    }
    positional = cls(*(getattr(value, f.name) for f in dataclasses.fields(cls)))
    assert positional == value and hash(positional) == hash(value)
    assert repr(positional) == repr(value)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.__setattr__(dataclasses.fields(cls)[0].name, "x")
    first = dataclasses.fields(cls)[0].name
    changed = dataclasses.replace(value, **{first: kwargs[first]})
    assert changed == value and changed is not value
    assert pickle.loads(pickle.dumps(value)) == value
    with pytest.raises(TypeError):
        cls(**kwargs, not_a_field=1)
    if any(p.default is dataclasses.MISSING for p in dataclasses.fields(cls)):
        with pytest.raises(TypeError):
            cls()


def test_direct_init_refuses_what_it_cannot_copy() -> None:
    """Factories, keyword-only fields, __post_init__ and non-dataclasses are refused rather
    than given a constructor that would differ."""

    @dataclass(frozen=True)
    class Factory:
        items: list[int] = field(default_factory=list)

    @dataclass(frozen=True, kw_only=True)
    class KeywordOnly:
        a: int

    @dataclass(frozen=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    class Plain:
        pass

    for cls in (Factory, KeywordOnly, PostInit, Plain):
        with pytest.raises(TypeError):
            direct_init(cls)
