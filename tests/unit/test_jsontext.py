"""runtime.jsontext: one C encoder made once writes what the encoder it was made from writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.jsontext import acyclic_encoder

VALUES: list[Any] = [
    {"b": 1, "a": [1.5, None, True, False, -0.0, 10**20]},
    {"nested": {"z": 1, "a": {"y": [], "x": {}}}},
    'Say "hi" \\ to Zoë\n\t\u2028 日本 </script>',
    3,
    2.5,
    None,
    [],
    {},
    float("nan"),
    float("inf"),
]
ENCODERS = {
    "defaults": json.JSONEncoder(),
    "compact": json.JSONEncoder(separators=(",", ":")),
    "canonical": json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False),
    "fallback": json.JSONEncoder(default=repr),
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_the_text_is_the_encoders_own(name: str) -> None:
    """Every value, strings alone included, encodes to the same text as encoder.encode."""
    encoder = ENCODERS[name]
    encode = acyclic_encoder(encoder)
    for value in VALUES:
        assert encode(value) == encoder.encode(value), value


def test_the_default_hook_still_answers_for_other_objects() -> None:
    """An object JSON cannot write goes through the encoder's ``default``, as with encode."""
    encode = acyclic_encoder(json.JSONEncoder(default=lambda o: f"<{type(o).__name__}>"))
    assert encode({"when": object()}) == '{"when": "<object>"}'


def test_an_indenting_encoder_is_used_as_it_is() -> None:
    """The C encoder does not indent: an indenting encoder's own encode is returned."""
    encoder = json.JSONEncoder(indent=2)
    assert (
        acyclic_encoder(encoder)({"a": [1]})
        == encoder.encode({"a": [1]})
        == '{\n  "a": [\n    1\n  ]\n}'
    )
