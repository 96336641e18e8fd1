"""ResponseStream: a Responses API stream as typed events plus snapshots.

:class:`ResponseAccumulator` is the pure half. Snapshots are keyed by ``output_index``, the
one address every item event carries; text and arguments grow by appending fragments, as on
Assistants, with the same snapshot classes. A resumed stream (``starting_after``) continues
the accumulator of the stream it replaces, so its snapshots and a handler see each delta once.

Servers are not always consistent: the recorded reference stream changes item ids between
events, and its ``output_text.done`` text disagrees with the deltas and with the final
response. The stream never crashes on that. It logs each disagreement
(``responses.item_id_mismatch``, ``responses.text_mismatch``, ``responses.response_id_mismatch``,
``responses.arguments_mismatch``) and lets the later statement win, so the final response
event is what the snapshots finally report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Unpack

from runtime.core.backend import TextPart, Turn, TurnError, TurnRef, TurnStatus, Usage
from runtime.errors import StreamEventError
from runtime.logging import ModuleLogger
from runtime.protocol.events import ErrorEvent, MalformedEvent, StreamEvent
from runtime.protocol.snapshots import TextSnapshot, ToolCallSnapshot
from runtime.protocol.stream import EventStream, Notes, StreamOptions
from runtime.responses.events import (
    TERMINAL_EVENTS,
    ContentPartEvent,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    OutputItemEvent,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    ResponseLifecycleEvent,
    ResponseStreamEvent,
    parse_response_event,
)
from runtime.responses.models import (
    FunctionCallItem,
    OutputItem,
    OutputMessage,
    OutputText,
    Response,
)
from tools import ToolCall

log = ModuleLogger("runtime.responses")

Snapshot = TextSnapshot | ToolCallSnapshot
_NEUTRAL: dict[str, TurnStatus] = {
    "completed": "completed",
    "incomplete": "incomplete",
    "failed": "failed",
    "cancelled": "cancelled",
}


def response_turn(
    response: Response, texts: tuple[TextPart, ...] | None = None, last_sequence: int | None = None
) -> Turn[Response]:
    """The neutral view of a response: a completed one with function calls requires tools."""
    status: TurnStatus = _NEUTRAL.get(response.status or "", "active")
    calls = tuple(ToolCall(c.call_id, c.name, c.arguments) for c in response.function_calls)
    if status == "completed" and calls:
        status = "requires_tools"
    else:
        calls = ()
    meta = response.response_meta
    poll = meta.poll_after_ms / 1000.0 if meta is not None and meta.poll_after_ms else None
    if texts is None:
        texts = tuple(TextPart(m.id, m.text) for m in response.messages)
    error = response.error
    return Turn(
        ref=TurnRef(response.id, _conversation_id(response)),
        status=status,
        tool_calls=calls,
        texts=texts,
        usage=_usage(response),
        error=TurnError(error.code, error.message or "") if error is not None else None,
        incomplete_reason=(
            response.incomplete_details.reason if response.incomplete_details else None
        ),
        poll_after_s=poll,
        last_sequence=last_sequence,
        raw=response,
        model=response.model,
    )


def _conversation_id(response: Response) -> str | None:
    conversation = getattr(response, "conversation", None)
    if isinstance(conversation, dict):
        value = conversation.get("id")
        return value if isinstance(value, str) else None
    return conversation if isinstance(conversation, str) else None


def _usage(response: Response) -> Usage | None:
    usage = response.usage
    if usage is None:
        return None
    cached = (usage.input_tokens_details or {}).get("cached_tokens")
    reasoning = (usage.output_tokens_details or {}).get("reasoning_tokens")
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        cached_tokens=cached if isinstance(cached, int) else None,
        reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
    )


class ResponseAccumulator(Notes):
    """Folds a Responses stream into snapshots (synchronous, no I/O).

    Attributes:
        response: the last response object a lifecycle event carried.
        response_id: its id, once known.
        items: snapshots by output index.
        errors: ``error`` events received.
        last_response_event: the name of the last lifecycle event.
        last_sequence: the last ``sequence_number`` seen.
        inconsistencies: disagreements between events that were logged and settled.
    """

    def __init__(self) -> None:
        super().__init__()
        self.response: Response | None = None
        self.response_id: str | None = None
        self.items: dict[int, Snapshot] = {}
        self.errors: list[StreamEventError] = []
        self.last_response_event: str | None = None
        self.last_sequence: int | None = None
        self.inconsistencies = 0

    # --- the accumulator protocol -------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """True when the stream carried a terminal response event."""
        return self.last_response_event in TERMINAL_EVENTS

    @property
    def ref(self) -> TurnRef | None:
        """The response, once known."""
        if self.response_id is None:
            return None
        conversation = _conversation_id(self.response) if self.response is not None else None
        return TurnRef(self.response_id, conversation)

    def turn(self) -> Turn[Response] | None:
        """The response where the stream stopped (None: it did not reach a terminal event)."""
        if not self.stopped or self.response is None:
            return None
        return response_turn(self.response, self.partial_texts(), self.last_sequence)

    def partial_texts(self) -> tuple[TextPart, ...]:
        """Every message item's text so far, in output order."""
        return tuple(TextPart(s.id, s.text) for s in self.messages)

    @property
    def messages(self) -> list[TextSnapshot]:
        """The message items, in output order."""
        return [s for _, s in sorted(self.items.items()) if isinstance(s, TextSnapshot)]

    @property
    def function_calls(self) -> list[ToolCallSnapshot]:
        """The function-call items, in output order."""
        return [s for _, s in sorted(self.items.items()) if isinstance(s, ToolCallSnapshot)]

    def feed(self, event: StreamEvent) -> None:
        """Fold one event in."""
        kind = type(event)
        if kind is OutputTextDeltaEvent:
            self._text_delta(event)  # type: ignore[arg-type]  # the hot path: one type check
            return
        if kind is FunctionCallArgumentsDeltaEvent:
            self._arguments_delta(event)  # type: ignore[arg-type]
            return
        handle = _HANDLERS.get(kind)
        if handle is not None:
            # The parser's own classes: one lookup instead of the isinstance chain below.
            if kind is not ErrorEvent and kind is not MalformedEvent:
                sequence = event._top.get("sequence_number")
                if type(sequence) is int:
                    self.last_sequence = sequence
            handle(self, event)
            return
        if isinstance(event, ResponseStreamEvent):
            sequence = event._top.get("sequence_number")
            if type(sequence) is int:
                self.last_sequence = sequence
        if isinstance(event, OutputTextDeltaEvent):
            self._text_delta(event)
        elif isinstance(event, FunctionCallArgumentsDeltaEvent):
            self._arguments_delta(event)
        elif isinstance(event, ResponseLifecycleEvent):
            self._lifecycle(event)
        elif isinstance(event, OutputItemEvent):
            self._item_event(event)
        elif isinstance(event, ContentPartEvent | OutputTextDoneEvent):
            self._part_done(event)
        elif isinstance(event, FunctionCallArgumentsDoneEvent):
            self._arguments_done(event)
        elif isinstance(event, ErrorEvent):
            self._error_event(event)
        elif isinstance(event, MalformedEvent):
            self._malformed(event)

    # --- events -------------------------------------------------------------------------------

    def _malformed(self, event: MalformedEvent) -> None:
        log.warning(
            "responses.malformed_event",
            sse_event=event.event,
            reason=event.reason,
            response_id=self.response_id,
        )

    def _error_event(self, event: ErrorEvent) -> None:
        error = event.error
        self.errors.append(error)
        log.warning(
            "responses.error_event",
            response_id=self.response_id,
            code=error.code,
            error=error.message,
        )
        self._note("on_error", error)

    def _lifecycle(self, event: ResponseLifecycleEvent) -> None:
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
            self._reconcile(response)
        self._note_status(response.id, response.status, event.event, "on_response_status", response)

    def _item_event(self, event: OutputItemEvent) -> None:
        item = event.item
        index = event._top.get("output_index")  # read once, without the property's frames
        if type(index) is not int:
            index = event.output_index
        snapshot = self._snapshot(index, item, event.event)
        added = event.event.endswith(".added")
        self._note("on_output_item_added" if added else "on_output_item_done", item)
        if isinstance(snapshot, TextSnapshot) and isinstance(item, OutputMessage):
            snapshot.status = item.status
            if not added:
                self._reconcile_message(snapshot, item, event.event)
                self._note("on_message_done", snapshot)
        elif (
            isinstance(snapshot, ToolCallSnapshot)
            and isinstance(item, FunctionCallItem)
            and not added
        ):
            self._reconcile_call(snapshot, item, event.event)
            self._tool_call_done(snapshot)

    def _snapshot(self, index: int, item: OutputItem, event: str) -> Snapshot | None:
        """The snapshot at ``index``, created on first sight (``None`` for unknown items)."""
        snapshot = self.items.get(index)
        item_id = item.id or ""
        if snapshot is not None:
            self._check_item_id(snapshot, item_id, index, event)
            return snapshot
        if isinstance(item, OutputMessage):
            self.items[index] = TextSnapshot(item_id, self.response_id, index)
            return self.items[index]
        if not isinstance(item, FunctionCallItem):
            return None
        call = ToolCallSnapshot(self.response_id or "", index)
        call.id, call.name, call.item_id = item.call_id, item.name, item_id
        if item.arguments:
            call.append_arguments(item.arguments)
        self.items[index] = call
        self._note("on_tool_call_created", call)
        return call

    def _check_item_id(self, snapshot: Snapshot, item_id: str, index: int, event: str) -> None:
        known = snapshot.item_id if isinstance(snapshot, ToolCallSnapshot) else snapshot.id
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
        if isinstance(snapshot, ToolCallSnapshot):
            snapshot.item_id = item_id
        else:
            snapshot.id = item_id

    def _text_delta(self, event: OutputTextDeltaEvent) -> None:
        # Hot path: each field is read once, straight from the decoded dict.
        data = event.data
        sequence = data.get("sequence_number")
        if type(sequence) is int:
            self.last_sequence = sequence
        index = data.get("output_index")
        if type(index) is not int:
            index = event.output_index
        item_id = data.get("item_id")
        if type(item_id) is not str:
            item_id = ""
        snapshot = self.items.get(index)
        if type(snapshot) is not TextSnapshot or (item_id and item_id != snapshot.id):
            snapshot = self._text_delta_target(event, index, item_id, snapshot)
            if snapshot is None:
                return
        delta = data.get("delta")
        if type(delta) is not str:
            delta = event.delta
        part = data.get("content_index")
        snapshot.append(part if type(part) is int else event.content_index, delta)
        if "on_text_delta" in self.wants:
            self.notes.append(("on_text_delta", (delta, snapshot)))

    def _text_delta_target(
        self, event: OutputTextDeltaEvent, index: int, item_id: str, snapshot: Snapshot | None
    ) -> TextSnapshot | None:
        """The snapshot a delta appends to when it is not simply the known message's."""
        if snapshot is None:
            # A delta for an item never announced: adopt it rather than lose the text.
            snapshot = TextSnapshot(item_id, self.response_id, index)
            self.items[index] = snapshot
            return snapshot
        if isinstance(snapshot, ToolCallSnapshot):
            self._inconsistent(
                "responses.delta_for_other_item",
                sse_event=event.event,
                output_index=index,
                item_id=item_id,
            )
            return None
        self._check_item_id(snapshot, item_id, index, event.event)
        return snapshot

    def _part_done(self, event: ContentPartEvent | OutputTextDoneEvent) -> None:
        snapshot = self.items.get(event.output_index)
        if not isinstance(snapshot, TextSnapshot):
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

    def _settle_part(self, snapshot: TextSnapshot, index: int, final: str, event: str) -> None:
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

    def _arguments_delta(self, event: FunctionCallArgumentsDeltaEvent) -> None:
        # Hot path (tens of fragments per call): each field is read once from the dict.
        data = event.data
        sequence = data.get("sequence_number")
        if type(sequence) is int:
            self.last_sequence = sequence
        index = data.get("output_index")
        if type(index) is not int:
            index = event.output_index
        item_id = data.get("item_id")
        if type(item_id) is not str:
            item_id = ""
        snapshot = self.items.get(index)
        if type(snapshot) is not ToolCallSnapshot:
            log.warning("responses.orphan_arguments_delta", output_index=index, item_id=item_id)
            return
        if item_id and item_id != snapshot.item_id:
            self._check_item_id(snapshot, item_id, index, event.event)
        delta = data.get("delta")
        if type(delta) is not str:
            delta = event.delta
        snapshot.append_arguments(delta)
        if "on_tool_call_delta" in self.wants:
            self.notes.append(("on_tool_call_delta", (delta, snapshot)))

    def _arguments_done(self, event: FunctionCallArgumentsDoneEvent) -> None:
        data = event.data
        index = data.get("output_index")
        snapshot = self.items.get(index if type(index) is int else event.output_index)
        if type(snapshot) is ToolCallSnapshot:
            final = data.get("arguments")
            if type(final) is not str:
                final = event.arguments
            self._settle_arguments(snapshot, final, event.event)

    def _settle_arguments(self, snapshot: ToolCallSnapshot, final: str, event: str) -> None:
        if final != snapshot.arguments:
            self._inconsistent(
                "responses.arguments_mismatch",
                sse_event=event,
                call_id=snapshot.id,
                streamed_chars=len(snapshot.arguments),
                final_chars=len(final),
            )
            snapshot.replace_arguments(final)

    def _reconcile_message(self, snapshot: TextSnapshot, item: OutputMessage, event: str) -> None:
        for index, part in enumerate(item.content):
            if isinstance(part, OutputText):
                self._settle_part(snapshot, index, part.text, event)

    def _reconcile_call(
        self, snapshot: ToolCallSnapshot, item: FunctionCallItem, event: str
    ) -> None:
        if item.call_id:
            snapshot.id = item.call_id
        if item.name:
            snapshot.name = item.name
        self._settle_arguments(snapshot, item.arguments, event)

    def _reconcile(self, response: Response) -> None:
        """Bring the snapshots in line with the terminal response (the final state)."""
        items = self.items
        for index, item in enumerate(response.output):
            known = items.get(index)
            if (
                type(known) is ToolCallSnapshot
                and known.done
                and type(item) is FunctionCallItem
                and item.call_id == known.id
                and item.name == known.name
                and item.id in (None, "", known.item_id)
                and item.arguments == known.arguments
            ):
                continue  # settled by its item events already: the final response agrees
            snapshot = self._snapshot(index, item, "response.final")
            if isinstance(snapshot, TextSnapshot) and isinstance(item, OutputMessage):
                snapshot.status = item.status
                self._reconcile_message(snapshot, item, "response.final")
            elif isinstance(snapshot, ToolCallSnapshot) and isinstance(item, FunctionCallItem):
                self._reconcile_call(snapshot, item, "response.final")
                self._tool_call_done(snapshot)

    def _inconsistent(self, name: str, **fields: object) -> None:
        self.inconsistencies += 1
        log.warning(name, response_id=self.response_id, **fields)


# The event classes the parser builds -> their fold (besides the two delta events, which
# feed checks first); any other class goes through feed's isinstance chain.
_HANDLERS: dict[type[StreamEvent], Callable[[ResponseAccumulator, Any], None]] = {
    ResponseLifecycleEvent: ResponseAccumulator._lifecycle,
    OutputItemEvent: ResponseAccumulator._item_event,
    ContentPartEvent: ResponseAccumulator._part_done,
    OutputTextDoneEvent: ResponseAccumulator._part_done,
    FunctionCallArgumentsDoneEvent: ResponseAccumulator._arguments_done,
    ErrorEvent: ResponseAccumulator._error_event,
    MalformedEvent: ResponseAccumulator._malformed,
}


class ResponseStream(EventStream[Response]):
    """Async iterator over one Responses stream's events; its snapshots live in :attr:`state`
    (a :class:`ResponseAccumulator`: items, messages, function calls, errors, ...).

    Args:
        chunks: the response body as an async iterator of byte chunks.
        state: the accumulator of the stream this one resumes (continues its snapshots).
        options: ``handler`` (neutral hooks plus ``on_response_status(response)``,
            ``on_output_item_added(item)`` and ``on_output_item_done(item)``), ``close``,
            ``max_event_bytes``, ``idle_timeout_s``: see
            :class:`~runtime.protocol.stream.EventStream`.

    Iterating yields every typed event. When the bytes end before a terminal event
    (``response.completed / incomplete / failed / cancelled``), iteration raises
    :class:`~runtime.errors.StreamInterrupted`; :attr:`response_id` tells whether the
    response can be retrieved or resumed.
    """

    parse = staticmethod(parse_response_event)
    typed_callbacks = ("on_response_status", "on_output_item_added", "on_output_item_done")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        state: ResponseAccumulator | None = None,
        **options: Unpack[StreamOptions],
    ) -> None:
        self.state = state if state is not None else ResponseAccumulator()
        super().__init__(chunks, self.state, **options)

    @property
    def response(self) -> Response | None:
        """The last response object a lifecycle event carried."""
        return self.state.response

    @property
    def response_id(self) -> str | None:
        """The response's id, once known."""
        return self.state.response_id

    @property
    def text(self) -> str:
        """The text of every message item of this stream, joined."""
        return "".join(m.text for m in self.state.messages)

    async def final_response(self) -> Response:
        """Consume the stream and return the terminal response."""
        await self.until_done()
        assert self.state.response is not None  # until_done raised otherwise
        return self.state.response
