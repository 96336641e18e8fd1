"""The Assistants events built from fixed frames are byte for byte ``json.dumps`` of the live
objects they stand for, in every state a run, step, message or thread goes through."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from runtime.emulator.api import AssistantsApi, Call, JsonReply
from runtime.emulator.engine import RunEngine, RunState, Store, ThreadState
from runtime.emulator.frames import (
    message_frames,
    message_json,
    run_frames,
    run_json,
    step_frames,
    step_json,
    thread_json,
    usage_json,
    value_json,
)
from runtime.emulator.ids import IdFactory
from runtime.emulator.model import ScriptedModel
from runtime.emulator.objects import (
    RUN_OVERRIDES,
    assistant_obj,
    message_obj,
    run_from_defaults,
    run_obj,
    step_obj,
    text_part,
    thread_obj,
    usage_obj,
)
from runtime.emulator.scenario import Scenario

from .conftest import WEATHER_TOOL
from .frame_sink import TRICKY, FrameSink, dumps


class CheckingSink(FrameSink):
    """A sink that checks each event, as it is emitted, against ``json.dumps`` of the live
    object it stands for (the run, the step or message its id names, the thread)."""

    def __init__(self, run: RunState, on_flush: Callable[[], None] = lambda: None) -> None:
        self.run = run
        self.on_flush = on_flush
        self.events: list[tuple[str, bytes]] = []
        self._last = b""

    def _live(self, event: str, data: bytes) -> Mapping[str, Any]:
        if event == "thread.created":
            return self.run.thread.obj
        object_id = json.loads(data)["id"]
        if event.startswith("thread.run.step."):
            return self.run.steps[object_id]
        if event.startswith("thread.message."):
            return self.run.thread.messages[object_id]
        return self.run.obj

    def check(self, event: str, data: bytes) -> None:
        if not event.endswith(".delta"):
            assert data == dumps(self._live(event, data)), event
        self.events.append((event, data))
        self._last = data

    def emit_again(self, event: str) -> None:
        self.check(event, self._last)

    async def flush(self) -> None:
        self.on_flush()


def engine(**options: Any) -> RunEngine:
    """A real engine with the failing turn scripted for messages that say FAIL."""
    scenario = Scenario.from_dict(
        {"turns": [{"type": "fail", "match": "FAIL", "error_code": "rate_limit_exceeded"}]}
    )
    return RunEngine(Store(), ScriptedModel(scenario), IdFactory(7), Counter(), **options)


def new_run(
    eng: RunEngine, assistant: dict[str, Any], text: str, **body: Any
) -> tuple[RunState, ThreadState]:
    thread = ThreadState(obj=thread_obj(eng.ids.new("thread"), 1_700_000_000, {}))
    eng.store.threads[thread.obj["id"]] = thread
    eng.add_message(thread, {"role": "user", "content": [text_part(text)]})
    return eng.create_run(thread, assistant, body), thread


ASSISTANTS = {
    "plain": {"model": "gpt-4o"},
    "configured": {
        "model": "gpt-4o-mini",
        "name": "Zoë",
        "instructions": TRICKY,
        "tools": [WEATHER_TOOL],
        "temperature": 0.7,
        "top_p": 0.25,
        "metadata": {"team": "\u03b1", "n": "1"},
        "tool_resources": {"code_interpreter": {"file_ids": []}},
        "response_format": {"type": "json_object"},
    },
}
RUN_BODIES = {
    "defaults": {},
    "overrides": {
        "additional_instructions": "Be brief.",
        "metadata": {"k": 'v"'},
        "max_completion_tokens": 500,
        "truncation_strategy": {"type": "last_messages", "last_messages": 3},
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "temperature": 0,
        "reasoning_effort": "low",
    },
}


@pytest.mark.parametrize("assistant_kind", sorted(ASSISTANTS))
@pytest.mark.parametrize("body_kind", sorted(RUN_BODIES))
@pytest.mark.parametrize(
    "text",
    [TRICKY, '/call get_weather {"location": "Zoë \\"x\\""}', "FAIL please"],
    ids=["text", "tool_calls", "failed"],
)
async def test_every_event_is_the_live_object_dumped(
    assistant_kind: str, body_kind: str, text: str
) -> None:
    """Runs that complete, require action then complete, and fail, from plain and configured
    assistants with and without overrides: every run, step, message and thread event is
    ``json.dumps`` of the object as it is at that event."""
    eng = engine()
    assistant = assistant_obj("asst_frames", 1_700_000_000, ASSISTANTS[assistant_kind])
    run, _ = new_run(eng, assistant, text, **RUN_BODIES[body_kind])
    sink = CheckingSink(run)
    await eng.start(run, sink)
    if run.status == "requires_action":
        outputs = [
            {"tool_call_id": c["id"], "output": TRICKY}
            for c in run.obj["required_action"]["submit_tool_outputs"]["tool_calls"]
        ]
        await eng.resume(run, sink, eng.accept_outputs(run, outputs))
    names = [event for event, _ in sink.events]
    assert names[-1] in {"thread.run.completed", "thread.run.failed"}
    assert "thread.run.in_progress" in names
    if text.startswith("/call"):
        assert "thread.run.requires_action" in names
        assert names.count("thread.run.step.completed") == 2
    await eng.aclose()


async def test_runs_from_an_assistants_defaults_follow_its_updates() -> None:
    """A run made without overrides (from what the engine keeps of its assistant) is
    ``run_obj`` of its body, field for field and in order, with containers of its own; once
    the assistant is updated (temperature 1.0 -> 1: equal, encoded otherwise), the next run
    and its events carry the new settings."""
    eng = engine()
    api = AssistantsApi(eng)
    created = await api.create_assistant(
        Call(body={"model": "gpt-4o", "temperature": 1.0}, params={}, query={})
    )
    assert isinstance(created, JsonReply)
    assistant = created.body
    first, _ = new_run(eng, assistant, "hello")
    second, _ = new_run(eng, assistant, "hello")
    obj = first.obj
    expected = run_obj(
        obj["id"], obj["created_at"], obj["thread_id"], assistant, {}, obj["expires_at"]
    )
    assert list(obj.items()) == list(expected.items())
    for name in ("tools", "tool_resources", "metadata", "truncation_strategy"):
        assert obj[name] is not second.obj[name]
    update = {"temperature": 1, "instructions": TRICKY}
    await api.update_assistant(
        Call(body=update, params={"assistant_id": assistant["id"]}, query={})
    )
    third, _ = new_run(eng, assistant, "hello")
    sink = CheckingSink(third)
    await eng.start(third, sink)
    created_event = sink.events[0][1]
    assert b'"temperature":1,' in created_event
    assert json.loads(created_event)["instructions"] == TRICKY
    await eng.aclose()


@pytest.mark.parametrize(
    ("body", "reason"),
    [({"max_completion_tokens": 2}, "max_completion_tokens"), ({"max_prompt_tokens": 1}, None)],
)
async def test_incomplete_runs_are_the_live_objects_dumped(
    body: dict[str, Any], reason: str | None
) -> None:
    """A run cut by its completion budget (message and step incomplete/completed) and one
    refused by its prompt budget end with events equal to their live objects."""
    eng = engine()
    assistant = assistant_obj("asst_frames", 1_700_000_000, ASSISTANTS["configured"])
    run, _ = new_run(eng, assistant, "one two three four five", **body)
    sink = CheckingSink(run)
    await eng.start(run, sink)
    names = [event for event, _ in sink.events]
    assert names[-1] == "thread.run.incomplete"
    if reason is not None:
        assert "thread.message.incomplete" in names
    assert json.loads(sink.events[-1][1])["incomplete_details"]["reason"] in {
        "max_completion_tokens",
        "max_prompt_tokens",
    }
    await eng.aclose()


async def test_cancelled_run_and_metadata_changed_mid_stream_are_the_live_objects() -> None:
    """A run whose metadata is updated (``POST /runs/{id}``) and that is then cancelled while
    it streams: the later events carry the new metadata, and the cancelling, cancelled step,
    incomplete message and cancelled run events equal their live objects."""
    eng = engine(delta_delay_s=0.001, cancel_delay_s=0.001)
    api = AssistantsApi(eng)
    assistant = assistant_obj("asst_frames", 1_700_000_000, ASSISTANTS["plain"])
    run, thread = new_run(eng, assistant, "one two three four five six seven")
    params = {"thread_id": thread.obj["id"], "run_id": run.obj["id"]}
    flushes = 0

    def meddle() -> None:
        nonlocal flushes
        flushes += 1
        if flushes == 2:
            update = Call(body={"metadata": {"changed": "yes ü"}}, params=params, query={})
            asyncio.get_running_loop().create_task(api.update_run(update))
        if flushes == 4:
            eng.cancel(run)

    sink = CheckingSink(run, on_flush=meddle)
    await eng.start(run, sink)
    names = [event for event, _ in sink.events]
    assert names[-4:] == [
        "thread.run.cancelling",
        "thread.run.step.cancelled",
        "thread.message.incomplete",
        "thread.run.cancelled",
    ]
    assert json.loads(sink.events[-1][1])["metadata"] == {"changed": "yes ü"}
    await eng.aclose()


def states() -> list[tuple[str, dict[str, Any]]]:
    """Runs, steps, messages and threads in the states the engine puts them in, and some it
    never does (fields reordered or added, odd values), where the frames must fall back."""
    assistant = assistant_obj("asst_x", 1, ASSISTANTS["configured"])
    run = run_obj("run_x", 2, "thread_x", assistant, RUN_BODIES["overrides"], expires_at=3)
    out: list[tuple[str, dict[str, Any]]] = [("run queued", dict(run))]
    run.update(status="in_progress", started_at=4, metadata={})
    out.append(("run in_progress", dict(run)))
    call = {"id": "call_x", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    run.update(
        status="requires_action",
        required_action={
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {"tool_calls": [call]},
        },
        usage=usage_obj(10, 3),
    )
    out.append(("run requires_action", dict(run)))
    run.update(status="failed", required_action=None, failed_at=5, expires_at=None)
    run.update(last_error={"code": "server_error", "message": TRICKY})
    out.append(("run failed", dict(run)))
    run.update(status="incomplete", incomplete_details={"reason": "max_prompt_tokens"})
    out.append(("run incomplete", dict(run)))
    run.update(usage={**usage_obj(1, 2), "prompt_token_details": {"cached_tokens": 1}})
    out.append(("run odd usage", dict(run)))
    run.update(usage={"total_tokens": 3, "prompt_tokens": 1, "completion_tokens": 2})
    out.append(("run short usage", dict(run)))
    out.append(("run extra field", {**run, "extra": [1.5, float("1e300"), True]}))
    out.append(("run temperature int", {**run, "temperature": 1, "top_p": 1e-07}))
    reordered = {"truncation_strategy": {"last_messages": None, "type": "auto"}}
    out.append(("run strategy reordered", {**run, **reordered}))
    details = {"type": "message_creation", "message_creation": {"message_id": "msg_x"}}
    step = step_obj("step_x", 6, run, "message_creation", details)
    out.append(("step in_progress", dict(step)))
    step.update(status="completed", completed_at=7, usage=usage_obj(4, 5))
    out.append(("step completed", dict(step)))
    step.update(
        status="cancelled",
        cancelled_at=8,
        step_details={"type": "tool_calls", "tool_calls": [call]},
    )
    out.append(("step tool_calls cancelled", dict(step)))
    message = message_obj("msg_x", 9, "thread_x", role="assistant", content=[], run_id="run_x")
    out.append(("message empty", dict(message)))
    message.update(content=[text_part(TRICKY)], metadata={"a": "b"}, attachments=[{"file_id": "f"}])
    out.append(("message text", dict(message)))
    message.update(status="incomplete", incomplete_details={"reason": "run_cancelled"})
    message.update(content=[text_part("a"), {"type": "image_url", "image_url": {"url": "u"}}])
    out.append(("message two parts", dict(message)))
    annotated = {"type": "text", "text": {"value": "v", "annotations": [{"type": "x"}]}}
    out.append(("message annotated", {**message, "content": [annotated]}))
    # Fields that are strings in every message the emulator makes, as other JSON values.
    odd = {"role": None, "assistant_id": None, "run_id": 7, "content": [text_part(None)]}
    out.append(("message non-string fields", {**message, **odd}))
    thread = thread_obj("thread_x", 10, {"metadata": {"k": TRICKY}})
    out.append(("thread", dict(thread)))
    out.append(("thread extra field", {**thread, "more": None}))
    return out


def first_state(kind: str) -> dict[str, Any]:
    """The first state of that kind of object in :func:`states`."""
    return next(obj for label, obj in states() if label.split()[0] == kind)


@pytest.mark.parametrize(("label", "obj"), states(), ids=[label for label, _ in states()])
def test_frames_are_json_dumps_of_each_state(label: str, obj: dict[str, Any]) -> None:
    """Each frame function gives ``json.dumps`` of the object in that state, including the
    states where it must fall back to the encoder (odd usage, reordered or extra fields), and
    so do a step's and a message's fixed fields encoded from their first state."""
    kind = label.split()[0]
    if kind == "run":
        # The fixed fields are encoded from the first state of the run, as the engine does.
        first = states()[0][1]
        frames = run_frames(first if "temperature" not in label else obj)
        if "reordered" in label:
            frames = run_frames(obj)
        got = run_json(obj, frames)
    elif kind == "step":
        got = step_json(obj)
        assert step_json(obj, step_frames(obj)) == got
        if "tool_calls" not in label:  # frames of its first state, as the engine keeps them
            assert step_json(obj, step_frames(first_state("step"))) == got
    elif kind == "message":
        got = message_json(obj)
        assert message_json(obj, message_frames(obj)) == got
        if "non-string" not in label:  # frames of its first state, as the engine keeps them
            assert message_json(obj, message_frames(first_state("message"))) == got
    else:
        got = thread_json(obj)
    assert got == dumps(obj)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -3,
        2**70,
        1.0,
        0.1,
        1e-7,
        1e300,
        "",
        TRICKY,
        {},
        [],
        {"a": [1]},
        [None],
    ],
)
def test_value_and_usage_json_are_json_dumps(value: Any) -> None:
    """A value's JSON is ``json.dumps``'s, whatever its type; so is any ``usage``."""
    assert value_json(value) == dumps(value)
    assert usage_json(value if isinstance(value, dict) else None) == dumps(
        value if isinstance(value, dict) else None
    )
    assert usage_json(usage_obj(12, 30)) == dumps(usage_obj(12, 30))


class _ReadKeys(dict[str, Any]):
    """A request body that records every field asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def test_run_overrides_name_every_field_run_obj_reads() -> None:
    """A body without any of RUN_OVERRIDES is all that may take the defaults' copy: every
    field run_obj reads of a body is among them, and the copy equals run_obj's run."""
    assistant = {"id": "asst_1", "model": "m", "instructions": "be brief", "tools": [], "x": 1}
    body = _ReadKeys()
    made = run_obj("run_1", 10, "thread_1", assistant, body, 20)
    assert body.read and body.read <= RUN_OVERRIDES
    defaults = run_obj("", 0, "", assistant, {}, 0)
    copied = run_from_defaults(defaults, "run_1", 10, "thread_1", 20)
    assert copied == made
    assert copied["metadata"] is not defaults["metadata"]
    assert copied["tools"] is not defaults["tools"]
