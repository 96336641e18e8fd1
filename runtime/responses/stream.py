"""ResponseStream: a Responses API stream as typed events plus append-only snapshots.

Snapshots are keyed by ``output_index``, the one address every item event carries. Text and
arguments grow by appending fragments (joined only when read), exactly as in
:class:`~runtime.stream.RunStream`; the snapshot classes extend that module's, so an
:class:`~runtime.handler.EventHandler` written for Assistants gets the same shapes.

Servers are not always consistent: the recorded reference stream changes item ids between
events, and its ``output_text.done`` text disagrees with the deltas and with the final
response. The stream never crashes on that. It logs each disagreement
(``responses.item_id_mismatch``, ``responses.text_mismatch``, ``responses.response_id_mismatch``,
``responses.arguments_mismatch``) and lets the later statement win, so the final response
event is what the snapshots finally report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from runtime.errors import (
    HandlerError,
    RuntimeAPIError,
    SSEDecodeError,
    StreamEventError,
    StreamInterrupted,
    TransportError,
)
from runtime.handler import EventHandler
from runtime.protocol.events import DoneEvent, ErrorEvent, MalformedEvent, StreamEvent
from runtime.protocol.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder
from runtime.responses.events import (
    TERMINAL_EVENTS,
    ContentPartEvent,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    OutputItemEvent,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    ResponseLifecycleEvent,
    parse_response_event,
)
from runtime.responses.models import (
    FunctionCallItem,
    OutputItem,
    OutputMessage,
    OutputText,
    Response,
)
from runtime.stream import MessageSnapshot, ToolCallSnapshot

log = structlog.get_logger("runtime.responses")

HandlerCallback = Callable[..., Awaitable[None]]


class OutputMessageSnapshot(MessageSnapshot):
    """A ``message`` output item as streamed so far.

    Attributes:
        output_index: its position in ``response.output``.
        item: the last full item the stream carried (added / done / final response).
    """

    __slots__ = ("item", "output_index")

    def __init__(self, item_id: str, output_index: int, response_id: str | None) -> None:
        super().__init__(item_id, response_id)
        self.output_index = output_index
        self.item: OutputMessage | None = None

    def part_text(self, index: int) -> str:
        """The text of content part ``index`` so far."""
        return "".join(self._parts.get(index, ()))

    def replace_part(self, index: int, text: str) -> None:
        """Replace one content part's text (when a later event states another final text)."""
        self._parts[index] = [text]
        self._joined = None


class FunctionCallSnapshot(ToolCallSnapshot):
    """A ``function_call`` output item as streamed so far.

    ``id`` is the ``call_id`` (what ``function_call_output`` answers), ``step_id`` the
    response id and ``index`` the output index, so Assistants-minded handlers keep working.

    Attributes:
        item_id: the output item's own id.
    """

    __slots__ = ("item_id",)

    def __init__(self, response_id: str, output_index: int, item_id: str) -> None:
        super().__init__(response_id, output_index)
        self.item_id = item_id

    def replace_arguments(self, arguments: str) -> None:
        """Replace the arguments (when the final statement disagrees with the fragments)."""
        self._args[:] = [arguments]


Snapshot = OutputMessageSnapshot | FunctionCallSnapshot


def _overridden(handler: EventHandler | None, name: str) -> HandlerCallback | None:
    """The handler's bound callback, or None when it is the base no-op (skip the await)."""
    if handler is None or getattr(type(handler), name) is getattr(EventHandler, name):
        return None
    callback: HandlerCallback = getattr(handler, name)
    return callback


class ResponseStream:
    """Async iterator over one Responses stream's events, with snapshots.

    Args:
        chunks: the response body as an async iterator of byte chunks.
        handler: optional callbacks (``on_run_status`` receives the ``Response``).
        max_event_bytes: the largest line/event accepted from the server.
        close: called once when the stream is closed (releases the connection).

    Iterating yields every typed event. When the bytes end before a terminal event
    (``response.completed / incomplete / failed``), iteration raises
    :class:`~runtime.errors.StreamInterrupted`; :attr:`response_id` tells whether the
    response can be retrieved to recover.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        handler: EventHandler | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._chunks = chunks
        self._decoder = SSEDecoder(max_event_bytes)
        self._close = close
        self._closed = False
        self._started = False
        self.response: Response | None = None
        self.response_id: str | None = None
        self.items: dict[int, Snapshot] = {}
        self.errors: list[StreamEventError] = []
        self.last_response_event: str | None = None
        self.inconsistencies = 0
        self._bind_handler(handler)

    def _bind_handler(self, handler: EventHandler | None) -> None:
        names = (
            "on_event",
            "on_run_status",
            "on_message_created",
            "on_text_delta",
            "on_message_done",
            "on_tool_call_created",
            "on_tool_call_delta",
            "on_tool_call_done",
            "on_error",
            "on_end",
        )
        self._callbacks = {n: cb for n in names if (cb := _overridden(handler, n)) is not None}

    # --- public views ---------------------------------------------------------------------

    @property
    def messages(self) -> list[OutputMessageSnapshot]:
        """The message items, in output order."""
        return [s for _, s in sorted(self.items.items()) if isinstance(s, OutputMessageSnapshot)]

    @property
    def function_calls(self) -> list[FunctionCallSnapshot]:
        """The function-call items, in output order."""
        return [s for _, s in sorted(self.items.items()) if isinstance(s, FunctionCallSnapshot)]

    @property
    def text(self) -> str:
        """The text of every message item of this stream, joined."""
        return "".join(m.text for m in self.messages)

    @property
    def stopped(self) -> bool:
        """True when the stream carried a terminal response event."""
        return self.last_response_event in TERMINAL_EVENTS

    @property
    def status(self) -> str | None:
        """The response status the stream last reported."""
        return self.response.status if self.response is not None else None

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> ResponseStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._close is not None:
            await self._close()

    async def until_done(self) -> ResponseStream:
        """Consume the whole stream (calling the handler) and return self."""
        async for _ in self:
            pass
        return self

    async def final_response(self) -> Response:
        """Consume the stream and return the terminal response."""
        await self.until_done()
        assert self.response is not None  # until_done raised otherwise
        return self.response

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._started:
            raise RuntimeError("a ResponseStream can be iterated only once")
        self._started = True
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamEvent]:
        try:
            async for event in self._events():
                await self._handle(event)
                yield event
                if isinstance(event, DoneEvent):
                    break
            if not self.stopped:
                raise StreamInterrupted(
                    "the stream ended before the response did",
                    run_id=self.response_id,
                    reason="eof",
                )
        finally:
            await self.aclose()
            await self._call("on_end")

    async def _events(self) -> AsyncIterator[StreamEvent]:
        decoder = self._decoder
        try:
            async for chunk in self._chunks:
                for record in decoder.feed(chunk):
                    yield parse_response_event(record)
            for record in decoder.flush():
                yield parse_response_event(record)
        except SSEDecodeError:
            raise
        except TransportError as exc:
            await self._report(exc)
            reason = "idle_timeout" if "timeout" in type(exc).__name__.lower() else "connection"
            raise StreamInterrupted(
                f"the stream broke: {exc.message}", run_id=self.response_id, reason=reason
            ) from exc

    # --- event handling -------------------------------------------------------------------

    async def _handle(self, event: StreamEvent) -> None:
        await self._call("on_event", event)
        if isinstance(event, OutputTextDeltaEvent):
            await self._text_delta(event)
        elif isinstance(event, FunctionCallArgumentsDeltaEvent):
            await self._arguments_delta(event)
        elif isinstance(event, ResponseLifecycleEvent):
            await self._lifecycle(event)
        elif isinstance(event, OutputItemEvent):
            await self._item_event(event)
        elif isinstance(event, ContentPartEvent | OutputTextDoneEvent):
            self._part_done(event)
        elif isinstance(event, FunctionCallArgumentsDoneEvent):
            self._arguments_done(event)
        elif isinstance(event, ErrorEvent):
            self.errors.append(event.error)
            log.warning(
                "responses.error_event",
                response_id=self.response_id,
                code=event.error.code,
                error=event.error.message,
            )
            await self._report(event.error)
        elif isinstance(event, MalformedEvent):
            log.warning(
                "responses.malformed_event",
                sse_event=event.event,
                reason=event.reason,
                response_id=self.response_id,
            )

    async def _lifecycle(self, event: ResponseLifecycleEvent) -> None:
        response = event.response
        if self.response_id is not None and response.id != self.response_id:
            self._inconsistent(
                "responses.response_id_mismatch",
                sse_event=event.event,
                expected=self.response_id,
                got=response.id,
            )
        self.response = response
        self.response_id = response.id
        self.last_response_event = event.event
        if event.is_terminal:
            await self._reconcile(response)
        await self._call("on_run_status", response)

    async def _item_event(self, event: OutputItemEvent) -> None:
        item = event.item
        snapshot = await self._snapshot(event.output_index, item, event.event)
        if isinstance(snapshot, OutputMessageSnapshot) and isinstance(item, OutputMessage):
            snapshot.item = item
            snapshot.status = item.status
            if event.event.endswith(".added"):
                await self._call("on_message_created", item)
            else:
                self._reconcile_message(snapshot, item, event.event)
                await self._call("on_message_done", item)
        elif (
            isinstance(snapshot, FunctionCallSnapshot)
            and isinstance(item, FunctionCallItem)
            and event.event.endswith(".done")
        ):
            self._reconcile_call(snapshot, item, event.event)
            await self._tool_call_done(snapshot)

    async def _snapshot(self, index: int, item: OutputItem, event: str) -> Snapshot | None:
        """The snapshot at ``index``, created on first sight (``None`` for unknown items)."""
        snapshot = self.items.get(index)
        item_id = item.id or ""
        if snapshot is not None:
            self._check_item_id(snapshot, item_id, index, event)
            return snapshot
        if isinstance(item, OutputMessage):
            self.items[index] = OutputMessageSnapshot(item_id, index, self.response_id)
            return self.items[index]
        if not isinstance(item, FunctionCallItem):
            return None
        call = FunctionCallSnapshot(self.response_id or "", index, item_id)
        call.id, call.name = item.call_id, item.name
        if item.arguments:
            call.append_arguments(item.arguments)
        self.items[index] = call
        await self._call("on_tool_call_created", call)
        return call

    def _check_item_id(self, snapshot: Snapshot, item_id: str, index: int, event: str) -> None:
        known = snapshot.item_id if isinstance(snapshot, FunctionCallSnapshot) else snapshot.id
        if not item_id or item_id == known:
            return
        if known:
            self._inconsistent(
                "responses.item_id_mismatch",
                sse_event=event,
                output_index=index,
                expected=known,
                got=item_id,
            )
        # The later statement wins: the final response's ids are what the server keeps.
        if isinstance(snapshot, FunctionCallSnapshot):
            snapshot.item_id = item_id
        else:
            snapshot.id = item_id

    async def _text_delta(self, event: OutputTextDeltaEvent) -> None:
        snapshot = self.items.get(event.output_index)
        if snapshot is None:
            # A delta for an item never announced: adopt it rather than lose the text.
            snapshot = OutputMessageSnapshot(event.item_id, event.output_index, self.response_id)
            self.items[event.output_index] = snapshot
        elif isinstance(snapshot, FunctionCallSnapshot):
            self._inconsistent(
                "responses.delta_for_other_item",
                sse_event=event.event,
                output_index=event.output_index,
                item_id=event.item_id,
            )
            return
        else:
            self._check_item_id(snapshot, event.item_id, event.output_index, event.event)
        delta = event.delta
        snapshot.append(event.content_index, delta)
        await self._call("on_text_delta", delta, snapshot)

    def _part_done(self, event: ContentPartEvent | OutputTextDoneEvent) -> None:
        snapshot = self.items.get(event.output_index)
        if not isinstance(snapshot, OutputMessageSnapshot):
            return
        self._check_item_id(snapshot, event.item_id, event.output_index, event.event)
        if isinstance(event, OutputTextDoneEvent):
            final: str | None = event.text
        elif event.event.endswith(".done") and isinstance(event.part, OutputText):
            final = event.part.text
        else:
            final = None
        if final is not None:
            self._settle_part(snapshot, event.content_index, final, event.event)

    def _settle_part(
        self, snapshot: OutputMessageSnapshot, index: int, final: str, event: str
    ) -> None:
        streamed = snapshot.part_text(index)
        if final != streamed:
            self._inconsistent(
                "responses.text_mismatch",
                sse_event=event,
                item_id=snapshot.id,
                content_index=index,
                streamed=streamed[:200],
                final=final[:200],
            )
            snapshot.replace_part(index, final)

    async def _arguments_delta(self, event: FunctionCallArgumentsDeltaEvent) -> None:
        snapshot = self.items.get(event.output_index)
        if not isinstance(snapshot, FunctionCallSnapshot):
            log.warning(
                "responses.orphan_arguments_delta",
                output_index=event.output_index,
                item_id=event.item_id,
            )
            return
        self._check_item_id(snapshot, event.item_id, event.output_index, event.event)
        snapshot.append_arguments(event.delta)
        await self._call("on_tool_call_delta", event.data, snapshot)

    def _arguments_done(self, event: FunctionCallArgumentsDoneEvent) -> None:
        snapshot = self.items.get(event.output_index)
        if isinstance(snapshot, FunctionCallSnapshot):
            self._settle_arguments(snapshot, event.arguments, event.event)

    def _settle_arguments(self, snapshot: FunctionCallSnapshot, final: str, event: str) -> None:
        if final != snapshot.arguments:
            self._inconsistent(
                "responses.arguments_mismatch",
                sse_event=event,
                call_id=snapshot.id,
                streamed_chars=len(snapshot.arguments),
                final_chars=len(final),
            )
            snapshot.replace_arguments(final)

    def _reconcile_message(
        self, snapshot: OutputMessageSnapshot, item: OutputMessage, event: str
    ) -> None:
        for index, part in enumerate(item.content):
            if isinstance(part, OutputText):
                self._settle_part(snapshot, index, part.text, event)

    def _reconcile_call(
        self, snapshot: FunctionCallSnapshot, item: FunctionCallItem, event: str
    ) -> None:
        if item.call_id:
            snapshot.id = item.call_id
        if item.name:
            snapshot.name = item.name
        self._settle_arguments(snapshot, item.arguments, event)

    async def _reconcile(self, response: Response) -> None:
        """Bring the snapshots in line with the terminal response (the final state)."""
        for index, item in enumerate(response.output):
            snapshot = await self._snapshot(index, item, "response.final")
            if isinstance(snapshot, OutputMessageSnapshot) and isinstance(item, OutputMessage):
                snapshot.item, snapshot.status = item, item.status
                self._reconcile_message(snapshot, item, "response.final")
            elif isinstance(snapshot, FunctionCallSnapshot) and isinstance(item, FunctionCallItem):
                self._reconcile_call(snapshot, item, "response.final")
                await self._tool_call_done(snapshot)

    async def _tool_call_done(self, snapshot: FunctionCallSnapshot) -> None:
        if snapshot.done:
            return
        snapshot.done = True
        await self._call("on_tool_call_done", snapshot)

    def _inconsistent(self, name: str, **fields: Any) -> None:
        self.inconsistencies += 1
        log.warning(name, response_id=self.response_id, **fields)

    async def _report(self, error: RuntimeAPIError) -> None:
        await self._call("on_error", error)

    async def _call(self, name: str, *args: Any) -> None:
        callback = self._callbacks.get(name)
        if callback is None:
            return
        try:
            await callback(*args)
        except Exception as exc:
            log.error(
                "responses.handler_failed",
                callback=name,
                error=repr(exc),
                response_id=self.response_id,
            )
            raise HandlerError(f"EventHandler.{name} raised {exc!r}", callback=name) from exc
