"""RunResult: what one run produced, whatever its terminal status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.errors import RunFailedError
from tools import ToolCallResult


@dataclass(frozen=True)
class RunResult:
    """The outcome of a run.

    ``failed``, ``expired``, ``incomplete`` and ``cancelled`` are results, not exceptions; call
    :meth:`raise_for_status` to turn them into :class:`~runtime.errors.RunFailedError`.

    Attributes:
        status: the terminal status.
        run: the final run object (a ``Run`` for Assistants, a ``Response`` for Responses).
        text: all assistant text the run produced.
        messages: the assistant messages the run produced.
        tool_calls: every tool call executed locally, in order.
        usage: token usage, when the server reported it.
        rounds: how many tool rounds the run took.
        reason: why the runtime ended the run, when it did (bounds, cancellation).
        thread_id: the thread (Assistants) or None.
        run_id: the run's (or final response's) id.
        recoveries: stream losses recovered by polling.
    """

    status: str
    run: Any
    text: str = ""
    messages: list[Any] = field(default_factory=list)
    tool_calls: list[ToolCallResult] = field(default_factory=list)
    usage: Any = None
    rounds: int = 0
    reason: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    recoveries: int = 0

    @property
    def ok(self) -> bool:
        """True when the run completed."""
        return self.status == "completed"

    @property
    def last_error(self) -> Any:
        """The server's ``last_error`` (Assistants) or ``error`` (Responses), if any."""
        return getattr(self.run, "last_error", None) or getattr(self.run, "error", None)

    @property
    def incomplete_reason(self) -> str | None:
        """``incomplete_details.reason`` when the run ended incomplete."""
        details = getattr(self.run, "incomplete_details", None)
        return getattr(details, "reason", None)

    def raise_for_status(self) -> RunResult:
        """Return self when completed, else raise RunFailedError."""
        if self.ok:
            return self
        detail = self.reason or self.incomplete_reason or getattr(self.last_error, "message", "")
        raise RunFailedError(
            f"run {self.run_id} ended {self.status}" + (f": {detail}" if detail else ""),
            status=self.status,
            run_id=self.run_id,
            result=self,
        )
