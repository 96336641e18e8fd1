"""The in-memory write ledger and canonical arguments."""

from __future__ import annotations

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
