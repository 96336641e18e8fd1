"""The run state machine of the Assistants front end (its state lives in
:mod:`runtime.emulator.store`).

A run is driven by :meth:`RunEngine.start` (new run) or :meth:`RunEngine.resume` (after tool
outputs) until it reaches ``requires_action`` or a terminal status, emitting stream events to a
:class:`Sink`. Streaming requests drive the run inside the request handler with an SSE sink;
non-streaming requests drive it in an owned background task with a :class:`NullSink`, so pollers
see it progress. Timers (expiry of an unanswered ``requires_action``, the ``cancelling`` ->
``cancelled`` step) are owned tasks too, reaped by :meth:`RunEngine.aclose`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import Any, Protocol

from runtime.emulator.errors import invalid
from runtime.emulator.frames import (
    RunFrames,
    RunSettingsFrames,
    encode_json,
    message_frames,
    message_json,
    run_head,
    run_settings_frames,
    step_frames,
    step_json,
)
from runtime.emulator.ids import IdFactory
from runtime.emulator.model import (
    MODEL_INPUT_DEFAULTS,
    ChatMessage,
    FunctionSpec,
    ModelInput,
    ScriptedModel,
    ToolExchange,
    Turn,
    argument_pieces,
    frozen_instance,
)
from runtime.emulator.objects import (
    RUN_OVERRIDES,
    Obj,
    message_obj,
    run_from_defaults,
    run_obj,
    step_obj,
    text_part,
    usage_obj,
)
from runtime.emulator.retention import LruStore
from runtime.emulator.store import ACTIVE, TERMINAL, RunState, Store, ThreadState

__all__ = [
    "ACTIVE",
    "CANCELLABLE",
    "EVENT_HEADS",
    "TERMINAL",
    "NullSink",
    "RunEngine",
    "RunState",
    "Sink",
    "Store",
    "ThreadState",
    "encode_event",
    "encode_json",
    "event_head",
    "message_text",
    "now",
    "sse_event",
    "text_delta_event",
    "text_delta_head",
]

CANCELLABLE = frozenset({"queued", "in_progress", "requires_action"})
_RUNNING = frozenset({"queued", "in_progress"})  # not stopped (see RunEngine._stopped)
_CANCELLED_MESSAGE = {"reason": "run_cancelled"}
_DEFAULTS_KEPT = 64  # assistants whose run defaults are kept (the most recently used)


def encode_event(event: str, data: Obj) -> bytes:
    """One SSE event: ``event: NAME`` and a compact JSON ``data`` line."""
    return sse_event(event, encode_json(data).encode())


EVENT_HEADS: dict[str, bytes] = {}
"""``event: NAME\\ndata: `` by name, as :func:`event_head` built them (a sink looks here
first, sparing itself the call)."""


def event_head(event: str) -> bytes:
    """``event: NAME\\ndata: `` (built once a name: the names are the protocol's few)."""
    head = EVENT_HEADS.get(event)
    if head is None:
        head = EVENT_HEADS[event] = b"event: " + event.encode() + b"\ndata: "
    return head


def sse_event(event: str, data: bytes) -> bytes:
    """One SSE event from its name and its already encoded JSON ``data``."""
    return b"".join((event_head(event), data, b"\n\n"))


_escape_json_str: Callable[[str], str] = json.encoder.encode_basestring_ascii
_TEXT_DELTA_HEAD = b"event: thread.message.delta\ndata: "


def text_delta_head(message_id: str) -> bytes:
    """The JSON of a ``thread.message.delta`` up to its text value (the same for each piece)."""
    return (
        b'{"id":'
        + _escape_json_str(message_id).encode()
        + b',"object":"thread.message.delta","delta":{"content":[{"index":0,"type":"text",'
        + b'"text":{"value":'
    )


def text_delta_event(head: bytes, piece: str, *, first: bool) -> bytes:
    """One ``thread.message.delta`` event, byte for byte what :func:`encode_event` makes of
    ``{"id", "object", "delta": {"content": [{"index": 0, "type": "text", "text": {"value":
    piece}}]}}`` (the first piece also carries ``"annotations": []``), with only the piece
    serialised: a stream has one per word."""
    tail = _FIRST_DELTA_TAIL if first else _DELTA_TAIL
    return b"".join((_TEXT_DELTA_HEAD, head, _escape_json_str(piece).encode(), tail))


_FIRST_DELTA_TAIL = b',"annotations":[]}}]}}\n\n'
_DELTA_TAIL = b"}}]}}\n\n"


class Sink(Protocol):
    """Where a driven run sends its stream events.

    Sending an event never waits (a sink buffers); ``flush`` is the one point where the
    driver lets the sink write, and it calls it before it waits itself.
    """

    def emit(self, event: str, data: Obj) -> None:
        """Send one event (``data`` is serialised at once, so it may change afterwards)."""

    def emit_again(self, event: str) -> None:
        """Send one event carrying the previous event's data, unchanged since (serialised
        once: the ``created`` and ``in_progress`` events of a step carry the same object)."""

    def emit_encoded(self, event: str, encode: Callable[[], bytes]) -> None:
        """Send one event whose data ``encode()`` gives already encoded (called at once, and
        only by a sink that sends it)."""

    async def flush(self) -> None:
        """Push buffered events out (called before the driver waits)."""

    def emit_raw(self, chunk: bytes) -> None:
        """Send one already encoded SSE event (``event: ...\ndata: ...\n\n``)."""


class NullSink:
    """Sink of a run nobody streams (created with ``stream=false``)."""

    def emit(self, event: str, data: Obj) -> None:
        """Drop the event."""

    def emit_again(self, event: str) -> None:
        """Drop the event."""

    def emit_encoded(self, event: str, encode: Callable[[], bytes]) -> None:
        """Drop the event (nothing is encoded)."""

    async def flush(self) -> None:
        """Nothing to push."""

    def emit_raw(self, chunk: bytes) -> None:
        """Drop the event."""


def now() -> int:
    """Unix time in seconds, as in the wire objects."""
    return int(time.time())


def message_text(message: Mapping[str, Any]) -> str:
    """The text parts of a message joined by newlines."""
    parts = [p["text"]["value"] for p in message.get("content", []) if p.get("type") == "text"]
    return "\n".join(parts)


class RunEngine:
    """Drives runs through their lifecycle with the scripted model."""

    def __init__(
        self,
        store: Store,
        model: ScriptedModel,
        ids: IdFactory,
        stats: dict[str, int],
        *,
        run_ttl_s: float = 600.0,
        delta_delay_s: float = 0.0,
        cancel_delay_s: float = 0.05,
    ) -> None:
        self.store = store
        self.model = model
        self.ids = ids
        self.stats = stats
        self.run_ttl_s = run_ttl_s
        self.delta_delay_s = delta_delay_s
        self.cancel_delay_s = cancel_delay_s
        self._tasks: set[asyncio.Task[Any]] = set()
        # By assistant id: the assistant, its run without overrides and that run's settings.
        self._defaults: LruStore[tuple[Obj, Obj, RunSettingsFrames]] = LruStore(_DEFAULTS_KEPT)

    # -- task ownership ---------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a coroutine as a task owned (and reaped) by the engine."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Cancel and reap every owned task."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- creation ---------------------------------------------------------------------------

    def create_run(self, thread: ThreadState, assistant: Obj, body: Mapping[str, Any]) -> RunState:
        """Create a queued run on a thread (the caller validated the body and the thread)."""
        stamp = time.time()
        loop_now = asyncio.get_running_loop().time()
        run_id, created_at, expires_at = (
            self.ids.new("run"),
            int(stamp),
            int(stamp + self.run_ttl_s),
        )
        frames: RunFrames | None = None
        if RUN_OVERRIDES.isdisjoint(body):
            defaults, settings = self._run_defaults(assistant)
            obj = run_from_defaults(defaults, run_id, created_at, thread.obj["id"], expires_at)
            frames = (run_head(obj), *settings)
        else:
            obj = run_obj(run_id, created_at, thread.obj["id"], assistant, body, expires_at)
        run = RunState(obj=obj, thread=thread, deadline=loop_now + self.run_ttl_s, frames=frames)
        for raw in body.get("additional_messages") or []:
            self.add_message(thread, raw, run_id=obj["id"])
        thread.runs[obj["id"]] = run
        thread.active_run = run
        self.store.runs[obj["id"]] = run
        self.stats["runs_created"] += 1
        return run

    def _run_defaults(self, assistant: Obj) -> tuple[Obj, RunSettingsFrames]:
        """The run an assistant makes without overrides (``run_obj`` of an empty body) and
        its settings' frames, made once an assistant (until it changes: :meth:`forget_assistant`)."""
        known = self._defaults.get(assistant["id"])
        if known is not None and known[0] is assistant:
            return known[1], known[2]
        defaults = run_obj("", 0, "", assistant, {}, 0)
        settings = run_settings_frames(defaults)
        self._defaults[assistant["id"]] = (assistant, defaults, settings)
        return defaults, settings

    def forget_assistant(self, assistant_id: str) -> None:
        """Drop what :meth:`_run_defaults` made of an assistant (updated or deleted)."""
        self._defaults.pop(assistant_id)

    def add_message(
        self, thread: ThreadState, raw: Mapping[str, Any], *, run_id: str | None = None
    ) -> Obj:
        """Append a validated user/assistant message to a thread."""
        message = message_obj(
            self.ids.new("msg"),
            now(),
            thread.obj["id"],
            role=raw["role"],
            content=raw["content"],
            run_id=run_id,
            attachments=raw.get("attachments") or [],
            metadata=raw.get("metadata"),
        )
        thread.messages[message["id"]] = message
        return message

    # -- driving ----------------------------------------------------------------------------

    async def start(self, run: RunState, sink: Sink) -> None:
        """Drive a new run: created, queued, then the first model turn."""
        sink.emit_encoded("thread.run.created", run.encoded)
        sink.emit_again("thread.run.queued")
        await self._advance(run, sink)

    async def resume(self, run: RunState, sink: Sink, step: Obj) -> None:
        """Drive a run after its tool outputs were accepted."""
        sink.emit_encoded("thread.run.step.completed", partial(step_json, step))
        sink.emit_encoded("thread.run.queued", run.encoded)
        await self._advance(run, sink)

    def drive_in_background(self, run: RunState, step: Obj | None = None) -> None:
        """Drive a run nobody streams (``stream=false`` or a fault took the response away)."""
        sink = NullSink()
        coro = self.start(run, sink) if step is None else self.resume(run, sink, step)
        self.spawn(coro)

    async def _advance(self, run: RunState, sink: Sink) -> None:
        if run.obj["status"] not in _RUNNING and await self._stopped(run, sink):
            return
        run.obj["status"] = "in_progress"
        run.obj["started_at"] = run.obj["started_at"] or now()
        sink.emit_encoded("thread.run.in_progress", run.encoded)
        turn = self.model.decide(self._model_input(run))
        if turn.delay_s > 0:
            await sink.flush()
            await asyncio.sleep(turn.delay_s)
        if run.obj["status"] not in _RUNNING and await self._stopped(run, sink):
            return
        limit = run.obj["max_prompt_tokens"]
        if limit is not None and turn.prompt_tokens > limit:
            self._add_usage(run, turn.prompt_tokens, 0)
            self._end(run, sink, "incomplete", reason="max_prompt_tokens")
        elif turn.kind == "fail":
            self._add_usage(run, turn.prompt_tokens, 0)
            error = {"code": turn.error_code, "message": turn.error_message}
            self._end(run, sink, "failed", error=error)
        elif turn.kind == "tool_calls":
            await self._tool_calls(run, sink, turn)
        else:
            await self._message(run, sink, turn)

    def _model_input(self, run: RunState) -> ModelInput:
        messages = list(run.thread.messages.values())
        strategy = run.obj["truncation_strategy"] or {}
        if strategy.get("type") == "last_messages" and strategy.get("last_messages"):
            messages = messages[-int(strategy["last_messages"]) :]
        # Most runs have no tools: no comprehension (a function call in itself) is made for them.
        tools = (
            [
                frozen_instance(
                    FunctionSpec,
                    {
                        "name": t["function"]["name"],
                        "parameters": t["function"].get("parameters") or {},
                    },
                )
                for t in run.obj["tools"]
                if t.get("type") == "function" and isinstance(t.get("function"), Mapping)
            ]
            if run.obj["tools"]
            else []
        )
        response_format = run.obj["response_format"]
        # Mostly the string "auto": tested before the (slower) abstract Mapping check.
        format_type = (
            response_format.get("type")
            if type(response_format) is not str and isinstance(response_format, Mapping)
            else None
        )
        json_mode = format_type in {"json_object", "json_schema"}
        schema: Mapping[str, Any] | None = None
        if format_type == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, Mapping) else None
            schema = schema if isinstance(schema, Mapping) else {}
        return frozen_instance(
            ModelInput,
            {
                **MODEL_INPUT_DEFAULTS,
                "messages": [
                    frozen_instance(ChatMessage, {"role": m["role"], "text": message_text(m)})
                    for m in messages
                ],
                "instructions": run.obj["instructions"] or None,
                "tools": tools,
                "tool_choice": run.obj["tool_choice"],
                "parallel_tool_calls": run.obj["parallel_tool_calls"],
                "exchanges": list(run.exchanges),
                "json_mode": json_mode,
                "json_schema": schema,
            },
        )

    def _budget(self, run: RunState) -> int | None:
        limit = run.obj["max_completion_tokens"]
        if limit is None:
            return None
        used = run.obj["usage"]["completion_tokens"] if run.obj["usage"] else 0
        return max(int(limit) - used, 0)

    async def _message(self, run: RunState, sink: Sink, turn: Turn) -> None:
        pieces = turn.text_pieces()
        reason = turn.incomplete_reason if turn.kind == "incomplete" else None
        budget = self._budget(run)
        if budget is not None and len(pieces) > budget:
            pieces, reason = pieces[:budget], "max_completion_tokens"
        message = self._new_assistant_message(run)
        run.streamed = []
        step = self._new_step(
            run,
            "message_creation",
            {"type": "message_creation", "message_creation": {"message_id": message["id"]}},
        )
        # Both are sent again when done: their fixed fields are encoded once.
        step_json_now = partial(step_json, step, step_frames(step))
        message_json_now = partial(message_json, message, message_frames(message))
        sink.emit_encoded("thread.run.step.created", step_json_now)
        sink.emit_again("thread.run.step.in_progress")
        sink.emit_encoded("thread.message.created", message_json_now)
        sink.emit_again("thread.message.in_progress")
        delay = self.delta_delay_s if turn.delta_delay_s is None else turn.delta_delay_s
        if not (
            self._send_text(run, sink, message["id"], pieces)
            if delay <= 0
            else await self._stream_text(run, sink, delay, message["id"], pieces)
        ):
            await self._stopped(run, sink)
            return
        message["content"] = [text_part("".join(pieces))]
        self._complete_step(step, turn.prompt_tokens, len(pieces))
        self._add_usage(run, turn.prompt_tokens, len(pieces))
        run.message = None
        if reason is None:
            message["status"], message["completed_at"] = "completed", now()
            sink.emit_encoded("thread.message.completed", message_json_now)
            sink.emit_encoded("thread.run.step.completed", step_json_now)
            self._end(run, sink, "completed")
            return
        message["status"], message["incomplete_at"] = "incomplete", now()
        message["incomplete_details"] = {"reason": "max_tokens"}
        sink.emit_encoded("thread.message.incomplete", message_json_now)
        sink.emit_encoded("thread.run.step.completed", step_json_now)
        self._end(run, sink, "incomplete", reason=reason)

    @staticmethod
    async def _stream_text(
        run: RunState, sink: Sink, delay: float, message_id: str, pieces: list[str]
    ) -> bool:
        """Emit the text deltas ``delay`` seconds apart; False if the run was stopped
        (cancelled) meanwhile."""
        head = text_delta_head(message_id)
        for index, piece in enumerate(pieces):
            await sink.flush()
            await asyncio.sleep(delay)
            if run.status != "in_progress":
                return False
            run.streamed.append(piece)
            sink.emit_raw(text_delta_event(head, piece, first=index == 0))
        return run.status == "in_progress"

    @staticmethod
    def _send_text(run: RunState, sink: Sink, message_id: str, pieces: list[str]) -> bool:
        """Emit the text deltas of a turn without delays at once (no coroutine: nothing else
        runs until the text is out, so the status checked once holds); False if the run was
        stopped (cancelled) before."""
        if run.status != "in_progress":
            return False
        run.streamed += pieces
        if not pieces:
            return True
        emit = sink.emit_raw
        # text_delta_event's bytes, inline: a stream has one a word.
        head = _TEXT_DELTA_HEAD + text_delta_head(message_id)
        emit(b"".join((head, _escape_json_str(pieces[0]).encode(), _FIRST_DELTA_TAIL)))
        for piece in pieces[1:]:
            emit(b"".join((head, _escape_json_str(piece).encode(), _DELTA_TAIL)))
        return True

    async def _tool_calls(self, run: RunState, sink: Sink, turn: Turn) -> None:
        budget = self._budget(run)
        completion_tokens = turn.completion_tokens
        if budget is not None and completion_tokens > budget:
            self._add_usage(run, turn.prompt_tokens, budget)
            self._end(run, sink, "incomplete", reason="max_completion_tokens")
            return
        step = self._new_step(run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
        sink.emit_encoded("thread.run.step.created", partial(step_json, step))
        sink.emit_again("thread.run.step.in_progress")
        calls = await self._stream_calls(run, sink, turn, step["id"])
        if calls is None or await self._stopped(run, sink):
            return
        step["step_details"]["tool_calls"] = calls
        run.pending_step = step
        run.pending_usage = (turn.prompt_tokens, completion_tokens)
        self._add_usage(run, turn.prompt_tokens, completion_tokens)
        run.obj["required_action"] = _required_action(calls)
        run.obj["status"] = "requires_action"
        run.expiry = self.spawn(self._expire_later(run))
        self.stats["requires_action"] += 1
        sink.emit_encoded("thread.run.requires_action", run.encoded)

    async def _stream_calls(
        self, run: RunState, sink: Sink, turn: Turn, step_id: str
    ) -> list[Obj] | None:
        """Emit each call as step deltas (id and name, then argument pieces).

        Returns:
            The step's tool calls, or None if the run was stopped meanwhile (already reported).
        """
        delay = self.delta_delay_s if turn.delta_delay_s is None else turn.delta_delay_s
        calls: list[Obj] = []
        for index, planned in enumerate(turn.calls):
            call_id = self.ids.new("call")
            function = {"name": planned.name, "arguments": "", "output": None}
            first = {"index": index, "id": call_id, "type": "function", "function": function}
            sink.emit("thread.run.step.delta", _step_delta(step_id, first))
            for piece in argument_pieces(planned.arguments):
                if delay > 0:
                    await sink.flush()
                    await asyncio.sleep(delay)
                if run.status != "in_progress":
                    await self._stopped(run, sink)
                    return None
                fragment = {"index": index, "type": "function", "function": {"arguments": piece}}
                sink.emit("thread.run.step.delta", _step_delta(step_id, fragment))
            function = {"name": planned.name, "arguments": planned.arguments, "output": None}
            calls.append({"id": call_id, "type": "function", "function": function})
        return calls

    # -- tool outputs, cancel, expiry -------------------------------------------------------

    def accept_outputs(self, run: RunState, outputs: Any) -> Obj:
        """Validate and record a batch of tool outputs; return the tool step to complete."""
        by_id = _check_outputs(run, outputs)
        step = run.pending_step
        assert step is not None  # _check_outputs ensured requires_action
        for call in step["step_details"]["tool_calls"]:
            call["function"]["output"] = by_id[call["id"]]
            run.exchanges.append(
                frozen_instance(
                    ToolExchange,
                    {
                        "call_id": call["id"],
                        "name": call["function"]["name"],
                        "arguments": call["function"]["arguments"],
                        "output": by_id[call["id"]],
                    },
                )
            )
        self._complete_step(step, *run.pending_usage)
        run.pending_step = None
        run.obj["required_action"] = None
        run.obj["status"] = "queued"
        self._cancel_expiry(run)
        self.stats["tool_output_submissions"] += 1
        return step

    def cancel(self, run: RunState) -> None:
        """Move a run to ``cancelling``; it becomes ``cancelled`` shortly after."""
        if run.status not in CANCELLABLE:
            raise invalid(f"Cannot cancel run with status '{run.status}'.")
        run.obj["status"] = "cancelling"
        self._cancel_expiry(run)
        self.spawn(self._finish_cancel(run))

    async def _finish_cancel(self, run: RunState) -> None:
        await asyncio.sleep(self.cancel_delay_s)
        if run.status != "cancelling":
            return
        stamp = now()
        for step in run.steps.values():
            if step["status"] == "in_progress":
                step["status"], step["cancelled_at"] = "cancelled", stamp
        message = run.message
        if message is not None and message["status"] == "in_progress":
            message["status"], message["incomplete_at"] = "incomplete", stamp
            message["incomplete_details"] = {"reason": "run_cancelled"}
            if run.streamed:  # what the client already saw stays in the stored message
                message["content"] = [text_part("".join(run.streamed))]
        run.obj["required_action"] = None
        run.obj["cancelled_at"] = stamp
        self._finish(run, "cancelled")

    async def _expire_later(self, run: RunState) -> None:
        await asyncio.sleep(max(run.deadline - asyncio.get_running_loop().time(), 0.0))
        if run.status != "requires_action":
            return
        for step in run.steps.values():
            if step["status"] == "in_progress":
                step["status"] = "expired"
        run.obj["required_action"] = None
        run.pending_step = None
        run.expiry = None
        self._finish(run, "expired", keep_expires_at=True)

    def _cancel_expiry(self, run: RunState) -> None:
        if run.expiry is not None and run.expiry is not asyncio.current_task():
            run.expiry.cancel()
        run.expiry = None

    async def _stopped(self, run: RunState, sink: Sink) -> bool:
        """If the run was cancelled or ended meanwhile, emit its end to the sink; else False."""
        status = run.status
        if status in _RUNNING:
            return False
        if status == "cancelling":
            sink.emit_encoded("thread.run.cancelling", run.encoded)
            await sink.flush()
            await run.finished.wait()
            for step in run.steps.values():
                if step["status"] == "cancelled":
                    sink.emit_encoded("thread.run.step.cancelled", partial(step_json, step))
            message = run.message
            if message is not None and message["incomplete_details"] == _CANCELLED_MESSAGE:
                sink.emit_encoded("thread.message.incomplete", partial(message_json, message))
        sink.emit_encoded(f"thread.run.{run.status}", run.encoded)
        return True

    # -- helpers ----------------------------------------------------------------------------

    def _new_assistant_message(self, run: RunState) -> Obj:
        message = message_obj(
            self.ids.new("msg"),
            now(),
            run.thread.obj["id"],
            role="assistant",
            content=[],
            run_id=run.obj["id"],
            assistant_id=run.obj["assistant_id"],
            status="in_progress",
        )
        run.thread.messages[message["id"]] = message
        run.message = message
        return message

    def _new_step(self, run: RunState, step_type: str, details: Obj) -> Obj:
        step = step_obj(self.ids.new("step"), now(), run.obj, step_type, details)
        run.steps[step["id"]] = step
        return step

    @staticmethod
    def _complete_step(step: Obj, prompt_tokens: int, completion_tokens: int) -> None:
        step["status"], step["completed_at"] = "completed", now()
        step["usage"] = usage_obj(prompt_tokens, completion_tokens)

    @staticmethod
    def _add_usage(run: RunState, prompt_tokens: int, completion_tokens: int) -> None:
        usage = run.obj["usage"]
        if usage is not None:
            prompt_tokens += usage["prompt_tokens"]
            completion_tokens += usage["completion_tokens"]
        run.obj["usage"] = usage_obj(prompt_tokens, completion_tokens)

    def _end(
        self,
        run: RunState,
        sink: Sink,
        status: str,
        *,
        reason: str | None = None,
        error: Obj | None = None,
    ) -> None:
        stamp = now()
        if status == "completed":
            run.obj["completed_at"] = stamp
        elif status == "failed":
            run.obj["failed_at"], run.obj["last_error"] = stamp, error
        elif status == "incomplete":
            run.obj["incomplete_details"] = {"reason": reason}
        if run.obj["usage"] is None:
            run.obj["usage"] = usage_obj(0, 0)
        self._finish(run, status)
        sink.emit_encoded(f"thread.run.{status}", run.encoded)

    def _finish(self, run: RunState, status: str, *, keep_expires_at: bool = False) -> None:
        run.obj["status"] = status
        if not keep_expires_at:
            run.obj["expires_at"] = None
        if run.thread.active_run is run:
            run.thread.active_run = None
        run.finished.set()
        self.stats[f"runs_{status}"] += 1


def _check_outputs(run: RunState, outputs: Any) -> dict[str, str]:
    """Outputs by tool_call_id, if they answer exactly the required calls (400 otherwise)."""
    if run.status != "requires_action" or run.pending_step is None:
        raise invalid(
            f'Runs in status "{run.status}" do not accept tool outputs.', param="tool_outputs"
        )
    if not isinstance(outputs, list):
        raise invalid(
            "Invalid type for 'tool_outputs': expected an array.",
            param="tool_outputs",
            code="invalid_type",
        )
    given: list[str] = []
    by_id: dict[str, str] = {}
    for index, item in enumerate(outputs):
        where = f"tool_outputs[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("tool_call_id"), str):
            raise invalid(
                f"Missing required parameter: '{where}.tool_call_id'.",
                param=f"{where}.tool_call_id",
                code="missing_required_parameter",
            )
        output = item.get("output", "")
        if not isinstance(output, str):
            raise invalid(
                f"Invalid type for '{where}.output': expected a string.",
                param=f"{where}.output",
                code="invalid_type",
            )
        given.append(item["tool_call_id"])
        by_id[item["tool_call_id"]] = output
    required = [c["id"] for c in run.obj["required_action"]["submit_tool_outputs"]["tool_calls"]]
    if sorted(given) != sorted(required):
        raise invalid(
            f"Expected tool outputs for call_ids {sorted(required)}, got {sorted(given)}",
            param="tool_outputs",
        )
    return by_id


def _required_action(calls: list[Obj]) -> Obj:
    """``required_action`` listing the calls without their (not yet known) outputs."""
    tool_calls = [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
        }
        for c in calls
    ]
    return {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": tool_calls}}


def _step_delta(step_id: str, tool_call: Obj) -> Obj:
    return {
        "id": step_id,
        "object": "thread.run.step.delta",
        "delta": {"step_details": {"type": "tool_calls", "tool_calls": [tool_call]}},
    }
