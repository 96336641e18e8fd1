"""Per-call logs below the configured level are skipped before any event is built, and
warnings still come through."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tools import ToolCall, ToolDispatcher, ToolRegistry

registry = ToolRegistry()


@registry.tool
async def ok() -> str:
    """Succeed."""
    return "ok"


@registry.tool
async def broken() -> str:
    """Fail with an exception (logged as a warning)."""
    raise ValueError("broken")


@pytest.fixture
def seen() -> Iterator[list[dict[str, Any]]]:
    """structlog through the stdlib at WARNING; records every event the chain builds."""
    events: list[dict[str, Any]] = []

    def record(logger: Any, method: str, event: Any) -> Any:
        events.append(dict(event))
        return event

    logging.getLogger("tools").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            record,
            structlog.stdlib.filter_by_level,
            structlog.processors.KeyValueRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    try:
        yield events
    finally:
        structlog.reset_defaults()
        logging.getLogger("tools").setLevel(logging.NOTSET)


async def test_filtered_tool_events_build_nothing(seen: list[dict[str, Any]]) -> None:
    """With the tools logger at WARNING, tool.started / tool.finished of a successful call
    never reach the processor chain; a failing call's warning does."""
    results = await ToolDispatcher(registry).run_batch(
        [ToolCall("c1", "ok", "{}"), ToolCall("c2", "broken", "{}")]
    )
    assert [r.error_type for r in results] == [None, "tool_exception"]
    assert [(e["event"], e.get("tool")) for e in seen] == [("tool.finished", "broken")]
