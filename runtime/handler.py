"""EventHandler: async callbacks for everything that happens during a run.

Subclass it and override what you need; every default does nothing. One handler sees a run's
rounds (the first stream, then each stream after submitting tool outputs) as one continuous
conversation. An exception raised by a callback is not swallowed: it surfaces as
:class:`~runtime.errors.HandlerError` (cause chained) and, inside the orchestrator, cancels the
run on the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.errors import RuntimeAPIError
    from runtime.protocol.events import StreamEvent
    from runtime.protocol.models import Message, Run, RunStep
    from runtime.stream import MessageSnapshot, ToolCallSnapshot
    from tools import ToolCall, ToolCallResult


class EventHandler:
    """Base class for run callbacks (all async, all optional)."""

    async def on_event(self, event: StreamEvent) -> None:
        """Every stream event, known or not, before the specific callback."""

    async def on_run_status(self, run: Run) -> None:
        """The run changed status (created, queued, in_progress, requires_action, ...)."""

    async def on_message_created(self, message: Message) -> None:
        """The assistant started a message."""

    async def on_text_delta(self, delta: str, snapshot: MessageSnapshot) -> None:
        """A piece of text was appended to ``snapshot`` (read ``snapshot.text`` for the whole)."""

    async def on_message_done(self, message: Message) -> None:
        """A message completed (or ended incomplete)."""

    async def on_tool_call_created(self, snapshot: ToolCallSnapshot) -> None:
        """The model started a tool call (id, type and name are known)."""

    async def on_tool_call_delta(self, delta: dict[str, Any], snapshot: ToolCallSnapshot) -> None:
        """A fragment of a tool call's arguments arrived."""

    async def on_tool_call_done(self, snapshot: ToolCallSnapshot) -> None:
        """The model finished writing a tool call (its arguments are complete)."""

    async def on_run_step_done(self, step: RunStep) -> None:
        """A run step completed, failed, was cancelled or expired."""

    async def on_tool_call_started(self, call: ToolCall) -> None:
        """The runtime started executing a tool call locally."""

    async def on_tool_call_finished(self, result: ToolCallResult) -> None:
        """A local tool call finished (see ``result.is_error``)."""

    async def on_error(self, error: RuntimeAPIError) -> None:
        """An error event arrived, or the stream broke (the run may still recover)."""

    async def on_end(self) -> None:
        """One stream ended."""
