"""The curated front door of runtime.responses."""

from __future__ import annotations

import runtime.responses


def test_all_is_exactly_the_public_api() -> None:
    """__all__ is sorted and lists exactly the public names of the package."""
    exported = runtime.responses.__all__
    assert exported == sorted(exported)
    assert set(exported) == {
        "FunctionCallItem",
        "OutputMessage",
        "Response",
        "ResponseStream",
        "ResponseUsage",
        "ResponsesBackend",
        "ResponsesClient",
        "ResponsesEventHandler",
        "ResponsesOrchestrator",
    }
    for name in exported:
        assert getattr(runtime.responses, name) is not None
