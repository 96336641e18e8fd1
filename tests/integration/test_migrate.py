"""The migration kit over real HTTP: threads into conversations, the parity check, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

import runtime.retry
from runtime import AssistantsClient, NotFoundError, Orchestrator, RunPolicy, RunResult
from runtime.config import Settings
from runtime.core.backend import Usage
from runtime.emulator import Emulator
from runtime.migrate import FROM_THREAD_KEY, TO_CONVERSATION_KEY, MigrationError, migrate_thread
from runtime.parity import compare, parity
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from runtime.responses.client import ConversationItem
from tools import ToolCallResult, ToolRegistry

from .conftest import InProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk-test-migrate"
FAST = RunPolicy(poll_interval_s=0.02, max_poll_interval_s=0.05)
ADD_LINE = '/call add {"a": 1, "b": 2}'


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    runtime.retry.set_testing(True)
    try:
        yield
    finally:
        runtime.retry.set_testing(False)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(seed=11) as emulator:
        yield emulator


@pytest.fixture
async def ac(emu: Emulator) -> AsyncIterator[AssistantsClient]:
    async with AssistantsClient(base_url=emu.base_url, api_key=API_KEY) as client:
        yield client


@pytest.fixture
async def rc(emu: Emulator) -> AsyncIterator[ResponsesClient]:
    async with ResponsesClient(base_url=emu.base_url, api_key=API_KEY) as client:
        yield client


def add_registry() -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return reg


async def thread_with_a_tool_round(ac: AssistantsClient) -> str:
    """A thread: hello / its answer, then a /call line, the add round and the quoting answer."""
    registry = add_registry()
    assistant = await ac.create_assistant(model="gpt-4o", tools=registry.definitions())
    orch = Orchestrator(ac, registry, policy=FAST)
    first = await orch.create_thread_and_run(
        assistant.id, messages=[{"role": "user", "content": "hello"}]
    )
    assert first.ok and first.thread_id
    await ac.create_message(first.thread_id, content=ADD_LINE)
    second = await orch.run(first.thread_id, assistant.id)
    assert second.ok and second.text == "add returned: 3"
    return first.thread_id


def texts(item: ConversationItem) -> list[str]:
    content: list[dict[str, Any]] = getattr(item, "content", None) or []
    return [str(part.get("text")) for part in content]


# --- migrate_thread --------------------------------------------------------------------------


async def test_a_thread_migrates_in_order_with_roles_and_its_tool_round(
    ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """The conversation holds the messages oldest first with their roles, and the add call and
    its output between the /call line and the answer that quotes it."""
    thread_id = await thread_with_a_tool_round(ac)
    report = await migrate_thread(ac, rc, thread_id, metadata={"team": "ops"})
    items = await rc.list_items(report.conversation_id, order="asc").to_list()
    shape = [(i.type, getattr(i, "role", None)) for i in items]
    assert shape == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "assistant"),
    ]
    assert texts(items[0]) == ["hello"] and texts(items[1]) == ["You said: hello"]
    assert [p["type"] for p in items[1].model_dump()["content"]] == ["output_text"]
    assert texts(items[2]) == [ADD_LINE] and texts(items[5]) == ["add returned: 3"]
    call, output = items[3].model_dump(), items[4].model_dump()
    assert call["name"] == "add" and json.loads(call["arguments"]) == {"a": 1, "b": 2}
    assert output["call_id"] == call["call_id"] and output["output"] == "3"
    assert (report.items_copied, report.messages, report.tool_calls) == (6, 4, 1)
    assert report.batches == 1 and not report.described and not report.skipped
    assert "6 items (4 messages, 1 tool calls)" in report.summary
    conversation = await rc.retrieve_conversation(report.conversation_id)
    assert conversation.metadata == {"team": "ops", FROM_THREAD_KEY: thread_id}


async def test_sequential_rounds_keep_their_order_before_the_answer(
    ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """Two calls made one per round (parallel calls off): both pairs, in call order, sit
    between the request and the answer quoting them."""
    registry = add_registry()
    assistant = await ac.create_assistant(model="gpt-4o", tools=registry.definitions())
    thread = await ac.create_thread(
        messages=[{"role": "user", "content": f'{ADD_LINE}\n/call add {{"a": 5, "b": 5}}'}]
    )
    run = await Orchestrator(ac, registry, policy=FAST).run(
        thread.id, assistant.id, parallel_tool_calls=False
    )
    assert run.ok and run.rounds == 2
    report = await migrate_thread(ac, rc, thread.id)
    items = [
        i.model_dump() for i in await rc.list_items(report.conversation_id, order="asc").to_list()
    ]
    assert [i["type"] for i in items] == [
        "message",
        "function_call",
        "function_call_output",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert [items[2]["output"], items[4]["output"]] == ["3", "10"]
    assert items[5]["content"][0]["text"] == "add returned: 3\nadd returned: 10"


async def test_a_run_stopped_between_rounds_keeps_its_answered_call_after_the_request(
    ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """A run that wrote no message (stopped at its round bound) still gets its answered call
    placed after the message that asked for it; the unanswered one is left out."""
    registry = add_registry()
    assistant = await ac.create_assistant(model="gpt-4o", tools=registry.definitions())
    thread = await ac.create_thread(
        messages=[{"role": "user", "content": f'{ADD_LINE}\n/call add {{"a": 5, "b": 5}}'}]
    )
    bounded = RunPolicy(poll_interval_s=0.02, max_poll_interval_s=0.05, max_tool_rounds=1)
    run = await Orchestrator(ac, registry, policy=bounded).run(
        thread.id, assistant.id, parallel_tool_calls=False
    )
    assert run.stopped_by == "max_tool_rounds"
    ended = int(time.time())
    while int(time.time()) <= ended:  # timestamps have whole seconds: be surely newer
        await asyncio.sleep(0.05)
    await ac.create_message(thread.id, content="later")
    report = await migrate_thread(ac, rc, thread.id)
    items = [
        i.model_dump() for i in await rc.list_items(report.conversation_id, order="asc").to_list()
    ]
    assert [i["type"] for i in items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert items[2]["output"] == "3" and items[3]["content"][0]["text"] == "later"
    assert report.skipped == (f"{run.run_id}: add call without an output",)


async def test_migrating_again_returns_the_first_conversation_unless_forced(
    ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """The thread is marked; a second migration makes nothing new; force makes a second one."""
    thread = await ac.create_thread(messages=[{"role": "user", "content": "hi"}])
    first = await migrate_thread(ac, rc, thread.id)
    assert first.thread_marked
    marked = await ac.retrieve_thread(thread.id)
    assert (marked.metadata or {})[TO_CONVERSATION_KEY] == first.conversation_id
    again = await migrate_thread(ac, rc, thread.id)
    assert again.already_migrated and again.conversation_id == first.conversation_id
    assert again.items_copied == 0 and "already migrated" in again.summary
    forced = await migrate_thread(ac, rc, thread.id, force=True)
    assert not forced.already_migrated and forced.conversation_id != first.conversation_id
    await rc.delete_conversation(forced.conversation_id)
    after_delete = await migrate_thread(ac, rc, thread.id)
    assert not after_delete.already_migrated  # the named conversation is gone: migrate afresh


async def test_a_responses_run_continues_the_migrated_conversation_with_its_history(
    ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """A run in the migrated conversation completes, the conversation grows, and the model
    reads the copied history (more input tokens than the same message in a new conversation)."""
    thread_id = await thread_with_a_tool_round(ac)
    report = await migrate_thread(ac, rc, thread_id)
    orch = ResponsesOrchestrator(rc, add_registry(), policy=FAST, conversations=True)
    continued = await orch.run("next", conversation=report.conversation_id)
    fresh = await orch.run("next")
    assert continued.ok and continued.text == "You said: next"
    assert continued.conversation_id == report.conversation_id
    items = await rc.list_items(report.conversation_id, order="asc").to_list()
    assert len(items) == report.items_copied + 2  # the new user message and the answer
    assert continued.usage is not None and fresh.usage is not None
    assert continued.usage.input_tokens > fresh.usage.input_tokens


async def test_more_than_twenty_items_go_in_batches_of_at_most_twenty(
    emu: Emulator, ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """45 messages: three requests (20, 20, 5), and every message comes back in order."""
    thread = await ac.create_thread()
    for n in range(45):
        await ac.create_message(thread.id, content=f"message {n}")
    report = await migrate_thread(ac, rc, thread.id)
    assert report.batches == 3 and report.items_copied == 45
    sizes = [
        len(r["json"]["items"])
        for r in emu.requests
        if r["method"] == "POST" and r["path"].startswith("/v1/conversations") and r["json"]
    ]
    assert sizes == [20, 20, 5]
    items = await rc.list_items(report.conversation_id, order="asc", limit=100).to_list()
    assert [texts(i)[0] for i in items] == [f"message {n}" for n in range(45)]


async def test_a_failed_batch_is_a_migration_error_naming_the_partial_conversation(
    emu: Emulator, ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """The server fails the second batch: MigrationError says which conversation holds how
    many items, the thread stays unmarked, and migrating again makes a complete one."""
    thread = await ac.create_thread()
    for n in range(25):
        await ac.create_message(thread.id, content=f"message {n}")
    emu.inject("500", method="POST", path=r"/items$", times=10)
    with pytest.raises(MigrationError) as caught:
        await migrate_thread(ac, rc, thread.id)
    assert caught.value.items_copied == 20
    assert "holds 20 of 25 items" in caught.value.message
    partial = await rc.list_items(caught.value.conversation_id, limit=100).to_list()
    assert len(partial) == 20
    assert TO_CONVERSATION_KEY not in ((await ac.retrieve_thread(thread.id)).metadata or {})
    emu.clear_injected()
    report = await migrate_thread(ac, rc, thread.id)
    assert not report.already_migrated and report.items_copied == 25
    assert report.conversation_id != caught.value.conversation_id


async def test_images_are_described_in_text_and_said_so(
    ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """A text + image_url message keeps both parts, the image as a text part naming its URL."""
    thread = await ac.create_thread()
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    message = await ac.create_message(thread.id, content=content)
    report = await migrate_thread(ac, rc, thread.id)
    (item,) = await rc.list_items(report.conversation_id).to_list()
    assert texts(item) == ["what is this?", "[image https://example.com/cat.png]"]
    assert report.described == (f"{message.id}: image_url",)
    assert "1 non-text part(s) described as text" in report.summary


async def test_a_call_that_never_got_an_output_is_left_out(
    ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """A run cancelled while waiting for outputs: its call is not copied (a conversation with
    an unanswered call could not be continued), and the report says so."""
    registry = add_registry()
    assistant = await ac.create_assistant(model="gpt-4o", tools=registry.definitions())
    thread = await ac.create_thread(messages=[{"role": "user", "content": ADD_LINE}])
    run = await ac.create_run(thread.id, assistant.id)
    while run.status != "requires_action":
        await asyncio.sleep(0.02)
        run = await ac.retrieve_run(thread.id, run.id)
    await ac.cancel_run(thread.id, run.id)
    while not run.is_terminal:
        await asyncio.sleep(0.02)
        run = await ac.retrieve_run(thread.id, run.id)
    report = await migrate_thread(ac, rc, thread.id)
    assert report.tool_calls == 0 and report.skipped == (f"{run.id}: add call without an output",)
    items = await rc.list_items(report.conversation_id).to_list()
    assert [i.type for i in items] == ["message"]
    orch = ResponsesOrchestrator(rc, registry, policy=FAST, conversations=True)
    assert (await orch.run("go on", conversation=report.conversation_id)).ok


async def test_an_unknown_thread_is_a_not_found_error_and_creates_nothing(
    emu: Emulator, ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """A typo in the thread id raises NotFoundError before any conversation is created."""
    with pytest.raises(NotFoundError):
        await migrate_thread(ac, rc, "thread_nope")
    assert not [r for r in emu.requests if r["path"].startswith("/v1/conversations")]


async def test_the_openai_sdk_lists_the_migrated_items(
    emu: Emulator, ac: AssistantsClient, rc: ResponsesClient
) -> None:
    """The official openai package, as an outside client, reads the migrated conversation."""
    thread_id = await thread_with_a_tool_round(ac)
    report = await migrate_thread(ac, rc, thread_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        async with AsyncOpenAI(base_url=emu.base_url, api_key=API_KEY, max_retries=0) as sdk:
            page = await sdk.conversations.items.list(report.conversation_id, order="asc")
    types = [item.type for item in page.data]
    assert types == [
        "message",
        "message",
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    call = page.data[3]
    assert call.type == "function_call" and call.name == "add"


# --- parity ----------------------------------------------------------------------------------


async def test_parity_is_equal_for_a_plain_message_and_a_tool_round(
    emu: Emulator, ac: AssistantsClient
) -> None:
    """Two turns (text, then an add round) give the same outcome on both protocols; the
    assistant the check created is deleted afterwards."""
    report = await parity(
        Settings(), add_registry(), ["hello", ADD_LINE], base_url=emu.base_url, api_key=API_KEY
    )
    assert report.equal, report.summary
    assert [r.text for r in report.responses] == ["You said: hello", "add returned: 3"]
    assert [r.rounds for r in report.assistants] == [0, 1]
    assert report.summary == "equal (2 turn(s))"
    assert await ac.list_assistants().to_list() == []


async def test_parity_in_a_conversation_continues_it_and_deletes_it(emu: Emulator) -> None:
    """With settings.conversations the Responses turns share one conversation, which the
    check deletes when done; the outcome still equals the thread's."""
    settings = Settings(conversations=True)
    report = await parity(
        settings, add_registry(), [ADD_LINE, "thanks"], base_url=emu.base_url, api_key=API_KEY
    )
    assert report.equal, report.summary
    first, second = report.responses
    assert first.conversation_id is not None and second.conversation_id == first.conversation_id
    deleted = [
        r["path"] for r in emu.requests if r["method"] == "DELETE" and "conversations" in r["path"]
    ]
    assert deleted == [f"/v1/conversations/{first.conversation_id}"]


async def test_parity_reports_a_tool_missing_on_one_side(emu: Emulator) -> None:
    """Without add on the Responses side, the call's output, error and the text differ."""
    report = await parity(
        Settings(),
        add_registry(),
        ADD_LINE,
        base_url=emu.base_url,
        api_key=API_KEY,
        responses_registry=ToolRegistry(),
    )
    assert not report.equal
    fields = {d.field for d in report.differences}
    assert {"text", "tool_calls[0].output", "tool_calls[0].error_type"} <= fields
    assert "tool_calls[0].name" not in fields and "status" not in fields
    error = next(d for d in report.differences if d.field == "tool_calls[0].error_type")
    assert (error.turn, error.assistants, error.responses) == (0, None, "unknown_tool")
    assert "turn 0: text:" in report.summary


def result(**fields: Any) -> RunResult[Any]:
    base: dict[str, Any] = {
        "status": "completed",
        "text": "add returned: 3",
        "rounds": 1,
        "usage": Usage(input_tokens=3, output_tokens=4, total_tokens=7),
        "tool_calls": [ToolCallResult("call_1", "add", '{"a": 1, "b": 2}', "3", False, 0.1)],
        "run_id": "run_1",
    }
    return RunResult(**{**base, **fields})


def test_compare_ignores_ids_timings_tokens_and_argument_spacing() -> None:
    """Different ids, durations, token counts and JSON spacing are no difference."""
    other = result(
        run_id="resp_9",
        conversation_id="conv_9",
        usage=Usage(input_tokens=30, output_tokens=1, total_tokens=31),
        tool_calls=[ToolCallResult("fc_9", "add", '{"b":2,"a":1}', "3", False, 2.5)],
    )
    assert compare([result()], [other]).equal


def test_compare_reports_each_kind_of_difference() -> None:
    """Status, text, rounds, usage presence, call count and turn count are all reported."""
    other = result(status="incomplete", text="", rounds=2, usage=None, tool_calls=[])
    report = compare([result(), result()], [other])
    assert {d.field for d in report.differences} == {
        "turns",
        "status",
        "text",
        "rounds",
        "usage_present",
        "tool_calls.count",
    }


# --- CLI -------------------------------------------------------------------------------------

VENDOR_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without API settings, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if k not in VENDOR_VARS and not k.startswith("RUNTIME_")
    }
    return {**env, **extra}


async def run_cli(*args: str, env: dict[str, str], cwd: Path = REPO_ROOT) -> tuple[int, str, str]:
    """``python -m runtime ARGS`` without blocking the loop (an in-process emulator serves)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runtime",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


TOOLS_MODULE = '''
import itertools
from tools import ToolRegistry

registry = ToolRegistry()
_ticks = itertools.count(1)


@registry.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@registry.tool
def tick() -> int:
    """A counter: a different answer each call."""
    return next(_ticks)
'''


@pytest.mark.slow
async def test_cli_parity_on_the_embedded_emulator(
    tmp_path: Path, cli: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 0 and "equal" for an add round (a real process); exit 1 naming the output for a
    tool whose answer changes between calls, exit 2 for tools that cannot be imported (the
    command's logic, in this process)."""
    tools = tmp_path / "parity_tools.py"
    tools.write_text(TOOLS_MODULE)
    monkeypatch.delitem(sys.modules, "parity_tools", raising=False)  # removed again afterwards
    code, out, err = await run_cli("parity", ADD_LINE, "--tools", str(tools), env=clean_env())
    assert code == 0, err
    assert out.strip() == "equal (1 turn(s))" and "embedded emulator" in err
    code, out, _ = astuple(
        await asyncio.to_thread(cli, "parity", "/call tick {}", "--tools", str(tools))
    )
    assert code == 1
    assert "turn 0: tool_calls[0].output: assistants='1' responses='2'" in out
    code, out, err = astuple(
        await asyncio.to_thread(cli, "parity", "hi", "--tools", "no_such_module_x")
    )
    assert code == 2 and err.startswith("error: cannot load tools") and err.count("\n") == 1


@pytest.mark.slow
async def test_cli_migrate_prints_the_report_and_fails_in_one_line(
    emu: Emulator, ac: AssistantsClient, rc: ResponsesClient, cli: InProcess
) -> None:
    """Against a configured server: the JSON report and exit 0 (a real process); an unknown
    thread and a missing server are one-line errors with exit 2 (in this process)."""
    thread_id = await thread_with_a_tool_round(ac)
    env = clean_env(OPENAI_BASE_URL=emu.base_url, OPENAI_API_KEY=API_KEY)
    code, out, err = await run_cli("migrate", thread_id, env=env)
    assert code == 0, err
    report = json.loads(out)
    assert report["thread_id"] == thread_id and report["items_copied"] == 6
    assert report["tool_calls"] == 1 and "conversation" in report["summary"]
    items = await rc.list_items(report["conversation_id"]).to_list()
    assert len(items) == 6
    server = {"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": API_KEY}
    code, out, err = astuple(await asyncio.to_thread(cli, "migrate", "thread_missing", env=server))
    assert code == 2 and out == "" and err.startswith("error: NotFoundError")
    assert err.count("\n") == 1 and API_KEY not in err
    unset = dict.fromkeys(server)
    code, _, err = astuple(await asyncio.to_thread(cli, "migrate", thread_id, env=unset))
    assert code == 2 and err.startswith("error: no server configured") and err.count("\n") == 1
