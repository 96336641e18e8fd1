"""RunStream: an async iterator of typed events plus append-only snapshots.

The stream decodes SSE bytes into typed events, keeps snapshots of the current run, each
message's text and each tool call's arguments, and calls an :class:`EventHandler`. Snapshots
grow by appending fragments to lists and join them only when read, so a message of N deltas
costs O(N), not the O(N^2) of rebuilding the whole text per delta.
"""

from __future__ import annotations

import types
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from runtime.errors import (
    HandlerError,
    RequestTimeout,
    RuntimeAPIError,
    StreamEventError,
    StreamInterrupted,
    TransportError,
)
from runtime.handler import EventHandler
from runtime.protocol.events import (
    DoneEvent,
    ErrorEvent,
    MalformedEvent,
    MessageDeltaEvent,
    MessageEvent,
    RunEvent,
    RunStepDeltaEvent,
    RunStepEvent,
    StreamEvent,
    ThreadCreatedEvent,
    parse_event,
)
from runtime.protocol.models import Message, Run, RunStep, Thread, ToolCallsStepDetails
from runtime.protocol.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder

log = structlog.get_logger("runtime.stream")

STOPPING_EVENTS = frozenset(
    {
        "thread.run.requires_action",
        "thread.run.completed",
        "thread.run.incomplete",
        "thread.run.failed",
        "thread.run.cancelled",
        "thread.run.expired",
    }
)


class MessageSnapshot:
    """A message as streamed so far: text fragments per content part, appended in place.

    Attributes:
        id: the message id.
        run_id: the run that writes it.
        status: last known status.
        message: the last full Message object the stream carried (created / completed).
    """

    __slots__ = ("_joined", "_parts", "id", "message", "run_id", "status")

    def __init__(self, message_id: str, run_id: str | None = None) -> None:
        self.id = message_id
        self.run_id = run_id
        self.status: str | None = None
        self.message: Message | None = None
        self._parts: dict[int, list[str]] = {}
        self._joined: str | None = None

    def append(self, index: int, value: str) -> None:
        """Append a text fragment to content part ``index``."""
        parts = self._parts.get(index)
        if parts is None:
            parts = self._parts[index] = []
        parts.append(value)
        self._joined = None

    def replace_text(self, text: str) -> None:
        """Replace the accumulated text (when the final object disagrees with the deltas)."""
        self._parts = {0: [text]}
        self._joined = text

    @property
    def text(self) -> str:
        """All text of the message so far (joined once per change, then cached)."""
        if self._joined is None:
            for parts in self._parts.values():
                if len(parts) > 1:
                    # Collapse, so reading after every delta does not re-join all fragments.
                    parts[:] = ["".join(parts)]
            self._joined = "".join(self._parts[i][0] for i in sorted(self._parts))
        return self._joined

    def __repr__(self) -> str:
        return f"MessageSnapshot(id={self.id!r}, status={self.status!r}, chars={len(self.text)})"


class ToolCallSnapshot:
    """A tool call as streamed so far: arguments assembled from fragments.

    Attributes:
        step_id: the run step the call belongs to.
        index: its index in the step.
        id: the tool_call_id.
        type: "function", "code_interpreter" or "file_search".
        name: the function name (function calls).
        done: the model finished writing it.
    """

    __slots__ = ("_args", "done", "id", "index", "name", "step_id", "type")

    def __init__(self, step_id: str, index: int) -> None:
        self.step_id = step_id
        self.index = index
        self.id = ""
        self.type = "function"
        self.name = ""
        self.done = False
        self._args: list[str] = []

    def append_arguments(self, fragment: str) -> None:
        """Append a fragment of the JSON arguments."""
        self._args.append(fragment)

    def replace_arguments(self, arguments: str) -> None:
        """Replace the assembled arguments (when the run's required_action disagrees)."""
        self._args[:] = [arguments]

    @property
    def arguments(self) -> str:
        """The arguments text so far."""
        if len(self._args) > 1:
            self._args[:] = ["".join(self._args)]
        return self._args[0] if self._args else ""

    def __repr__(self) -> str:
        return f"ToolCallSnapshot(id={self.id!r}, name={self.name!r}, done={self.done})"


HandlerCallback = Callable[..., Awaitable[None]]


def _overridden(handler: EventHandler | None, name: str) -> HandlerCallback | None:
    """The handler's bound callback, or None when it is the base no-op (skip the await)."""
    if handler is None:
        return None
    if getattr(type(handler), name) is getattr(EventHandler, name):
        return None
    callback: HandlerCallback = getattr(handler, name)
    return callback


class RunStream:
    """Async iterator over one run stream's events, with snapshots.

    Args:
        chunks: the response body as an async iterator of byte chunks.
        handler: optional callbacks.
        max_event_bytes: the largest line/event accepted from the server.
        close: called once when the stream is closed (releases the connection).
        run_id: the run being streamed, when known in advance (submit_tool_outputs).

    Iterating yields every typed event up to ``done``. When the bytes end before the run
    reached ``requires_action`` or a terminal status, iteration raises
    :class:`StreamInterrupted` (the orchestrator then recovers by polling).
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        handler: EventHandler | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        close: Callable[[], Awaitable[None]] | None = None,
        run_id: str | None = None,
    ) -> None:
        self._chunks = chunks
        self._decoder = SSEDecoder(max_event_bytes)
        self._close = close
        self._closed = False
        self._started = False
        self._gen: AsyncGenerator[StreamEvent, None] | None = None
        self.run: Run | None = None
        self.run_id = run_id
        self.thread: Thread | None = None
        self.messages: dict[str, MessageSnapshot] = {}
        self.tool_calls: dict[tuple[str, int], ToolCallSnapshot] = {}
        self.steps: dict[str, RunStep] = {}
        self.errors: list[StreamEventError] = []
        self.last_run_event: str | None = None
        self.saw_done = False
        self._bind_handler(handler)

    def _bind_handler(self, handler: EventHandler | None) -> None:
        self._on_event = _overridden(handler, "on_event")
        self._on_run_status = _overridden(handler, "on_run_status")
        self._on_message_created = _overridden(handler, "on_message_created")
        self._on_text_delta = _overridden(handler, "on_text_delta")
        self._on_message_done = _overridden(handler, "on_message_done")
        self._on_tool_call_created = _overridden(handler, "on_tool_call_created")
        self._on_tool_call_delta = _overridden(handler, "on_tool_call_delta")
        self._on_tool_call_done = _overridden(handler, "on_tool_call_done")
        self._on_run_step_done = _overridden(handler, "on_run_step_done")
        self._on_error = _overridden(handler, "on_error")
        self._on_end = _overridden(handler, "on_end")

    # --- public views ---------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The text of every assistant message of this stream, joined by blank lines."""
        return "\n\n".join(m.text for m in self.messages.values() if m.text)

    @property
    def stopped(self) -> bool:
        """True when the run reached requires_action or a terminal status in this stream."""
        return self.last_run_event in STOPPING_EVENTS

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> RunStream:
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
                # The consumer broke out of ``async for``: run the generator's cleanup
                # (on_end) now rather than whenever the loop's asyncgen hook gets to it.
                await gen.aclose()

    async def until_done(self) -> RunStream:
        """Consume the whole stream (calling the handler) and return self."""
        async for _ in self:
            pass
        return self

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._started:
            raise RuntimeError("a RunStream can be iterated only once")
        self._started = True
        self._gen = self._iterate()
        return self._gen

    async def _iterate(self) -> AsyncGenerator[StreamEvent, None]:
        # One generator from bytes to events (no nested async generators): the per-event
        # cost of a generator hop is significant with tens of thousands of deltas.
        decoder = self._decoder
        handle = self._handle
        try:
            try:
                done = False
                async for chunk in self._chunks:
                    for record in decoder.feed(chunk):
                        event = parse_event(record)
                        await handle(event)
                        yield event
                        if type(event) is DoneEvent:
                            done = True
                            break
                    if done:  # stop reading even if the server keeps the body open
                        break
                else:
                    for record in decoder.flush():
                        event = parse_event(record)
                        await handle(event)
                        yield event
            except TransportError as exc:
                await self._report(exc)
                reason = "idle_timeout" if isinstance(exc, RequestTimeout) else "connection"
                raise StreamInterrupted(
                    f"the stream broke: {exc.message}", run_id=self.run_id, reason=reason
                ) from exc
            if not self.stopped:
                # Also after ``done``: a stream that says it is over without a stopping
                # status (e.g. after an ``error`` event) leaves the run's state unknown.
                raise StreamInterrupted(
                    "the stream ended before the run stopped", run_id=self.run_id, reason="eof"
                )
        finally:
            await self.aclose()
            if self._on_end is not None:
                await self._call("on_end", self._on_end)

    # --- event handling -------------------------------------------------------------------

    async def _handle(self, event: StreamEvent) -> None:
        if self._on_event is not None:
            await self._call("on_event", self._on_event, event)
        if isinstance(event, MessageDeltaEvent):
            await self._message_delta(event.data)
        elif isinstance(event, RunStepDeltaEvent):
            await self._step_delta(event.data)
        elif isinstance(event, RunEvent):
            await self._run_event(event)
        elif isinstance(event, MessageEvent):
            await self._message_event(event)
        elif isinstance(event, RunStepEvent):
            await self._step_event(event)
        elif isinstance(event, ThreadCreatedEvent):
            self.thread = event.thread
        elif isinstance(event, ErrorEvent):
            self.errors.append(event.error)
            log.warning(
                "stream.error_event",
                run_id=self.run_id,
                code=event.error.code,
                error=event.error.message,
            )
            await self._report(event.error)
        elif isinstance(event, DoneEvent):
            self.saw_done = True
        elif isinstance(event, MalformedEvent):
            await self._malformed(event)

    async def _malformed(self, event: MalformedEvent) -> None:
        log.warning(
            "stream.malformed_event", sse_event=event.event, reason=event.reason, run_id=self.run_id
        )
        if event.event.startswith("thread.run.") and event.event.count(".") == 2:
            # The run's status is in the event name even when its data is unusable.
            self.last_run_event = event.event

    async def _run_event(self, event: RunEvent) -> None:
        run = event.run
        self.run = run
        self.run_id = run.id
        self.last_run_event = event.event
        if event.event == "thread.run.requires_action":
            await self._finish_tool_calls(run)
        if self._on_run_status is not None:
            await self._call("on_run_status", self._on_run_status, run)

    async def _message_event(self, event: MessageEvent) -> None:
        message = event.message
        snapshot = self.messages.get(message.id)
        if snapshot is None:
            snapshot = self.messages[message.id] = MessageSnapshot(message.id, message.run_id)
        snapshot.status = message.status
        snapshot.message = message
        if event.event == "thread.message.created":
            if self._on_message_created is not None:
                await self._call("on_message_created", self._on_message_created, message)
            return
        if event.event in ("thread.message.completed", "thread.message.incomplete"):
            final = message.text
            if final and final != snapshot.text:
                log.warning(
                    "stream.message_text_mismatch",
                    message_id=message.id,
                    streamed_chars=len(snapshot.text),
                    final_chars=len(final),
                )
                snapshot.replace_text(final)
            if self._on_message_done is not None:
                await self._call("on_message_done", self._on_message_done, message)

    async def _message_delta(self, data: dict[str, Any]) -> None:
        message_id = data.get("id")
        delta = data.get("delta")
        if type(message_id) is not str or not isinstance(delta, dict):
            log.warning("stream.malformed_delta", sse_event="thread.message.delta")
            return
        snapshot = self.messages.get(message_id)
        if snapshot is None:
            snapshot = self.messages[message_id] = MessageSnapshot(message_id, self.run_id)
        content = delta.get("content")
        if type(content) is not list:
            return
        on_text_delta = self._on_text_delta
        for part in content:
            try:
                value = part["text"]["value"]
                index = part.get("index", 0)
            except (KeyError, TypeError, AttributeError):
                continue  # not a text part (image, refusal, ...) or a broken one
            if type(value) is not str:
                continue
            # A non-int index from a broken server must not poison sorting in .text.
            snapshot.append(index if type(index) is int else 0, value)
            if on_text_delta is not None:
                await self._call("on_text_delta", on_text_delta, value, snapshot)

    async def _step_delta(self, data: dict[str, Any]) -> None:
        step_id = data.get("id")
        delta = data.get("delta")
        details = delta.get("step_details") if isinstance(delta, dict) else None
        if not isinstance(step_id, str) or not isinstance(details, dict):
            log.warning("stream.malformed_delta", sse_event="thread.run.step.delta")
            return
        fragments = details.get("tool_calls")
        if not isinstance(fragments, list):
            return
        for fragment in fragments:
            if isinstance(fragment, dict):
                await self._tool_call_fragment(step_id, fragment)

    async def _tool_call_fragment(self, step_id: str, fragment: dict[str, Any]) -> None:
        index = fragment.get("index", 0)
        key = (step_id, index if type(index) is int else 0)
        snapshot = self.tool_calls.get(key)
        created = snapshot is None
        if snapshot is None:
            snapshot = self.tool_calls[key] = ToolCallSnapshot(step_id, key[1])
        if fragment.get("id"):
            snapshot.id = str(fragment["id"])
        if fragment.get("type"):
            snapshot.type = str(fragment["type"])
        function = fragment.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                snapshot.name = str(function["name"])
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                snapshot.append_arguments(arguments)
        if created and self._on_tool_call_created is not None:
            await self._call("on_tool_call_created", self._on_tool_call_created, snapshot)
        elif not created and self._on_tool_call_delta is not None:
            await self._call("on_tool_call_delta", self._on_tool_call_delta, fragment, snapshot)

    async def _step_event(self, event: RunStepEvent) -> None:
        step = event.step
        self.steps[step.id] = step
        if event.event == "thread.run.step.created" or event.event.endswith(".in_progress"):
            return
        if isinstance(step.step_details, ToolCallsStepDetails):
            for snapshot in self._step_calls(step.id):
                await self._tool_call_done(snapshot)
        if self._on_run_step_done is not None:
            await self._call("on_run_step_done", self._on_run_step_done, step)

    async def _finish_tool_calls(self, run: Run) -> None:
        required = {call.id: call for call in run.required_tool_calls}
        for snapshot in self.tool_calls.values():
            call = required.get(snapshot.id)
            if call is None:
                continue
            final = call.function.arguments
            if final and final != snapshot.arguments:
                # As for message text: the run object is authoritative, fragments may be lost.
                log.warning(
                    "stream.tool_arguments_mismatch",
                    tool_call_id=snapshot.id,
                    streamed_chars=len(snapshot.arguments),
                    final_chars=len(final),
                )
                snapshot.replace_arguments(final)
            await self._tool_call_done(snapshot)

    def _step_calls(self, step_id: str) -> list[ToolCallSnapshot]:
        return [s for (sid, _), s in self.tool_calls.items() if sid == step_id]

    async def _tool_call_done(self, snapshot: ToolCallSnapshot) -> None:
        if snapshot.done:
            return
        snapshot.done = True
        if self._on_tool_call_done is not None:
            await self._call("on_tool_call_done", self._on_tool_call_done, snapshot)

    async def _report(self, error: RuntimeAPIError) -> None:
        if self._on_error is not None:
            await self._call("on_error", self._on_error, error)

    async def _call(self, name: str, callback: HandlerCallback, *args: Any) -> None:
        try:
            await callback(*args)
        except Exception as exc:
            log.error("stream.handler_failed", callback=name, error=repr(exc), run_id=self.run_id)
            raise HandlerError(f"EventHandler.{name} raised {exc!r}", callback=name) from exc
