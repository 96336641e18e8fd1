"""RunStream: an Assistants run stream as typed events plus snapshots.

:class:`RunAccumulator` is the pure half: it folds each event into the current run, each
message's text and each tool call's arguments, and notes which callbacks are due; the stream
base (:class:`~runtime.protocol.stream.EventStream`) does the I/O and awaits the callbacks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Unpack

from runtime.assistants.events import (
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
from runtime.assistants.models import Message, Run, RunStep, Thread, ToolCallsStepDetails
from runtime.core.backend import TextPart, Turn, TurnError, TurnRef, TurnStatus, Usage
from runtime.errors import StreamEventError
from runtime.logging import ModuleLogger
from runtime.protocol.snapshots import TextSnapshot, ToolCallSnapshot
from runtime.protocol.stream import EventStream, Notes, StreamOptions
from tools import ToolCall

log = ModuleLogger("runtime.stream")

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
_NEUTRAL: dict[str, TurnStatus] = {
    "requires_action": "requires_tools",
    "cancelling": "cancelling",
    "completed": "completed",
    "incomplete": "incomplete",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
}


def run_turn(run: Run, texts: tuple[TextPart, ...] = ()) -> Turn[Run]:
    """The neutral view of a run object (from a stream or a retrieve)."""
    status = _NEUTRAL.get(run.status or "", "active")
    calls: tuple[ToolCall, ...] = ()
    if status == "requires_tools":
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in run.required_tool_calls
        )
    meta = run.response_meta
    poll = meta.poll_after_ms / 1000.0 if meta is not None and meta.poll_after_ms else None
    error = run.last_error
    return Turn(
        ref=TurnRef(run.id, run.thread_id),
        status=status,
        tool_calls=calls,
        texts=texts,
        usage=_usage(run),
        error=TurnError(error.code, error.message or "") if error is not None else None,
        incomplete_reason=run.incomplete_details.reason if run.incomplete_details else None,
        deadline=float(run.expires_at) if run.expires_at is not None else None,
        poll_after_s=poll,
        raw=run,
        model=run.model,
    )


def _usage(run: Run) -> Usage | None:
    usage = run.usage
    if usage is None:
        return None
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        total_tokens=usage.total_tokens or 0,
    )


class RunAccumulator(Notes):
    """Folds an Assistants stream into snapshots (synchronous, no I/O).

    Attributes:
        run: the last run object the stream carried.
        thread: the thread of a create-thread-and-run stream.
        messages: message snapshots by id, in stream order.
        message_objects: the last full Message object per id.
        tool_calls: tool-call snapshots by (step id, index).
        steps: run steps by id.
        errors: ``error`` events received.
        last_run_event: the name of the last ``thread.run.*`` event.
        saw_done: the ``done`` event arrived.
    """

    def __init__(self, run_id: str | None = None, thread_id: str | None = None) -> None:
        super().__init__()
        self.run: Run | None = None
        self.run_id = run_id
        self.thread_id = thread_id
        self.thread: Thread | None = None
        self.messages: dict[str, TextSnapshot] = {}
        self.message_objects: dict[str, Message] = {}
        self.tool_calls: dict[tuple[str, int], ToolCallSnapshot] = {}
        self.steps: dict[str, RunStep] = {}
        self.errors: list[StreamEventError] = []
        self.last_run_event: str | None = None
        self.saw_done = False
        self._ref: TurnRef | None = None

    # --- the accumulator protocol -------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """True when the run reached requires_action or a terminal status in this stream."""
        return self.last_run_event in STOPPING_EVENTS

    @property
    def ref(self) -> TurnRef | None:
        """The run, once known (one value per run and thread: read on every event)."""
        run_id, thread_id = self.run_id, self.thread_id
        if run_id is None:
            return None
        ref = self._ref
        if ref is None or ref.id != run_id or ref.conversation != thread_id:
            ref = self._ref = TurnRef(run_id, thread_id)
        return ref

    @property
    def last_sequence(self) -> int | None:
        """Assistants streams carry no sequence numbers."""
        return None

    def turn(self) -> Turn[Run] | None:
        """The run where the stream stopped; None when the run object disagrees with the
        last event (a malformed event named the status) or the stream never stopped."""
        run = self.run
        if run is None or not self.stopped or self.last_run_event is None:
            return None
        if run.status != self.last_run_event.rsplit(".", 1)[-1]:
            return None
        return run_turn(run, self.partial_texts())

    def partial_texts(self) -> tuple[TextPart, ...]:
        """Every message's text so far, in stream order."""
        return tuple(TextPart(s.id, s.text) for s in self.messages.values())

    def feed(self, event: StreamEvent) -> None:
        """Fold one event in."""
        kind = type(event)
        if kind is RunStepDeltaEvent:  # the hot path: tool-call argument fragments
            self._step_delta(event.data)
        elif isinstance(event, MessageDeltaEvent):
            self._message_delta(event.data)
        elif isinstance(event, RunStepDeltaEvent):
            self._step_delta(event.data)
        elif isinstance(event, RunEvent):
            self._run_event(event)
        elif isinstance(event, MessageEvent):
            self._message_event(event)
        elif isinstance(event, RunStepEvent):
            self._step_event(event)
        elif isinstance(event, ThreadCreatedEvent):
            self.thread = event.thread
            self.thread_id = event.thread.id
        elif isinstance(event, ErrorEvent):
            self._error_event(event)
        elif isinstance(event, DoneEvent):
            self.saw_done = True
        elif isinstance(event, MalformedEvent):
            self._malformed(event)

    # --- events -------------------------------------------------------------------------------

    def _error_event(self, event: ErrorEvent) -> None:
        error = event.error
        self.errors.append(error)
        log.warning("stream.error_event", run_id=self.run_id, code=error.code, error=error.message)
        self._note("on_error", error)

    def _malformed(self, event: MalformedEvent) -> None:
        log.warning(
            "stream.malformed_event", sse_event=event.event, reason=event.reason, run_id=self.run_id
        )
        if event.event.startswith("thread.run.") and event.event.count(".") == 2:
            # The run's status is in the event name even when its data is unusable.
            self.last_run_event = event.event

    def _run_event(self, event: RunEvent) -> None:
        run = event.run
        self.run = run
        self.run_id = run.id
        self.thread_id = run.thread_id or self.thread_id
        self.last_run_event = event.event
        if event.event == "thread.run.requires_action":
            self._finish_tool_calls(run)
        self._note_status(run.id, run.status, event.event, "on_run_status", run)

    def _message_event(self, event: MessageEvent) -> None:
        message = event.message
        snapshot = self._message_snapshot(message.id, message.run_id)
        snapshot.status = message.status
        self.message_objects[message.id] = message
        if event.event == "thread.message.created":
            self._note("on_message_created", message)
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
            self._note("on_message_done", snapshot)

    def _message_snapshot(self, message_id: str, run_id: str | None) -> TextSnapshot:
        snapshot = self.messages.get(message_id)
        if snapshot is None:
            snapshot = TextSnapshot(message_id, run_id, len(self.messages))
            self.messages[message_id] = snapshot
        return snapshot

    def _message_delta(self, data: dict[str, Any]) -> None:
        message_id = data.get("id")
        delta = data.get("delta")
        if type(message_id) is not str or not isinstance(delta, dict):
            log.warning("stream.malformed_delta", sse_event="thread.message.delta")
            return
        snapshot = self.messages.get(message_id)
        if snapshot is None:
            snapshot = self._message_snapshot(message_id, self.run_id)
        content = delta.get("content")
        if type(content) is not list:
            return
        wanted = "on_text_delta" in self.wants
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
            if wanted:
                self.notes.append(("on_text_delta", (value, snapshot)))

    def _step_delta(self, data: dict[str, Any]) -> None:
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
                self._tool_call_fragment(step_id, fragment)

    def _tool_call_fragment(self, step_id: str, fragment: dict[str, Any]) -> None:
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
        arguments = ""
        if isinstance(function, dict):
            if function.get("name"):
                snapshot.name = str(function["name"])
            raw = function.get("arguments")
            if isinstance(raw, str) and raw:
                arguments = raw
                snapshot.append_arguments(raw)
        if created:
            self._note("on_tool_call_created", snapshot)
        elif "on_tool_call_delta" in self.wants:  # _note, inlined: once per fragment
            self.notes.append(("on_tool_call_delta", (arguments, snapshot)))

    def _step_event(self, event: RunStepEvent) -> None:
        step = event.step
        self.steps[step.id] = step
        if event.event == "thread.run.step.created" or event.event.endswith(".in_progress"):
            return
        if isinstance(step.step_details, ToolCallsStepDetails):
            for (sid, _), snapshot in self.tool_calls.items():
                if sid == step.id:
                    self._tool_call_done(snapshot)
        self._note("on_run_step_done", step)

    def _finish_tool_calls(self, run: Run) -> None:
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
            self._tool_call_done(snapshot)


class RunStream(EventStream[Run]):
    """Async iterator over one run stream's events; its snapshots live in :attr:`state`
    (a :class:`RunAccumulator`: messages, tool calls, steps, errors, ...).

    Args:
        chunks: the response body as an async iterator of byte chunks.
        run_id: the run being streamed, when known in advance (submit_tool_outputs).
        thread_id: its thread, when known.
        options: ``handler`` (neutral hooks plus ``on_run_status(run)``,
            ``on_message_created(message)`` and ``on_run_step_done(step)``), ``close``,
            ``max_event_bytes``, ``idle_timeout_s``: see
            :class:`~runtime.protocol.stream.EventStream`.

    Iterating yields every typed event up to ``done``. When the bytes end before the run
    reached ``requires_action`` or a terminal status, iteration raises
    :class:`~runtime.errors.StreamInterrupted` (the loop then recovers by polling).
    """

    parse = staticmethod(parse_event)
    typed_callbacks = ("on_run_status", "on_message_created", "on_run_step_done")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        run_id: str | None = None,
        thread_id: str | None = None,
        **options: Unpack[StreamOptions],
    ) -> None:
        self.state = RunAccumulator(run_id, thread_id)
        super().__init__(chunks, self.state, **options)

    @property
    def run(self) -> Run | None:
        """The last run object the stream carried."""
        return self.state.run

    @property
    def run_id(self) -> str | None:
        """The run's id, once known."""
        return self.state.run_id

    @property
    def text(self) -> str:
        """The text of every assistant message of this stream, joined by blank lines."""
        return "\n\n".join(m.text for m in self.state.messages.values() if m.text)
