"""The front door: `runtime.__all__` is exactly the public API the contract names."""

from __future__ import annotations

import runtime
from runtime.emulator import Emulator

CONTRACT = {"AssistantsClient", "Orchestrator", "RunPolicy", "RunResult", "EventHandler"}


def test_all_is_sorted_and_resolves() -> None:
    """__all__ is sorted, has no duplicates, and every name exists."""
    assert list(runtime.__all__) == sorted(set(runtime.__all__))
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None


def test_contract_names_are_exported() -> None:
    """Every name DESIGN.md's contract imports from `runtime` is in __all__."""
    assert set(runtime.__all__) >= CONTRACT
    assert Emulator.__module__.startswith("runtime.emulator")


def test_only_classes_are_public() -> None:
    """The front door exports classes only (no stray modules or helpers)."""
    public = {n for n in dir(runtime) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(runtime, n)).__name__ == "module"}
    assert public - modules == set(runtime.__all__)
