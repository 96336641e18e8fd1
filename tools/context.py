"""ToolContext: what a running tool may know about its call."""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog


class ToolContext:
    """Injected into a tool parameter annotated ``ToolContext``; never part of the schema.

    Attributes:
        run_id: id of the run that requested the call, if known.
        thread_id: id of the thread of that run, if known.
        tool_call_id: id of the call (``call_...``).
        tool_name: registered name of the tool.
        log: structlog logger bound with run_id, thread_id, tool_call_id and tool.
        deadline: absolute ``time.monotonic()`` value by which the call must finish, or None.
        cancelled: flag set when the call timed out or the batch was cancelled; sync tools
            (which cannot be interrupted) should poll it and return early.
    """

    __slots__ = (
        "_log",
        "_log_base",
        "cancelled",
        "deadline",
        "run_id",
        "thread_id",
        "tool_call_id",
        "tool_name",
    )

    def __init__(
        self,
        *,
        tool_call_id: str,
        tool_name: str,
        run_id: str | None = None,
        thread_id: str | None = None,
        deadline: float | None = None,
        log: Any = None,
    ) -> None:
        self.run_id = run_id
        self.thread_id = thread_id
        self.tool_call_id = tool_call_id
        self.tool_name = tool_name
        self.deadline = deadline
        self.cancelled = threading.Event()
        self._log_base = log
        self._log: Any = None

    @property
    def log(self) -> Any:
        """structlog logger bound with run_id, thread_id, tool_call_id and tool.

        Bound on first use: most tools never log, and binding copies a dict.
        """
        if self._log is None:
            base = self._log_base if self._log_base is not None else structlog.get_logger("tools")
            self._log = base.bind(
                run_id=self.run_id,
                thread_id=self.thread_id,
                tool_call_id=self.tool_call_id,
                tool=self.tool_name,
            )
        return self._log

    @property
    def is_cancelled(self) -> bool:
        """True once the call timed out or was cancelled."""
        return self.cancelled.is_set()

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def __repr__(self) -> str:
        return (
            f"ToolContext(tool_name={self.tool_name!r}, tool_call_id={self.tool_call_id!r}, "
            f"run_id={self.run_id!r}, thread_id={self.thread_id!r}, "
            f"cancelled={self.is_cancelled})"
        )
