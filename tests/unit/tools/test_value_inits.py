"""The hand-written ``__init__`` of the hot frozen values takes what the dataclass's would."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import dataclass
from typing import Any

import pytest

from runtime.core.turn import Turn, TurnRef
from tools import ToolCall, ToolCallResult

DIRECT = [ToolCall, ToolCallResult, Turn]
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
}


def _reference(cls: type) -> type:
    """The same fields under the dataclass's own generated ``__init__``."""
    copy = type(cls.__name__, (), {"__annotations__": dict(cls.__annotations__)})
    for param in dataclasses.fields(cls):
        if param.default is not dataclasses.MISSING:
            setattr(copy, param.name, param.default)
    return dataclass(frozen=True)(copy)


@pytest.mark.parametrize("cls", DIRECT, ids=lambda cls: cls.__name__)
def test_own_init_takes_what_the_dataclass_init_takes(cls: type) -> None:
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
