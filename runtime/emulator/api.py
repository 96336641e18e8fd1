"""Handlers of the Assistants API endpoints, independent of the HTTP plumbing.

Each handler takes a :class:`Call` and returns a :class:`JsonReply` or a :class:`StreamReply`
(raising :class:`~runtime.emulator.errors.ApiError` for error responses). The HTTP layer
(:mod:`runtime.emulator.http`) adds auth, faults, logging and rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from runtime.emulator import params
from runtime.emulator.engine import RunEngine, RunState, Sink, ThreadState, now
from runtime.emulator.errors import ApiError, invalid, missing, not_found
from runtime.emulator.frames import thread_json
from runtime.emulator.objects import (
    Obj,
    assistant_obj,
    check_content,
    check_metadata,
    check_role,
    check_run_options,
    page,
    thread_obj,
)
from runtime.emulator.params import check_params


@dataclass(frozen=True)
class Call:
    """One API request as the handlers see it.

    Attributes:
        body: the parsed JSON body (empty for GET/DELETE).
        params: path parameters.
        query: query string parameters.
    """

    body: Mapping[str, Any]
    params: Mapping[str, str]
    query: Mapping[str, str]


@dataclass(frozen=True)
class JsonReply:
    """A JSON response."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamReply:
    """A server-sent event stream: ``drive`` emits the events into a sink.

    Attributes:
        drive: coroutine function emitting the events.
        done: end with ``event: done`` / ``data: [DONE]`` (the Assistants API does; the
            Responses API does not).
    """

    drive: Callable[[Sink], Coroutine[Any, Any, None]]
    done: bool = True


Reply = JsonReply | StreamReply
_ASSISTANT_FIELDS = (
    "name",
    "description",
    "model",
    "instructions",
    "tools",
    "top_p",
    "temperature",
    "reasoning_effort",
    "tool_resources",
    "metadata",
    "response_format",
)


class AssistantsApi:
    """The Assistants v2 endpoints over the in-memory store."""

    def __init__(self, engine: RunEngine, *, poll_after_ms: int = 100) -> None:
        self.engine = engine
        self.store = engine.store
        self.ids = engine.ids
        self.poll_after_ms = poll_after_ms

    # -- lookups ----------------------------------------------------------------------------

    def _assistant(self, assistant_id: str) -> Obj:
        try:
            return self.store.assistants[assistant_id]
        except KeyError:
            raise not_found("assistant", assistant_id) from None

    def _thread(self, thread_id: str) -> ThreadState:
        try:
            return self.store.threads[thread_id]
        except KeyError:
            raise not_found("thread", thread_id) from None

    def _run(self, call: Call) -> RunState:
        thread = self._thread(call.params["thread_id"])
        run_id = call.params["run_id"]
        run = thread.runs.get(run_id)
        if run is None:
            raise not_found("run", run_id)
        self.store.runs.get(run_id)  # marks it used, for the retention order
        return run

    # -- assistants -------------------------------------------------------------------------

    async def create_assistant(self, call: Call) -> Reply:
        """POST /assistants."""
        check_params(call.body, params.ASSISTANT)
        if not call.body.get("model"):
            raise missing("model")
        check_metadata(call.body.get("metadata"))
        _check_tools(call.body.get("tools"))
        obj = assistant_obj(self.ids.new("asst"), now(), call.body)
        self.store.assistants[obj["id"]] = obj
        return JsonReply(obj)

    async def list_assistants(self, call: Call) -> Reply:
        """GET /assistants."""
        return JsonReply(page(list(self.store.assistants.values()), call.query))

    async def get_assistant(self, call: Call) -> Reply:
        """GET /assistants/{id}."""
        return JsonReply(self._assistant(call.params["assistant_id"]))

    async def update_assistant(self, call: Call) -> Reply:
        """POST /assistants/{id}."""
        check_params(call.body, params.ASSISTANT)
        obj = self._assistant(call.params["assistant_id"])
        check_metadata(call.body.get("metadata"))
        _check_tools(call.body.get("tools"))
        updatable = _ASSISTANT_FIELDS
        obj.update({k: call.body[k] for k in updatable if k in call.body})
        self.engine.forget_assistant(obj["id"])
        return JsonReply(obj)

    async def delete_assistant(self, call: Call) -> Reply:
        """DELETE /assistants/{id}."""
        obj = self._assistant(call.params["assistant_id"])
        del self.store.assistants[obj["id"]]
        self.engine.forget_assistant(obj["id"])
        return JsonReply({"id": obj["id"], "object": "assistant.deleted", "deleted": True})

    # -- threads ----------------------------------------------------------------------------

    def _new_thread(self, body: Mapping[str, Any], prefix: str = "") -> ThreadState:
        check_params(body, params.THREAD_CREATE, prefix)
        check_metadata(body.get("metadata"))
        messages = [_check_message(m, f"messages[{i}]") for i, m in enumerate(_messages(body))]
        thread = ThreadState(obj=thread_obj(self.ids.new("thread"), now(), body))
        self.store.threads[thread.obj["id"]] = thread
        for message in messages:
            self.engine.add_message(thread, message)
        return thread

    async def create_thread(self, call: Call) -> Reply:
        """POST /threads."""
        return JsonReply(self._new_thread(call.body).obj)

    async def get_thread(self, call: Call) -> Reply:
        """GET /threads/{id}."""
        return JsonReply(self._thread(call.params["thread_id"]).obj)

    async def update_thread(self, call: Call) -> Reply:
        """POST /threads/{id} (metadata, tool_resources)."""
        check_params(call.body, params.THREAD_UPDATE)
        thread = self._thread(call.params["thread_id"])
        if "metadata" in call.body:
            thread.obj["metadata"] = check_metadata(call.body["metadata"])
        if "tool_resources" in call.body:
            thread.obj["tool_resources"] = call.body["tool_resources"] or {}
        return JsonReply(thread.obj)

    async def delete_thread(self, call: Call) -> Reply:
        """DELETE /threads/{id}."""
        thread = self._thread(call.params["thread_id"])
        del self.store.threads[thread.obj["id"]]
        return JsonReply({"id": thread.obj["id"], "object": "thread.deleted", "deleted": True})

    # -- messages ---------------------------------------------------------------------------

    async def create_message(self, call: Call) -> Reply:
        """POST /threads/{id}/messages (refused while a run is active)."""
        check_params(call.body, params.MESSAGE_CREATE)
        thread = self._thread(call.params["thread_id"])
        message = _check_message(call.body, None)
        if thread.active_run is not None:
            raise invalid(
                f"Can't add messages to {thread.obj['id']} while a run "
                f"{thread.active_run.obj['id']} is active."
            )
        return JsonReply(self.engine.add_message(thread, message))

    async def list_messages(self, call: Call) -> Reply:
        """GET /threads/{id}/messages (optional run_id filter)."""
        thread = self._thread(call.params["thread_id"])
        items = list(thread.messages.values())
        run_id = call.query.get("run_id")
        if run_id:
            items = [m for m in items if m["run_id"] == run_id]
        return JsonReply(page(items, call.query))

    def _message(self, call: Call) -> tuple[ThreadState, Obj]:
        thread = self._thread(call.params["thread_id"])
        message_id = call.params["message_id"]
        try:
            return thread, thread.messages[message_id]
        except KeyError:
            raise not_found("message", message_id) from None

    async def get_message(self, call: Call) -> Reply:
        """GET /threads/{id}/messages/{id}."""
        return JsonReply(self._message(call)[1])

    async def update_message(self, call: Call) -> Reply:
        """POST /threads/{id}/messages/{id} (metadata)."""
        check_params(call.body, params.METADATA_ONLY)
        _, message = self._message(call)
        if "metadata" in call.body:
            message["metadata"] = check_metadata(call.body["metadata"])
        return JsonReply(message)

    async def delete_message(self, call: Call) -> Reply:
        """DELETE /threads/{id}/messages/{id}."""
        thread, message = self._message(call)
        del thread.messages[message["id"]]
        return JsonReply({"id": message["id"], "object": "thread.message.deleted", "deleted": True})

    # -- runs -------------------------------------------------------------------------------

    def _check_run_body(self, body: Mapping[str, Any]) -> Obj:
        assistant_id = body.get("assistant_id")
        if not assistant_id:
            raise missing("assistant_id")
        assistant = self._assistant(str(assistant_id))
        check_run_options(body)
        _check_tools(body.get("tools"))
        for index, raw in enumerate(body.get("additional_messages") or []):
            _check_message(raw, f"additional_messages[{index}]")
        return assistant

    async def create_run(self, call: Call) -> Reply:
        """POST /threads/{id}/runs (one active run per thread)."""
        check_params(call.body, params.RUN_CREATE)
        thread = self._thread(call.params["thread_id"])
        assistant = self._check_run_body(call.body)
        if thread.active_run is not None:
            raise invalid(
                f"Thread {thread.obj['id']} already has an active run "
                f"{thread.active_run.obj['id']}."
            )
        body = dict(call.body)
        body["additional_messages"] = [
            _check_message(m, None) for m in call.body.get("additional_messages") or []
        ]
        run = self.engine.create_run(thread, assistant, body)
        return self._run_reply(run, call.body, thread_created=None)

    async def create_thread_and_run(self, call: Call) -> Reply:
        """POST /threads/runs: thread.created comes first on the stream."""
        check_params(call.body, params.THREAD_AND_RUN)
        assistant = self._check_run_body(call.body)
        thread_body = call.body.get("thread") or {}
        if type(thread_body) is not dict and not isinstance(thread_body, Mapping):
            raise invalid("Invalid type for 'thread': expected an object.", param="thread")
        thread = self._new_thread(thread_body, prefix="thread.")
        run = self.engine.create_run(thread, assistant, call.body)
        return self._run_reply(run, call.body, thread_created=thread.obj)

    def _run_reply(
        self, run: RunState, body: Mapping[str, Any], thread_created: Obj | None
    ) -> Reply:
        if not body.get("stream"):
            self.engine.drive_in_background(run)
            return JsonReply(run.obj)

        async def drive(sink: Sink) -> None:
            if thread_created is not None:
                sink.emit_encoded("thread.created", partial(thread_json, thread_created))
            await self.engine.start(run, sink)

        return StreamReply(drive)

    async def list_runs(self, call: Call) -> Reply:
        """GET /threads/{id}/runs."""
        thread = self._thread(call.params["thread_id"])
        return JsonReply(page([r.obj for r in thread.runs.values()], call.query))

    async def get_run(self, call: Call) -> Reply:
        """GET /threads/{id}/runs/{id} (with ``openai-poll-after-ms``)."""
        run = self._run(call)
        return JsonReply(run.obj, headers={"openai-poll-after-ms": str(self.poll_after_ms)})

    async def update_run(self, call: Call) -> Reply:
        """POST /threads/{id}/runs/{id} (metadata)."""
        check_params(call.body, params.METADATA_ONLY)
        run = self._run(call)
        if "metadata" in call.body:
            run.obj["metadata"] = check_metadata(call.body["metadata"])
        return JsonReply(run.obj)

    async def cancel_run(self, call: Call) -> Reply:
        """POST /threads/{id}/runs/{id}/cancel."""
        run = self._run(call)
        self.engine.cancel(run)
        return JsonReply(run.obj)

    async def submit_tool_outputs(self, call: Call) -> Reply:
        """POST /threads/{id}/runs/{id}/submit_tool_outputs (all outputs in one batch)."""
        check_params(call.body, params.SUBMIT_OUTPUTS)
        run = self._run(call)
        if "tool_outputs" not in call.body:
            raise missing("tool_outputs")
        step = self.engine.accept_outputs(run, call.body["tool_outputs"])
        if not call.body.get("stream"):
            self.engine.drive_in_background(run, step)
            return JsonReply(run.obj)

        async def drive(sink: Sink) -> None:
            await self.engine.resume(run, sink, step)

        return StreamReply(drive)

    async def list_steps(self, call: Call) -> Reply:
        """GET /threads/{id}/runs/{id}/steps."""
        run = self._run(call)
        return JsonReply(page(list(run.steps.values()), call.query))

    async def get_step(self, call: Call) -> Reply:
        """GET /threads/{id}/runs/{id}/steps/{id}."""
        run = self._run(call)
        step_id = call.params["step_id"]
        try:
            return JsonReply(run.steps[step_id])
        except KeyError:
            raise not_found("run step", step_id) from None


def _messages(body: Mapping[str, Any]) -> list[Any]:
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise invalid("Invalid type for 'messages': expected an array.", param="messages")
    return messages


def _check_message(raw: Any, where: str | None) -> Obj:
    """Validate a message create body; returns role, content parts, attachments, metadata."""
    prefix = f"{where}." if where else ""
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise invalid(f"Invalid type for '{where}': expected an object.", param=where)
    if "role" not in raw:
        raise missing(f"{prefix}role")
    if "content" not in raw:
        raise missing(f"{prefix}content")
    try:
        role = check_role(raw["role"])
        content = check_content(raw["content"], f"{prefix}content")
        metadata = check_metadata(raw.get("metadata"), f"{prefix}metadata")
    except ApiError as exc:
        if where and exc.param and not exc.param.startswith(prefix):
            exc.param = prefix + exc.param
        raise
    return {
        "role": role,
        "content": content,
        "attachments": raw.get("attachments") or [],
        "metadata": metadata,
    }


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid("Invalid type for 'tools': expected an array.", param="tools")
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or tool.get("type") not in {
            "function",
            "code_interpreter",
            "file_search",
        }:
            raise invalid(
                f"Invalid value for 'tools[{index}].type'.",
                param=f"tools[{index}].type",
                code="invalid_value",
            )
        if tool["type"] == "function":
            function = tool.get("function")
            if not isinstance(function, Mapping) or not function.get("name"):
                raise missing(f"tools[{index}].function.name")
