"""The Responses API front end of the emulator: ``/v1/responses`` with the same scripted model.

It shares the :class:`~runtime.emulator.engine.RunEngine`'s model, ids, counters and task
ownership with the Assistants front end, and its routes go through the same HTTP plumbing,
so auth (OpenAI and Azure style), the request log and every fault (429/500/503, reset,
reset_after, 500_after, cut, stall, slow) apply unchanged.

What it implements:

* ``POST /responses``: string or item ``input`` (messages, ``function_call`` and
  ``function_call_output`` items), ``previous_response_id`` chaining (every function call of the
  previous response needs exactly one output, as the service demands), ``instructions``,
  flat function ``tools``, ``tool_choice``, ``parallel_tool_calls``, ``max_output_tokens``
  (status ``incomplete``, reason ``max_output_tokens``), ``text.format`` json modes,
  ``store`` and ``background``; streamed (``response.created`` ... ``response.completed``, with
  ``sequence_number``) or not;
* ``GET /responses/{id}`` (stored responses; ``openai-poll-after-ms`` hint),
  ``POST /responses/{id}/cancel`` (background responses only) and ``DELETE /responses/{id}``.

A streamed response whose client goes away keeps running and is stored when it ends, which is
what lets a client recover a lost stream by retrieving the response. Streams end after the
terminal event without ``data: [DONE]``, as the service's do (an older shared SSE writer that
always sends it is tolerated by both our client and the official SDK).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.emulator.api import Call, JsonReply, Reply, StreamReply
from runtime.emulator.engine import NullSink, RunEngine, Sink
from runtime.emulator.errors import ApiError, invalid, missing
from runtime.emulator.model import (
    ChatMessage,
    FunctionSpec,
    ModelInput,
    ToolExchange,
    Turn,
    argument_pieces,
)
from runtime.emulator.objects import DEFAULT_MODEL, Obj, check_metadata

Handler = Callable[[Call], Awaitable[Reply]]
ACTIVE = frozenset({"queued", "in_progress"})
# Scenario files speak Assistants' reason; the Responses API calls it max_output_tokens.
_REASONS = {"max_completion_tokens": "max_output_tokens", "max_tokens": "max_output_tokens"}
# Responses streams end without ``[DONE]``, when the shared SSE writer can be told so.
_NO_DONE: dict[str, Any] = (
    {"done": False} if "done" in {f.name for f in dataclasses.fields(StreamReply)} else {}
)


@dataclass(eq=False)
class ResponseState:
    """A response: its wire object, the conversation it saw and its driving state."""

    obj: Obj
    items: list[Obj]
    stored: bool
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> str:
        """Current status."""
        return str(self.obj["status"])


class ResponsesApi:
    """The Responses endpoints over the emulator's engine (model, ids, counters, tasks).

    Args:
        engine: the emulator's run engine (shared with the Assistants front end).
        poll_after_ms: value of ``openai-poll-after-ms`` on retrieval.
    """

    def __init__(self, engine: RunEngine, *, poll_after_ms: int = 100) -> None:
        self.engine = engine
        self.ids = engine.ids
        self.stats = engine.stats
        self.poll_after_ms = poll_after_ms
        self.responses: dict[str, ResponseState] = {}

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) triples to mount under ``/v1`` and ``/openai``."""
        return [
            ("POST", "/responses", self.create),
            ("GET", "/responses/{response_id}", self.get),
            ("DELETE", "/responses/{response_id}", self.delete),
            ("POST", "/responses/{response_id}/cancel", self.cancel),
        ]

    # -- endpoints --------------------------------------------------------------------------

    async def create(self, call: Call) -> Reply:
        """POST /responses."""
        body = call.body
        if not body.get("model"):
            raise missing("model")
        history = self._history(body)
        items = history + _input_items(body.get("input"))
        state = self._new_state(body, items)
        if body.get("stream"):

            async def drive(sink: Sink) -> None:
                await self._drive(state, sink)

            return StreamReply(drive, **_NO_DONE)
        if state.obj["background"]:
            snapshot = copy.deepcopy(state.obj)
            self.engine.spawn(self._drive(state, NullSink()))
            return JsonReply(snapshot)
        await self._drive(state, NullSink())
        return JsonReply(state.obj)

    async def get(self, call: Call) -> Reply:
        """GET /responses/{id}."""
        state = self._lookup(call.params["response_id"])
        return JsonReply(state.obj, headers={"openai-poll-after-ms": str(self.poll_after_ms)})

    async def delete(self, call: Call) -> Reply:
        """DELETE /responses/{id}."""
        state = self._lookup(call.params["response_id"])
        del self.responses[state.obj["id"]]
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
        return JsonReply(state.obj)

    # -- request checks ---------------------------------------------------------------------

    def _lookup(self, response_id: str) -> ResponseState:
        state = self.responses.get(response_id)
        if state is None:
            raise ApiError(404, f"Response with id '{response_id}' not found.")
        return state

    def _history(self, body: Mapping[str, Any]) -> list[Obj]:
        """The chained conversation of ``previous_response_id``, checking the tool outputs."""
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
        _check_outputs(previous.obj["output"], _input_items(body.get("input")))
        output: list[Obj] = copy.deepcopy(previous.obj["output"])
        return previous.items + output

    def _new_state(self, body: Mapping[str, Any], items: list[Obj]) -> ResponseState:
        tools = _check_tools(body.get("tools"))
        background = bool(body.get("background"))
        store = body.get("store", True) is not False
        if background and not store:
            raise invalid("Background responses require store=true.", param="store")
        limit = body.get("max_output_tokens")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise invalid(
                "Invalid 'max_output_tokens': expected a positive integer.",
                param="max_output_tokens",
            )
        obj = _response_obj(self.ids.new("resp"), body, tools, background, store)
        state = ResponseState(obj=obj, items=items, stored=store)
        if store:
            self.responses[obj["id"]] = state
        self.stats["responses_created"] += 1
        return state

    # -- driving ----------------------------------------------------------------------------

    async def _drive(self, state: ResponseState, sink: Sink) -> None:
        emit = _Emitter(sink)
        await emit("response.created", response=state.obj)
        if state.obj["background"]:
            await emit("response.queued", response=state.obj)
        if not self._running(state):
            return
        state.obj["status"] = "in_progress"
        await emit("response.in_progress", response=state.obj)
        turn = self.engine.model.decide(self._model_input(state))
        if turn.delay_s > 0:
            await emit.pause(turn.delay_s)
        if not self._running(state):
            return
        if turn.kind == "fail":
            self._add_usage(state, turn.prompt_tokens, 0)
            state.obj["error"] = {"code": turn.error_code, "message": turn.error_message}
            await self._end(state, emit, "failed")
        elif turn.kind == "tool_calls":
            await self._function_calls(state, emit, turn)
        else:
            await self._message(state, emit, turn)

    def _running(self, state: ResponseState) -> bool:
        return state.status in ACTIVE

    def _model_input(self, state: ResponseState) -> ModelInput:
        obj = state.obj
        messages, system = _conversation(state.items)
        instructions = "\n".join(filter(None, [obj["instructions"], *system])) or None
        tools = [
            FunctionSpec(str(t["name"]), t.get("parameters") or {})
            for t in obj["tools"]
            if t.get("type") == "function"
        ]
        text_format = (obj["text"] or {}).get("format") or {}
        return ModelInput(
            messages=messages,
            instructions=instructions,
            tools=tools,
            tool_choice=_assistants_tool_choice(obj["tool_choice"]),
            parallel_tool_calls=obj["parallel_tool_calls"],
            exchanges=_exchanges(state.items),
            json_mode=text_format.get("type") in {"json_object", "json_schema"},
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
        where = {"item_id": item["id"], "output_index": index}
        await emit("response.output_item.added", output_index=index, item=item)
        part: Obj = {"type": "output_text", "text": "", "annotations": []}
        await emit("response.content_part.added", **where, content_index=0, part=part)
        delay = self.engine.delta_delay_s if turn.delta_delay_s is None else turn.delta_delay_s
        for piece in pieces:
            if delay > 0:
                await emit.pause(delay)
            if not self._running(state):
                return
            await emit(
                "response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[]
            )
        part["text"] = "".join(pieces)
        await emit(
            "response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[]
        )
        item["content"] = [part]
        await emit("response.content_part.done", **where, content_index=0, part=part)
        item["status"] = "completed" if reason is None else "incomplete"
        await emit("response.output_item.done", output_index=index, item=item)
        self._add_usage(state, turn.prompt_tokens, len(pieces))
        if reason is None:
            await self._end(state, emit, "completed")
        else:
            state.obj["incomplete_details"] = {"reason": reason}
            await self._end(state, emit, "incomplete")

    async def _function_calls(self, state: ResponseState, emit: _Emitter, turn: Turn) -> None:
        budget = state.obj["max_output_tokens"]
        if budget is not None and turn.completion_tokens > budget:
            self._add_usage(state, turn.prompt_tokens, budget)
            state.obj["incomplete_details"] = {"reason": "max_output_tokens"}
            await self._end(state, emit, "incomplete")
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
            await emit("response.output_item.added", output_index=index, item=item)
            where = {"item_id": item["id"], "output_index": index}
            for piece in argument_pieces(planned.arguments):
                if delay > 0:
                    await emit.pause(delay)
                if not self._running(state):
                    return
                await emit("response.function_call_arguments.delta", **where, delta=piece)
            item["arguments"] = planned.arguments
            await emit(
                "response.function_call_arguments.done", **where, arguments=item["arguments"]
            )
            item["status"] = "completed"
            await emit("response.output_item.done", output_index=index, item=item)
        self._add_usage(state, turn.prompt_tokens, turn.completion_tokens)
        self.stats["responses_function_calls"] += len(turn.calls)
        await self._end(state, emit, "completed")

    @staticmethod
    def _add_usage(state: ResponseState, input_tokens: int, output_tokens: int) -> None:
        state.obj["usage"] = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }

    async def _end(self, state: ResponseState, emit: _Emitter, status: str) -> None:
        if state.obj["usage"] is None:
            self._add_usage(state, 0, 0)
        self._finish(state, status)
        await emit(f"response.{status}", response=state.obj)

    def _finish(self, state: ResponseState, status: str) -> None:
        state.obj["status"] = status
        if status == "completed":
            state.obj["completed_at"] = int(time.time())
        state.finished.set()
        self.stats[f"responses_{status}"] += 1


class _Emitter:
    """Sends one Responses event: ``type`` and ``sequence_number`` added to the fields."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.counter = itertools.count()

    async def __call__(self, name: str, **fields: Any) -> None:
        await self.sink.emit(name, {"type": name, "sequence_number": next(self.counter), **fields})

    async def pause(self, seconds: float) -> None:
        """Push out what the sink buffered (when it buffers), then wait."""
        flush = getattr(self.sink, "flush", None)
        if flush is not None:
            await flush()
        await asyncio.sleep(seconds)


# -- request shapes ----------------------------------------------------------------------------


def _response_obj(
    response_id: str, body: Mapping[str, Any], tools: list[Obj], background: bool, store: bool
) -> Obj:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "queued" if background else "in_progress",
        "background": background,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model") or DEFAULT_MODEL,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": store,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": tools,
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation") or "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": check_metadata(body.get("metadata")),
    }


def _input_items(raw: Any) -> list[Obj]:
    """Normalise ``input``: a string becomes one user message; items are checked."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [_user_message(raw)]
    if not isinstance(raw, list):
        raise invalid("Invalid type for 'input': expected a string or an array.", param="input")
    return [_input_item(i, item) for i, item in enumerate(raw)]


def _user_message(text: str) -> Obj:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _input_item(index: int, item: Any) -> Obj:
    where = f"input[{index}]"
    if not isinstance(item, Mapping):
        raise invalid(f"Invalid type for '{where}': expected an object.", param=where)
    kind = item.get("type", "message")
    if kind == "message":
        if item.get("role") not in {"user", "assistant", "system", "developer"}:
            raise invalid(f"Invalid value for '{where}.role'.", param=f"{where}.role")
        if not isinstance(item.get("content"), str | list):
            raise missing(f"{where}.content")
        return {**item, "type": "message"}
    if kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise missing(f"{where}.call_id")
        if not isinstance(item.get("output"), str):
            raise invalid(
                f"Invalid type for '{where}.output': expected a string.",
                param=f"{where}.output",
                code="invalid_type",
            )
        return dict(item)
    if kind == "function_call":
        return dict(item)
    raise invalid(f"Invalid value for '{where}.type': {kind!r}.", param=f"{where}.type")


def _check_outputs(previous_output: list[Obj], items: list[Obj]) -> None:
    """Every function call of the previous response needs one output; no unknown call ids."""
    expected = {i["call_id"] for i in previous_output if i.get("type") == "function_call"}
    given = [i["call_id"] for i in items if i.get("type") == "function_call_output"]
    for call_id in given:
        if call_id not in expected:
            raise invalid(
                f"No tool call found for function call output with call_id {call_id}.",
                param="input",
            )
    for call_id in sorted(expected - set(given)):
        raise invalid(f"No tool output found for function call {call_id}.", param="input")


def _check_tools(tools: Any) -> list[Obj]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("Invalid type for 'tools': expected an array.", param="tools")
    out = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("type"), str):
            raise missing(f"tools[{index}].type")
        if tool["type"] == "function" and not tool.get("name"):
            raise missing(f"tools[{index}].name")
        out.append(dict(tool))
    return out


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [p.get("text") for p in content if isinstance(p, Mapping)]
    return "\n".join(p for p in parts if isinstance(p, str))


def _conversation(items: list[Obj]) -> tuple[list[ChatMessage], list[str]]:
    """User/assistant messages, and system/developer texts (they join the instructions)."""
    messages: list[ChatMessage] = []
    system: list[str] = []
    for item in items:
        if item.get("type") != "message":
            continue
        text = _text_of(item.get("content") or [])
        if item.get("role") in {"system", "developer"}:
            system.append(text)
        else:
            messages.append(ChatMessage(str(item.get("role")), text))
    return messages, system


def _exchanges(items: list[Obj]) -> list[ToolExchange]:
    """Function calls answered since the last user message, with their outputs."""
    last_user = max(
        (
            i
            for i, it in enumerate(items)
            if it.get("type") == "message" and it.get("role") == "user"
        ),
        default=-1,
    )
    recent = items[last_user + 1 :]
    outputs = {i["call_id"]: i["output"] for i in recent if i.get("type") == "function_call_output"}
    return [
        ToolExchange(
            call_id=i["call_id"],
            name=str(i.get("name", "")),
            arguments=str(i.get("arguments", "")),
            output=outputs[i["call_id"]],
        )
        for i in recent
        if i.get("type") == "function_call" and i.get("call_id") in outputs
    ]


def _assistants_tool_choice(choice: Any) -> Any:
    """Responses' ``{"type": "function", "name": X}`` in the model's (Assistants) shape."""
    if isinstance(choice, Mapping) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice
