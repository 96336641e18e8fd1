"""The Responses API front end of the emulator: ``/v1/responses`` with the same scripted model.

It shares the :class:`~runtime.emulator.engine.RunEngine`'s model, ids, counters and task
ownership with the Assistants front end, and its routes go through the same HTTP plumbing,
so auth (OpenAI and Azure style), the request log and every fault (429/500/503, reset,
reset_after, 500_after, cut, stall, slow) apply unchanged.

What it implements:

* ``POST /responses``: string or item ``input`` (messages, ``function_call`` and
  ``function_call_output`` items, outputs as a string or a list of ``input_text`` /
  ``input_image`` / ``input_file`` parts), ``previous_response_id`` chaining (every function
  call of the previous response needs exactly one output, as the service demands) or a
  ``conversation`` (its items are the context; the response appends its input and output
  items; both together are a 400), ``instructions``, flat function ``tools``, ``tool_choice``
  (a forced choice forces a call in every response it is sent with), ``parallel_tool_calls``,
  ``max_output_tokens`` (at least 16; status ``incomplete``, reason ``max_output_tokens``),
  ``text.format`` (``json_object``, or ``json_schema``: the reply follows the schema),
  ``store`` and ``background``; streamed (``response.created`` ... ``response.completed``, with
  ``sequence_number``) or not. Unknown body parameters are a 400 ``unknown_parameter``;
* ``GET /responses/{id}`` (stored responses; ``openai-poll-after-ms`` hint), and for a
  background response ``GET /responses/{id}?stream=true&starting_after=N``: the events after
  sequence number N, replayed exactly from the response's event log, then live until it ends
  (a response that is not in background refuses this with a 400);
* ``GET /responses/{id}/input_items`` (``limit``, ``order``, ``after``; ``include`` accepted);
* ``POST /responses/{id}/cancel`` (background responses only: the event log ends there, without
  a terminal event, as no event type reports a cancellation) and ``DELETE /responses/{id}``.

A streamed response whose client goes away keeps running and is stored when it ends, which is
what lets a client recover a lost stream by retrieving the response. A background response is
always driven by a task of its own, so its stream (at creation or resumed) only follows its
log. Streams end after the terminal event without ``data: [DONE]``, as the service's do.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from runtime.emulator.api import Call, JsonReply, Reply, StreamReply
from runtime.emulator.conversations import ConversationsApi, ConversationState
from runtime.emulator.engine import (
    EVENT_HEADS,
    NullSink,
    RunEngine,
    Sink,
    encode_event,
    encode_json,
    event_head,
)
from runtime.emulator.errors import ApiError, invalid, missing
from runtime.emulator.frames import ResponseFrames, response_frames, response_json
from runtime.emulator.model import (
    FunctionSpec,
    ModelInput,
    Turn,
    argument_pieces,
    frozen_instance,
)
from runtime.emulator.objects import Obj, page
from runtime.emulator.params import RESPONSE_CREATE, check_params
from runtime.emulator.responses_items import (
    assistants_tool_choice,
    chat_messages,
    check_max_output_tokens,
    check_outputs,
    check_tools,
    conversation_ref,
    exchanges,
    exclusive,
    input_items,
    json_schema_of,
    pending_calls,
    response_obj,
    usage_obj,
)
from runtime.emulator.retention import DEFAULT_RETAINED, LruStore

Handler = Callable[[Call], Awaitable[Reply]]
ACTIVE = frozenset({"queued", "in_progress"})
_escape: Callable[[str], str] = json.encoder.encode_basestring_ascii
# Scenario files speak Assistants' reason; the Responses API calls it max_output_tokens.
_REASONS = {"max_completion_tokens": "max_output_tokens", "max_tokens": "max_output_tokens"}


@dataclass(eq=False, slots=True)
class ResponseState:
    """A response: its wire object, the context it saw, its inputs and its driving state.

    Attributes:
        log: the encoded events of a background response, in sequence order (None otherwise).
        log_closed: no event will be added to the log any more.
    """

    obj: Obj
    items: list[Obj]
    inputs: list[Obj]
    stored: bool
    conversation: ConversationState | None = None
    log: list[bytes] | None = None
    log_closed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> str:
        """Current status."""
        status: str = self.obj["status"]
        return status

    def record(self, chunk: bytes) -> None:
        """Append an encoded event to the log and wake the streams following it."""
        assert self.log is not None
        self.log.append(chunk)
        self._wake_followers()

    def close_log(self) -> None:
        """No more events: followers end their stream once they sent what is logged."""
        self.log_closed = True
        self._wake_followers()

    def _wake_followers(self) -> None:
        self.wake.set()
        self.wake = asyncio.Event()


class ResponsesApi:
    """The Responses endpoints over the emulator's engine (model, ids, counters, tasks).

    Args:
        engine: the emulator's run engine (shared with the Assistants front end).
        poll_after_ms: value of ``openai-poll-after-ms`` on retrieval.
        conversations: the Conversations front end (a private one when None).
        retained: the most responses kept (least recently used out, never a running one).
    """

    def __init__(
        self,
        engine: RunEngine,
        *,
        poll_after_ms: int = 100,
        conversations: ConversationsApi | None = None,
        retained: int | None = DEFAULT_RETAINED,
    ) -> None:
        self.engine = engine
        self.ids = engine.ids
        self.stats = engine.stats
        self.poll_after_ms = poll_after_ms
        self.conversations = conversations or ConversationsApi(engine.ids, retained=retained)
        self.responses: LruStore[ResponseState] = LruStore(
            retained, busy=lambda s: s.status in ACTIVE
        )

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) triples to mount under ``/v1`` and ``/openai``."""
        return [
            ("POST", "/responses", self.create),
            ("GET", "/responses/{response_id}", self.get),
            ("DELETE", "/responses/{response_id}", self.delete),
            ("POST", "/responses/{response_id}/cancel", self.cancel),
            ("GET", "/responses/{response_id}/input_items", self.list_input_items),
            *self.conversations.routes(),
        ]

    # -- endpoints --------------------------------------------------------------------------

    async def create(self, call: Call) -> Reply:
        """POST /responses."""
        body = call.body
        check_params(body, RESPONSE_CREATE)
        if not body.get("model"):
            raise missing("model")
        exclusive(body)
        inputs = input_items(body.get("input"), self.ids)
        conversation = self._conversation(body)
        history = self._history(body, inputs, conversation)
        state = self._new_state(body, history + inputs, inputs, conversation)
        if state.obj["background"]:
            return self._start_background(state, bool(body.get("stream")))
        if body.get("stream"):

            async def drive(sink: Sink) -> None:
                await self._drive(state, sink)

            return StreamReply(drive, done=False)
        await self._drive(state, NullSink())
        return JsonReply(state.obj)

    def _start_background(self, state: ResponseState, stream: bool) -> Reply:
        state.log = []
        snapshot = copy.deepcopy(state.obj)
        self.engine.spawn(self._drive_logged(state))
        if stream:
            return self._follow(state, -1)
        return JsonReply(snapshot)

    async def get(self, call: Call) -> Reply:
        """GET /responses/{id} (``?stream=true&starting_after=N`` resumes a background one)."""
        state = self._lookup(call.params["response_id"])
        if call.query.get("stream", "").lower() == "true":
            if state.log is None:
                raise invalid(
                    "This response cannot be streamed because it was not created with "
                    "background=true.",
                    param="stream",
                )
            return self._follow(state, _starting_after(call.query.get("starting_after")))
        return JsonReply(state.obj, headers={"openai-poll-after-ms": str(self.poll_after_ms)})

    async def list_input_items(self, call: Call) -> Reply:
        """GET /responses/{id}/input_items (cursor pagination, newest first by default)."""
        state = self._lookup(call.params["response_id"])
        return JsonReply(page(state.inputs, call.query))

    async def delete(self, call: Call) -> Reply:
        """DELETE /responses/{id}."""
        state = self._lookup(call.params["response_id"])
        self.responses.pop(state.obj["id"])
        return JsonReply({"id": state.obj["id"], "object": "response.deleted", "deleted": True})

    async def cancel(self, call: Call) -> Reply:
        """POST /responses/{id}/cancel: background responses still running (again: no-op)."""
        state = self._lookup(call.params["response_id"])
        if not state.obj["background"]:
            raise invalid("Only responses created with background=true can be cancelled.")
        if state.status == "cancelled":
            return JsonReply(state.obj)  # cancelling twice is idempotent
        if state.status not in ACTIVE:
            raise invalid(f"Cannot cancel a response with status '{state.status}'.")
        self._finish(state, "cancelled")
        state.close_log()
        return JsonReply(state.obj)

    # -- request checks ---------------------------------------------------------------------

    def _lookup(self, response_id: str) -> ResponseState:
        state = self.responses.get(response_id)
        if state is None:
            raise ApiError(404, f"Response with id '{response_id}' not found.")
        return state

    def _conversation(self, body: Mapping[str, Any]) -> ConversationState | None:
        conversation_id = conversation_ref(body.get("conversation"))
        if conversation_id is None:
            return None
        return self.conversations.lookup(conversation_id, param="conversation")

    def _history(
        self,
        body: Mapping[str, Any],
        inputs: list[Obj],
        conversation: ConversationState | None,
    ) -> list[Obj]:
        """The context before this request's input, checking the tool outputs it answers."""
        if conversation is not None:
            items = list(conversation.items.values())
            check_outputs(pending_calls(items), inputs)
            return items
        previous_id = body.get("previous_response_id")
        if previous_id is None:
            return []
        previous = self.responses.get(str(previous_id))
        if previous is None:
            raise ApiError(
                400,
                f"Previous response with id '{previous_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        if previous.status in ACTIVE:
            raise invalid(
                f"Previous response with id '{previous_id}' is still {previous.status}.",
                param="previous_response_id",
            )
        calls = [i for i in previous.obj["output"] if i.get("type") == "function_call"]
        check_outputs(calls, inputs)
        output: list[Obj] = copy.deepcopy(previous.obj["output"])
        return previous.items + output

    def _new_state(
        self,
        body: Mapping[str, Any],
        items: list[Obj],
        inputs: list[Obj],
        conversation: ConversationState | None,
    ) -> ResponseState:
        tools = check_tools(body.get("tools"))
        background = bool(body.get("background"))
        store = body.get("store", True) is not False
        if background and not store:
            raise invalid("Background responses require store=true.", param="store")
        check_max_output_tokens(body.get("max_output_tokens"))
        obj = response_obj(
            self.ids.new("resp"),
            body,
            tools,
            background=background,
            store=store,
            conversation_id=None if conversation is None else conversation.obj["id"],
        )
        state = ResponseState(
            obj=obj, items=items, inputs=inputs, stored=store, conversation=conversation
        )
        if conversation is not None:
            conversation.add(copy.deepcopy(inputs))
        if store:
            self.responses[obj["id"]] = state
        self.stats["responses_created"] += 1
        return state

    # -- streams of background responses ----------------------------------------------------

    def _follow(self, state: ResponseState, after: int) -> StreamReply:
        """A stream of the logged events after sequence number ``after``, then live ones."""

        async def drive(sink: Sink) -> None:
            assert state.log is not None
            index = max(after + 1, 0)
            while True:
                wake = state.wake
                while index < len(state.log):
                    sink.emit_raw(state.log[index])
                    index += 1
                if state.log_closed or getattr(sink, "dead", False):
                    return  # the response ended, or our client left (the response goes on)
                await sink.flush()
                await wake.wait()

        return StreamReply(drive, done=False)

    async def _drive_logged(self, state: ResponseState) -> None:
        try:
            await self._drive(state, NullSink())
        finally:
            state.close_log()

    # -- driving ----------------------------------------------------------------------------

    async def _drive(self, state: ResponseState, sink: Sink) -> None:
        emit = _Emitter(sink, state)
        emit.response("response.created")
        if state.obj["background"]:
            emit.response("response.queued")
        if not self._running(state):
            return
        state.obj["status"] = "in_progress"
        emit.response("response.in_progress")
        turn = self.engine.model.decide(self._model_input(state))
        if turn.delay_s > 0:
            await emit.pause(turn.delay_s)
        if not self._running(state):
            return
        if turn.kind == "fail":
            state.obj["usage"] = usage_obj(turn.prompt_tokens, 0)
            state.obj["error"] = {"code": turn.error_code, "message": turn.error_message}
            self._end(state, emit, "failed")
        elif turn.kind == "tool_calls":
            await self._function_calls(state, emit, turn)
        else:
            await self._message(state, emit, turn)

    def _running(self, state: ResponseState) -> bool:
        return state.status in ACTIVE

    def _model_input(self, state: ResponseState) -> ModelInput:
        obj = state.obj
        messages, system = chat_messages(state.items)
        instructions = "\n".join(filter(None, [obj["instructions"], *system])) or None
        tools = [
            frozen_instance(
                FunctionSpec, {"name": str(t["name"]), "parameters": t.get("parameters") or {}}
            )
            for t in obj["tools"]
            if t.get("type") == "function"
        ]
        text_format = (obj["text"] or {}).get("format") or {}
        choice = obj["tool_choice"]
        return frozen_instance(
            ModelInput,
            {
                "messages": messages,
                "instructions": instructions,
                "tools": tools,
                "tool_choice": assistants_tool_choice(choice),
                "parallel_tool_calls": obj["parallel_tool_calls"],
                "exchanges": exchanges(state.items),
                "json_mode": text_format.get("type") in {"json_object", "json_schema"},
                "json_schema": json_schema_of(obj["text"]),
                "forced_each_turn": choice == "required"
                or (type(choice) is not str and isinstance(choice, Mapping)),
            },
        )

    async def _message(self, state: ResponseState, emit: _Emitter, turn: Turn) -> None:
        pieces = turn.text_pieces()
        reason: str | None = None
        if turn.kind == "incomplete":
            reason = _REASONS.get(turn.incomplete_reason, turn.incomplete_reason)
        budget = state.obj["max_output_tokens"]
        if budget is not None and len(pieces) > budget:
            pieces, reason = pieces[:budget], "max_output_tokens"
        index = len(state.obj["output"])
        item: Obj = {
            "id": self.ids.new("msg"),
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        state.obj["output"].append(item)
        frames = _MessageFrames(item["id"], index)
        emit.frame("response.output_item.added", frames.added)
        part: Obj = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        emit.frame("response.content_part.added", frames.part_added)
        delay = self.engine.delta_delay_s if turn.delta_delay_s is None else turn.delta_delay_s
        where = frames.where()
        if delay <= 0:
            # Nothing else runs until the text is out, so the status checked once holds.
            if not self._running(state):
                return
            text_delta = emit.text_delta
            for piece in pieces:
                text_delta(where, piece)
        else:
            for piece in pieces:
                await emit.pause(delay)
                if not self._running(state):
                    return
                emit.text_delta(where, piece)
        part["text"] = "".join(pieces)
        item["content"] = [part]
        item["status"] = "completed" if reason is None else "incomplete"
        if not emit.unread:
            frames.finish(part["text"], item["status"])
        emit.frame("response.output_text.done", frames.text_done)
        emit.frame("response.content_part.done", frames.part_done)
        emit.item_done(index, frames.item)
        state.obj["usage"] = usage_obj(turn.prompt_tokens, len(pieces))
        if reason is None:
            self._end(state, emit, "completed")
        else:
            state.obj["incomplete_details"] = {"reason": reason}
            self._end(state, emit, "incomplete")

    async def _function_calls(self, state: ResponseState, emit: _Emitter, turn: Turn) -> None:
        budget = state.obj["max_output_tokens"]
        if budget is not None and turn.completion_tokens > budget:
            state.obj["usage"] = usage_obj(turn.prompt_tokens, budget)
            state.obj["incomplete_details"] = {"reason": "max_output_tokens"}
            self._end(state, emit, "incomplete")
            return
        delay = self.engine.delta_delay_s if turn.delta_delay_s is None else turn.delta_delay_s
        for planned in turn.calls:
            index = len(state.obj["output"])
            item: Obj = {
                "id": self.ids.new("fc"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": self.ids.new("call"),
                "name": planned.name,
            }
            state.obj["output"].append(item)
            emit("response.output_item.added", output_index=index, item=item)
            where = {"item_id": item["id"], "output_index": index}
            for piece in argument_pieces(planned.arguments):
                if delay > 0:
                    await emit.pause(delay)
                if not self._running(state):
                    return
                emit("response.function_call_arguments.delta", **where, delta=piece)
            item["arguments"] = planned.arguments
            emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
            item["status"] = "completed"
            emit.item_done(index, partial(_encoded, item))
        state.obj["usage"] = usage_obj(turn.prompt_tokens, turn.completion_tokens)
        self.stats["responses_function_calls"] += len(turn.calls)
        self._end(state, emit, "completed")

    def _end(self, state: ResponseState, emit: _Emitter, status: str) -> None:
        if state.obj["usage"] is None:
            state.obj["usage"] = usage_obj(0, 0)
        self._finish(state, status)
        if state.conversation is not None and status in {"completed", "incomplete"}:
            state.conversation.add(copy.deepcopy(state.obj["output"]))
        emit.response(f"response.{status}")

    def _finish(self, state: ResponseState, status: str) -> None:
        state.obj["status"] = status
        if status == "completed":
            state.obj["completed_at"] = int(time.time())
        state.finished.set()
        self.stats[f"responses_{status}"] += 1


def _encoded(value: Obj) -> bytes:
    return encode_json(value).encode()


def _starting_after(raw: str | None) -> int:
    if raw is None or raw == "":
        return -1
    try:
        value = int(raw)
    except ValueError:
        raise invalid(
            f"Invalid 'starting_after': expected an integer, but got '{raw}' instead.",
            param="starting_after",
            code="invalid_type",
        ) from None
    if value < -1:
        raise invalid(
            "Invalid 'starting_after': expected a sequence number >= 0.",
            param="starting_after",
            code="integer_below_min_value",
        )
    return value


class _Emitter:
    """Sends one Responses event: ``type`` and ``sequence_number`` added to the fields.

    A background response's events are encoded once, logged (for exact replay) and sent
    encoded; others go to the sink, which encodes them itself.
    """

    def __init__(self, sink: Sink, state: ResponseState) -> None:
        self.sink = sink
        self.state = state
        self.sequence = 0
        # Nobody reads the events of a response driven for a JSON reply: nothing to encode.
        self.unread = state.log is None and isinstance(sink, NullSink)
        self._frames: ResponseFrames | None = None
        self._output: list[bytes] = []  # the JSON of each finished output item, in order

    def __call__(self, name: str, **fields: Any) -> None:
        data = {"type": name, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        state = self.state
        if state.log is None:
            self.sink.emit(name, data)
            return
        if state.log_closed:
            return
        state.record(encode_event(name, data))

    def response(self, name: str) -> None:
        """An event carrying the response as it is now, byte for byte what ``__call__``
        sends: its fixed fields encoded once a response, its output from the items' JSON
        sent when they were done (when there is one for each item)."""
        obj = self.state.obj
        if self.unread:
            self(name, response=obj)
            return
        frames = self._frames
        if frames is None:
            frames = self._frames = response_frames(obj)
        output = None
        if len(self._output) == len(obj["output"]):
            output = b"[" + b",".join(self._output) + b"]"
        head = b'{"type":"%s","sequence_number":%d,"response":' % (name.encode(), self.sequence)
        self.sequence += 1
        self._send(name, b"".join((head, response_json(obj, frames, output), b"}")))

    def item_done(self, output_index: int, item: Callable[[], bytes]) -> None:
        """``response.output_item.done`` with the item ``item()`` encodes (kept for the
        response's output), byte for byte what ``__call__`` sends."""
        if self.unread:
            self.sequence += 1
            return
        encoded = item()
        self._output.append(encoded)
        self.frame(
            "response.output_item.done",
            lambda: b'"output_index":%d,"item":%b}' % (output_index, encoded),
        )

    def text_delta(self, where: bytes, piece: str) -> None:
        """A ``response.output_text.delta`` (content index 0), byte for byte what ``__call__``
        sends, with only the piece serialised (``where``: the item id and output index
        fields, encoded once an item): a response has one per word."""
        if self.unread:
            self.sequence += 1
            return
        data = b"".join(
            (
                b'{"type":"response.output_text.delta","sequence_number":',
                b"%d" % self.sequence,
                b",",
                where,
                b',"content_index":0,"delta":',
                _escape(piece).encode(),
                b',"logprobs":[]}',
            )
        )
        self.sequence += 1
        self._send("response.output_text.delta", data)

    def frame(self, name: str, fields: Callable[[], bytes]) -> None:
        """An event whose fields after ``type`` and ``sequence_number`` are already encoded
        (``fields()``: their JSON up to the closing brace), byte for byte what ``__call__``
        sends; nothing is encoded when nobody reads the events."""
        if self.unread:
            self.sequence += 1
            return
        head = b'{"type":"%s","sequence_number":%d,' % (name.encode(), self.sequence)
        self.sequence += 1
        self._send(name, head + fields())

    def _send(self, name: str, data: bytes) -> None:
        """Send (or log) one event whose data is already encoded."""
        chunk = b"".join((EVENT_HEADS.get(name) or event_head(name), data, b"\n\n"))
        state = self.state
        if state.log is None:
            self.sink.emit_raw(chunk)
        elif not state.log_closed:
            state.record(chunk)

    async def pause(self, seconds: float) -> None:
        """Push out what the sink buffered (when it buffers), then wait."""
        await self.sink.flush()
        await asyncio.sleep(seconds)


class _MessageFrames:
    """The fields of the events that add and finish an assistant message item (content
    index 0, one ``output_text`` part), encoded as :func:`encode_json` encodes the dicts
    the events carry: only the ids, the index, the text and the status vary, and the text
    is escaped once for the three events that carry it."""

    _PART_ADDED = b'"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}}'

    def __init__(self, item_id: str, output_index: int) -> None:
        self._id = _escape(item_id).encode()
        self._index = b"%d" % output_index
        self._text = b'""'
        self._status = b'"completed"'
        self._where = b"".join((b'"item_id":', self._id, b',"output_index":', self._index))

    def finish(self, text: str, status: str) -> None:
        """Record the message's final text and status."""
        self._text = _escape(text).encode()
        self._status = _escape(status).encode()

    def added(self) -> bytes:
        """``response.output_item.added``: the item, in progress, without content."""
        return b"".join(
            (
                b'"output_index":',
                self._index,
                b',"item":{"id":',
                self._id,
                b',"type":"message","status":"in_progress","role":"assistant","content":[]}}',
            )
        )

    def where(self) -> bytes:
        """The ``item_id`` and ``output_index`` fields."""
        return self._where

    def part_added(self) -> bytes:
        """``response.content_part.added``: the empty part."""
        return b"".join((self._where, b',"content_index":0,', self._PART_ADDED))

    def _part(self) -> bytes:
        return b"".join(
            (b'{"type":"output_text","text":', self._text, b',"annotations":[],"logprobs":[]}')
        )

    def text_done(self) -> bytes:
        """``response.output_text.done``: the whole text."""
        return b"".join(
            (self._where, b',"content_index":0,"text":', self._text, b',"logprobs":[]}')
        )

    def part_done(self) -> bytes:
        """``response.content_part.done``: the part with its text."""
        return b"".join((self._where, b',"content_index":0,"part":', self._part(), b"}"))

    def item(self) -> bytes:
        """The finished item, with its status and its one part."""
        return b"".join(
            (
                b'{"id":',
                self._id,
                b',"type":"message","status":',
                self._status,
                b',"role":"assistant","content":[',
                self._part(),
                b"]}",
            )
        )
