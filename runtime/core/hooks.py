"""EventHandler: async callbacks for everything that happens during a run, on either protocol.

Subclass it and override what you need; every default does nothing. One handler sees all the
turns of a run (the first stream, then each stream after tool outputs) as one conversation.
The hooks here are protocol-neutral; ``runtime.assistants.AssistantsEventHandler`` and
``runtime.responses.ResponsesEventHandler`` add typed hooks for each protocol's own objects.

An exception raised by a callback is not swallowed: it surfaces as
:class:`~runtime.errors.HandlerError` (cause chained) and cancels the run on the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.core.turn import TurnRef
    from runtime.errors import RuntimeAPIError
    from runtime.protocol.events import StreamEvent
    from runtime.protocol.snapshots import TextSnapshot, ToolCallSnapshot
    from tools import ToolCall, ToolCallResult


@dataclass(frozen=True)
class StatusUpdate:
    """A turn changed status.

    Attributes:
        id: the run or response id.
        status: the protocol's own status word (``queued``, ``requires_action``, ...).
        event: the stream event that said so.
    """

    id: str
    status: str
    event: str


class EventHandler:
    """Base class of run callbacks (all async, all optional)."""

    async def on_event(self, event: StreamEvent) -> None:
        """Every stream event, known or not, before the specific callback."""

    async def on_conversation(self, conversation_id: str) -> None:
        """The run's conversation (thread) exists: called before the run is started in it."""

    async def on_turn(self, ref: TurnRef) -> None:
        """The run learned the turn it drives: started, adopted after an ambiguous failure,
        or moved on to the next response. Called once per turn id."""

    async def on_status(self, update: StatusUpdate) -> None:
        """The turn changed status (created, queued, in progress, requires tools, ...)."""

    async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
        """A piece of text was appended to ``snapshot`` (``snapshot.text`` is the whole)."""

    async def on_message_done(self, snapshot: TextSnapshot) -> None:
        """An assistant message completed (or ended incomplete)."""

    async def on_tool_call_created(self, snapshot: ToolCallSnapshot) -> None:
        """The model started a tool call (id and name are known)."""

    async def on_tool_call_delta(self, delta: str, snapshot: ToolCallSnapshot) -> None:
        """A fragment of a tool call's arguments arrived."""

    async def on_tool_call_done(self, snapshot: ToolCallSnapshot) -> None:
        """The model finished writing a tool call (its arguments are complete)."""

    async def on_tool_call_started(self, call: ToolCall) -> None:
        """The runtime started executing a tool call locally."""

    async def on_tool_call_finished(self, result: ToolCallResult) -> None:
        """A local tool call finished (see ``result.is_error``)."""

    async def on_error(self, error: RuntimeAPIError) -> None:
        """An error event arrived, or the stream broke (the run may still recover)."""

    async def on_end(self) -> None:
        """One stream ended."""
