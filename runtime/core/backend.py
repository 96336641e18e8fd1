"""The engine seam: what the one run loop needs from a protocol, and nothing more.

A protocol package (``runtime.assistants``, ``runtime.responses``) implements
:class:`Backend`; the loop in :mod:`runtime.core.runner` drives any of them and never asks
which. The values that cross the seam are frozen and protocol-neutral:

* :class:`StartRequest` — what to run (input, conversation, agent or model, tools, extras);
* :class:`TurnRef` — where a turn lives (a run on a thread, a response in a chain);
* :class:`Turn` — where a turn stands: ``requires_tools`` with its calls, still ``active``,
  or terminal, with the texts, usage and error it produced and the raw protocol object.

A turn is one server-side unit the loop waits on: an Assistants run between two tool
rounds (the same run id all along), or one Responses response (a new id per round).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

from runtime.core.turn import (
    TERMINAL,
    OutputSchema,
    StartRequest,
    TextPart,
    Turn,
    TurnError,
    TurnRef,
    TurnStatus,
    Usage,
)
from tools import ToolCallResult

if TYPE_CHECKING:
    from runtime.core.hooks import EventHandler
    from runtime.protocol.events import StreamEvent

__all__ = [
    "TERMINAL",
    "Backend",
    "OutputSchema",
    "StartRequest",
    "TextPart",
    "Turn",
    "TurnError",
    "TurnRef",
    "TurnStatus",
    "TurnStream",
    "Usage",
]

RawT = TypeVar("RawT")


class TurnStream(Protocol[RawT]):
    """One open event stream of a turn.

    Iterating yields every event (and calls the handler); :meth:`turn` says where the stream
    left the turn. A stream that ends before the turn stopped raises
    :class:`~runtime.errors.StreamInterrupted` (or another transport error) from iteration.
    """

    @property
    def ref(self) -> TurnRef | None:
        """The turn's ref, as soon as the stream named it."""
        ...

    @property
    def last_sequence(self) -> int | None:
        """The last sequence number seen (None when the protocol has none)."""
        ...

    def __aiter__(self) -> AsyncIterator[StreamEvent]: ...

    def turn(self) -> Turn[RawT] | None:
        """Where the stream left the turn: None when it never reached a stopping point."""
        ...

    def partial_texts(self) -> tuple[TextPart, ...]:
        """The text streamed so far, stopped or not."""
        ...

    async def aclose(self) -> None:
        """Release the connection (idempotent)."""
        ...


class Backend(Protocol[RawT]):
    """One protocol behind the seam. Every method is one server interaction (with retries).

    Attributes:
        name: ``"assistants"`` or ``"responses"``.
        new_turn_per_round: True when answering tools starts a new turn (a new response)
            rather than continuing the same one (a run): a failed round is then redone by
            sending the round again.
        can_find: True when :meth:`find` can see turns (runs carry the key in their metadata);
            when False, a turn lost before its id was seen is sent again.
    """

    name: ClassVar[str]
    new_turn_per_round: ClassVar[bool]
    can_find: ClassVar[bool]

    def server_now(self) -> float:
        """The server's clock (epoch seconds), for turn deadlines."""
        ...

    async def prepare(self, request: StartRequest) -> StartRequest:
        """Do what must happen once before the first start (a new thread holding the input
        on Assistants); the answer names the conversation, if the protocol has one."""
        ...

    async def start(
        self, request: StartRequest, *, key: str, handler: EventHandler | None
    ) -> TurnStream[RawT]:
        """Start a turn (idempotency ``key`` stored where :meth:`find` can see it)."""
        ...

    async def submit(
        self,
        request: StartRequest,
        turn: Turn[RawT],
        outputs: Sequence[ToolCallResult],
        *,
        handler: EventHandler | None,
    ) -> TurnStream[RawT]:
        """Send every output of a ``requires_tools`` turn in one request."""
        ...

    async def retrieve(self, ref: TurnRef) -> Turn[RawT]:
        """The turn as the server has it now."""
        ...

    async def resume(
        self, stream: TurnStream[RawT], *, handler: EventHandler | None
    ) -> TurnStream[RawT] | None:
        """Re-open a broken stream after its last sequence number; None when not possible."""
        ...

    async def cancel(self, ref: TurnRef) -> Turn[RawT] | None:
        """Ask the server to cancel; None when it refused (not cancellable, already over)."""
        ...

    async def find(self, request: StartRequest, key: str) -> TurnRef | None:
        """The turn started earlier under ``key`` (after an ambiguous failure), if any."""
        ...

    async def transcript(self, ref: TurnRef) -> tuple[TextPart, ...]:
        """The assistant texts the server holds for the turn (authoritative)."""
        ...
