"""One stream base for both protocols: bytes -> events -> a pure accumulator -> callbacks.

:class:`EventStream` owns the I/O and the lifecycle (one iteration, ``aclose``, ``on_end``,
the gap allowed between events, typed interruptions); an :class:`Accumulator` owns the
protocol: it is synchronous code without I/O that folds each event into snapshots and notes
which callbacks are due. The stream then awaits those callbacks, so a handler's failure
surfaces as :class:`~runtime.errors.HandlerError` at the event that caused it.

Tolerance, on purpose: the SSE decoder accepts LF/CRLF/CR, split chunks and split UTF-8, a
leading BOM, comments, ``id:``/``retry:`` and multi-line ``data:``; comment and keep-alive
bytes do not reset the idle timer, so ``stream_idle_timeout_s`` cannot be defeated by them.
Unknown event names are delivered raw, an event whose data is not the expected JSON becomes a
``MalformedEvent`` (a status event's name still counts), and a line or event over
``max_event_bytes`` (default 8 MiB) raises ``SSEDecodeError``. A stream whose bytes end
before the turn stopped raises ``StreamInterrupted`` (``reason`` = ``eof``, ``connection`` or
``idle_timeout``) so the loop can resume or poll.
"""

from __future__ import annotations

import time
import types
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, Self, TypedDict, TypeVar

from runtime import fairness
from runtime.errors import (
    HandlerError,
    RequestTimeout,
    RuntimeAPIError,
    StreamInterrupted,
    TransportError,
)
from runtime.logging import ModuleLogger
from runtime.protocol.events import DoneEvent, StreamEvent
from runtime.protocol.snapshots import ToolCallSnapshot
from runtime.protocol.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSERecord

if TYPE_CHECKING:
    from runtime.core.backend import TextPart, Turn, TurnRef
    from runtime.core.hooks import EventHandler

log = ModuleLogger("runtime.stream")

RawT = TypeVar("RawT")
HandlerCallback = Callable[..., Awaitable[None]]
Note = tuple[str, tuple[object, ...]]

# Every callback a stream may note; the handler's overrides among them are looked up once.
STREAM_CALLBACKS = (
    "on_status",
    "on_text_delta",
    "on_message_done",
    "on_tool_call_created",
    "on_tool_call_delta",
    "on_tool_call_done",
    "on_error",
)


# Big reads are decoded in slices, one at a time: the records of a whole 256 KiB read, all
# alive at once, would set the cyclic GC off dozens of times per stream (about 10% of a delta
# stream's CPU).
SLICE_BYTES = 16 * 1024


class Accumulator(Protocol[RawT]):
    """The pure half of a stream: folds events into snapshots, notes due callbacks."""

    notes: list[Note]
    wants: frozenset[str]

    def feed(self, event: StreamEvent) -> None:
        """Fold one event in (no I/O); append ``(callback, args)`` to ``notes`` as due."""
        ...

    @property
    def stopped(self) -> bool:
        """True once the stream carried a stopping event (tools required, or terminal)."""
        ...

    @property
    def ref(self) -> TurnRef | None:
        """The turn's ref, once known."""
        ...

    @property
    def last_sequence(self) -> int | None:
        """The last sequence number seen."""
        ...

    def turn(self) -> Turn[RawT] | None:
        """Where the stream left the turn; None when it did not reach a stopping point."""
        ...

    def partial_texts(self) -> tuple[TextPart, ...]:
        """The texts streamed so far."""
        ...


class Notes:
    """What both protocols' accumulators share: the callbacks due, and calls settled once."""

    def __init__(self) -> None:
        self.notes: list[Note] = []
        self.wants: frozenset[str] = frozenset()

    def _note(self, name: str, *args: object) -> None:
        if name in self.wants:
            self.notes.append((name, args))

    def _note_status(
        self, turn_id: str, status: str | None, event: str, own: str, obj: object
    ) -> None:
        """``on_status`` and the protocol's own status callback ``own``: the neutral update is
        built only for a handler that reads it (a status event is dozens a run)."""
        if "on_status" in self.wants:
            from runtime.core.hooks import StatusUpdate  # runtime.core imports this module

            self.notes.append(("on_status", (StatusUpdate(turn_id, status or "", event),)))
        self._note(own, obj)

    def _tool_call_done(self, snapshot: ToolCallSnapshot) -> None:
        if snapshot.done:
            return
        snapshot.done = True
        self._note("on_tool_call_done", snapshot)


def overridden_callbacks(
    handler: EventHandler | None, names: Iterable[str]
) -> dict[str, HandlerCallback]:
    """The handler's callbacks among ``names`` that do something (base no-ops are skipped).

    A name the handler's class defines is used even when the base class lacks it, so a
    handler can answer a protocol's typed hooks without subclassing that protocol's handler.
    """
    if handler is None:
        return {}
    from runtime.core.hooks import EventHandler

    found: dict[str, HandlerCallback] = {}
    for name in names:
        own = getattr(type(handler), name, None)
        if own is None or own is getattr(EventHandler, name, None):
            continue
        found[name] = getattr(handler, name)
    return found


class StreamOptions(TypedDict, total=False):
    """How a stream is read, the same for both protocols (see :class:`EventStream`)."""

    handler: EventHandler | None
    close: Callable[[], Awaitable[None]] | None
    max_event_bytes: int
    idle_timeout_s: float | None


class EventStream(Generic[RawT]):
    """Async iterator over one turn's events, with the accumulator's snapshots.

    A protocol's stream names its event parser (:attr:`parse`) and its own hooks
    (:attr:`typed_callbacks`) and hands its accumulator in.

    Args:
        chunks: the response body as byte chunks.
        accumulator: the protocol's pure accumulator.
        handler: optional callbacks.
        close: called once when the stream is closed (releases the connection).
        max_event_bytes: the largest line/event accepted.
        idle_timeout_s: the longest gap allowed between two events; comment and keep-alive
            bytes do not count as events (None: no limit beyond the transport's).

    Iterating yields every typed event up to ``done``. When the bytes end before the turn
    stopped, iteration raises :class:`~runtime.errors.StreamInterrupted`.
    """

    typed_callbacks: ClassVar[tuple[str, ...]] = ()  # hooks beyond the neutral ones

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        accumulator: Accumulator[RawT],
        *,
        handler: EventHandler | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        idle_timeout_s: float | None = None,
    ) -> None:
        self._chunks = chunks
        self._decoder = SSEDecoder(max_event_bytes)
        self._close = close
        self._idle_timeout_s = idle_timeout_s
        self._closed = False
        self._started = False
        self._gen: AsyncGenerator[StreamEvent, None] | None = None
        self.accumulator = accumulator
        self._callbacks = overridden_callbacks(
            handler, (*STREAM_CALLBACKS, "on_event", "on_end", *self.typed_callbacks)
        )
        accumulator.wants = frozenset(self._callbacks)

    @staticmethod
    def parse(record: SSERecord) -> StreamEvent:
        """The protocol's SSE record -> typed event (never raises)."""
        raise NotImplementedError

    # --- views ----------------------------------------------------------------------------

    @property
    def ref(self) -> TurnRef | None:
        """The turn's ref, once the stream named it."""
        return self.accumulator.ref

    @property
    def last_sequence(self) -> int | None:
        """The last sequence number seen."""
        return self.accumulator.last_sequence

    @property
    def stopped(self) -> bool:
        """True when the turn reached a stopping point in this stream."""
        return self.accumulator.stopped

    def turn(self) -> Turn[RawT] | None:
        """Where the stream left the turn (None: it never reached a stopping point)."""
        return self.accumulator.turn()

    def partial_texts(self) -> tuple[TextPart, ...]:
        """The text streamed so far."""
        return self.accumulator.partial_texts()

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection and finish an abandoned iteration (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._close is not None:
                await self._close()
        finally:
            gen = self._gen
            if isinstance(gen, types.AsyncGeneratorType) and not gen.ag_running:
                # The consumer broke out of ``async for``: run the generator's clean-up
                # (on_end) now rather than whenever the loop's asyncgen hook gets to it.
                await gen.aclose()
            chunks = self._chunks
            if isinstance(chunks, types.AsyncGeneratorType) and not chunks.ag_running:
                # Reading stops at ``done`` with the body's reader suspended: finish it here,
                # not at garbage collection (the loop's hook: a task and a wake-up a stream).
                await chunks.aclose()

    async def until_done(self) -> Self:
        """Consume the whole stream (calling the handler) and return self."""
        # Nobody looks between two events here, so the generator yields none of them: the
        # whole stream is read within one step of it.
        async for _ in self._begin(each=False):
            pass
        return self

    async def follow(self, named: Callable[[TurnRef], Awaitable[None]]) -> Self:
        """Consume the whole stream like :meth:`until_done`; ``named`` is awaited with the
        turn's ref as soon as an event names it, before the next event is read."""
        async for _ in self._begin(each=False, named=named):
            pass
        return self

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._begin(each=True)

    def _begin(
        self, *, each: bool, named: Callable[[TurnRef], Awaitable[None]] | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        if self._started:
            raise RuntimeError("a stream can be iterated only once")
        self._started = True
        self._gen = self._iterate(each, named)
        return self._gen

    async def _iterate(
        self, each: bool, named: Callable[[TurnRef], Awaitable[None]] | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        batches = self._record_batches()
        try:
            try:
                # The event handling is inlined: a generator hop or a coroutine call per event
                # is significant with tens of thousands of deltas.
                parse, accumulator = type(self).parse, self.accumulator
                callbacks = self._callbacks
                on_event = callbacks.get("on_event")
                async for records in batches:
                    for record in records:
                        event = parse(record)
                        if on_event is not None:
                            await self._call("on_event", on_event, (event,))
                        accumulator.feed(event)
                        if named is not None and (ref := accumulator.ref) is not None:
                            await named(ref)
                            named = None
                        notes = accumulator.notes
                        if notes:
                            accumulator.notes = []
                            for name, args in notes:
                                try:
                                    await callbacks[name](*args)
                                except Exception as exc:
                                    raise self._handler_failed(name, exc) from exc
                        if each:
                            yield event
                        if type(event) is DoneEvent:
                            break  # stop reading even if the server keeps the body open
                    else:
                        records.clear()  # not kept alive while the next batch is awaited
                        continue
                    break
            except TransportError as exc:
                await self._report(exc)
                reason = "idle_timeout" if isinstance(exc, RequestTimeout) else "connection"
                raise StreamInterrupted(
                    f"the stream broke: {exc.message}", run_id=self._ref_id(), reason=reason
                ) from exc
            if not self.accumulator.stopped:
                # Also after ``done``: a stream that says it is over without a stopping
                # status (e.g. after an ``error`` event) leaves the turn's state unknown.
                raise StreamInterrupted(
                    "the stream ended before the turn stopped", run_id=self._ref_id(), reason="eof"
                )
        finally:
            await batches.aclose()
            await self.aclose()
            callback = self._callbacks.get("on_end")
            if callback is not None:
                await self._call("on_end", callback, ())

    async def _record_batches(self) -> AsyncGenerator[list[SSERecord], None]:
        """The records each read completes (in slices of a big read), then the flushed rest.
        Each slice waits for the stream's turn on the loop (:mod:`runtime.fairness`): a
        thousand streams whose bytes arrive together take turns instead of holding the loop,
        in one pass, for the sum of their parsing, with every timer waiting behind them."""
        decoder, idle = self._decoder, self._idle_timeout_s
        last_event = time.monotonic()
        line = fairness.share()
        async for chunk in self._chunks:
            size = len(chunk)
            for start in range(0, size, SLICE_BYTES):
                if (waiter := line.turn()) is not None:
                    waited = time.monotonic()
                    await waiter  # holding the read, not a copy of a slice of it
                    last_event += time.monotonic() - waited  # our wait, not the server's
                records = decoder.feed(
                    chunk if size <= SLICE_BYTES else chunk[start : start + SLICE_BYTES]
                )
                if records:
                    yield records
                    # Counted from when they were handled: the consumer's own time (its
                    # handlers, its turns) is not the server's silence.
                    last_event = time.monotonic()
                elif idle is not None and time.monotonic() - last_event > idle:
                    raise RequestTimeout(f"no event for {idle:g} s (only keep-alive bytes)")
        yield decoder.flush()

    # --- callbacks ------------------------------------------------------------------------

    async def _report(self, error: RuntimeAPIError) -> None:
        callback = self._callbacks.get("on_error")
        if callback is not None:
            await self._call("on_error", callback, (error,))

    async def _call(self, name: str, callback: HandlerCallback, args: tuple[object, ...]) -> None:
        try:
            await callback(*args)
        except Exception as exc:
            raise self._handler_failed(name, exc) from exc

    def _handler_failed(self, name: str, exc: Exception) -> HandlerError:
        log.error("stream.handler_failed", callback=name, error=repr(exc), id=self._ref_id())
        return HandlerError(f"EventHandler.{name} raised {exc!r}", callback=name)

    def _ref_id(self) -> str | None:
        ref = self.accumulator.ref
        return ref.id if ref is not None else None
