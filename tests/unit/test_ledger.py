"""The in-memory write ledger and canonical arguments."""

from __future__ import annotations

import json

import pytest

from runtime.core.ledger import MemoryLedger, WriteKey, canonical_arguments


async def test_the_memory_ledger_keeps_at_most_its_cap() -> None:
    """Past max_records the oldest write record is forgotten, the newest kept."""
    ledger = MemoryLedger(max_records=2)
    keys = [WriteKey("s", "t", str(i)) for i in range(3)]
    for i, key in enumerate(keys):
        assert await ledger.record_start(key, f"call_{i}") is None
    assert await ledger.lookup(keys[0]) is None
    assert (await ledger.lookup(keys[2])) is not None


def test_canonical_arguments_ignore_key_order_and_spacing() -> None:
    """The same arguments in another order or spacing are one key; text that is not JSON is
    kept as it is."""
    assert canonical_arguments('{"b": 1, "a": [1, 2]}') == canonical_arguments(
        {"a": [1, 2], "b": 1}
    )
    assert canonical_arguments("{not json") == "{not json"


def _dumps_canonical(arguments: object) -> str:
    """The definition canonical_arguments keeps: json.loads, then sorted compact json.dumps."""
    value = arguments
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments or "{}")
        except ValueError:
            return arguments
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    "arguments",
    [
        '{"n": 5}',
        "",
        '  {"a": 1}\n',
        '{"b": [1, 2.5, {"z": null, "a": true}], "a": "\\u00e9\\u2028\\n\\"q\\""}',
        '{"a": 1} trailing',
        "{not json",
        '"a string"',
        "5",
        "NaN",
        "[1e400, -0.0, 12345678901234567890, 1.0000000000000002]",
        "\ufeff{}",
        '{"lone": "\\ud800"}',
        '{"k\\"ey": {"y": [], "x": {}}}',
        {"b": 1, "a": [1, "x", None]},
    ],
)
def test_canonical_arguments_match_sorted_compact_dumps(arguments: object) -> None:
    """The cached-encoder path gives byte for byte what json.loads + json.dumps(sort_keys,
    compact, ensure_ascii=False) gives, for text, odd JSON and non-JSON alike."""
    assert canonical_arguments(arguments) == _dumps_canonical(arguments)  # type: ignore[arg-type]


def test_canonical_arguments_of_a_mapping_still_refuse_cycles() -> None:
    """A mapping from application code may hold a cycle: it fails with ValueError, as
    json.dumps does, instead of recursing."""
    looped: dict[str, object] = {}
    looped["self"] = looped
    with pytest.raises(ValueError):
        canonical_arguments(looped)
