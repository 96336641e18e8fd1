"""MCP servers as tool sources: real servers over stdio and streamable HTTP, our dispatcher."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tools import ToolCall, ToolDispatcher, ToolRegistry
from tools.mcp import MCPServer, MCPToolSource

from .conftest import calls, error_of, start_http_server, stdio_server

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Shared:
    """One stdio source and one HTTP source in one registry, with a slow local tool."""

    def __init__(self, registry: ToolRegistry, stdio: MCPToolSource, http: MCPToolSource) -> None:
        self.registry = registry
        self.stdio = stdio
        self.http = http


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared() -> AsyncIterator[Shared]:
    registry = ToolRegistry()

    @registry.tool
    async def local_sleep(seconds: float) -> str:
        """A slow local tool."""
        await asyncio.sleep(seconds)
        return f"local slept {seconds}"

    http_process = await start_http_server()
    stdio = MCPToolSource(
        stdio_server("t", deny=frozenset({"admin_reset"}), tool_timeouts={"sleep": 0.5}),
        registry,
    )
    http = MCPToolSource(
        MCPServer(
            name="web",
            transport="http",
            url=http_process.url,
            prefix="",
            allow=frozenset({"add", "echo", "picture"}),
            headers={"Authorization": "Bearer sk-never-logged"},
        ),
        registry,
    )
    try:
        await asyncio.gather(stdio.start(), http.start())
        yield Shared(registry, stdio, http)
    finally:
        await stdio.aclose()
        await http.aclose()
        http_process.stop()


async def test_tools_are_listed_next_to_local_tools_with_converted_schemas(shared: Shared) -> None:
    """definitions() holds the local tool and both servers' tools, schemas strict where possible."""
    by_name = {d["function"]["name"]: d["function"] for d in shared.registry.definitions()}
    assert {"local_sleep", "t__add", "t__echo", "t__sleep", "t__fail", "add", "echo"} <= set(
        by_name
    )
    add = by_name["t__add"]
    assert add["description"] == "Add two integers."
    assert add["strict"] is True
    assert add["parameters"] == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    tag = by_name["t__tag"]  # a free-form object: offered non-strict, as the server wrote it
    assert "strict" not in tag
    assert tag["parameters"]["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert shared.stdio.state.status == "connected"
    assert shared.stdio.state.protocol_version is not None


async def test_non_strict_tool_takes_its_free_form_arguments(shared: Shared) -> None:
    """A non-strict tool's arguments reach the server as sent."""
    [result] = await ToolDispatcher(shared.registry).run_batch(
        calls(("t__tag", {"labels": {"b": "2", "a": "1"}}))
    )
    assert result.output == "a,b"


async def test_arguments_that_are_not_an_object_are_rejected_locally(shared: Shared) -> None:
    """Arguments that are not a JSON object never reach the server: invalid_arguments."""
    [result] = await ToolDispatcher(shared.registry).run_batch([ToolCall("l", "t__add", "[1, 2]")])
    assert result.error_type == "invalid_arguments"


async def test_calls_return_text_and_describe_images(shared: Shared) -> None:
    """A call's text is the output; an image becomes a JSON description of its bytes."""
    dispatcher = ToolDispatcher(shared.registry)
    results = await dispatcher.run_batch(
        calls(
            ("t__add", {"a": 20, "b": 22}),
            ("echo", {"text": "ab", "times": 3}),
            ("picture", {}),
        )
    )
    assert [r.is_error for r in results] == [False, False, False]
    assert results[0].output == "42"
    assert results[1].output == "ababab"
    assert json.loads(results[2].output) == {"type": "image", "mime_type": "image/png", "bytes": 16}


async def test_allow_deny_and_prefix(shared: Shared) -> None:
    """deny drops a tool, allow keeps only the named ones, the prefix is applied or not."""
    names = shared.registry.names()
    assert "t__admin_reset" not in names and "admin_reset" not in names
    assert sorted(shared.http.tool_names) == ["add", "echo", "picture"]
    assert "t__pid" in names and "pid" not in names
    dispatcher = ToolDispatcher(shared.registry)
    [result] = await dispatcher.run_batch(calls(("t__admin_reset", {})))
    assert result.error_type == "unknown_tool"


async def test_mcp_and_local_tools_run_concurrently(shared: Shared) -> None:
    """A slow MCP tool and a slow local tool in one batch take about the max, not the sum."""
    dispatcher = ToolDispatcher(shared.registry)
    started = time.monotonic()
    results = await dispatcher.run_batch(
        calls(("t__sleep", {"seconds": 0.4}), ("local_sleep", {"seconds": 0.4}))
    )
    elapsed = time.monotonic() - started
    assert [r.output for r in results] == ["slept 0.4", "local slept 0.4"]
    assert elapsed < 0.75, f"two 0.4 s tools took {elapsed:.2f} s: not concurrent"


async def test_slow_tool_is_cut_at_its_timeout_and_the_server_keeps_working(
    shared: Shared,
) -> None:
    """A call past its per-tool timeout gets a timeout output; the next call works."""
    dispatcher = ToolDispatcher(shared.registry)
    [cut] = await dispatcher.run_batch(calls(("t__sleep", {"seconds": 5})))
    assert cut.error_type == "timeout" and 0.4 < cut.seconds < 2.5
    assert "timeout of 0.5 s" in error_of(cut.output)["message"]
    [after] = await ToolDispatcher(shared.registry).run_batch(calls(("t__add", {"a": 1, "b": 1})))
    assert after.output == "2"


async def test_slow_tool_is_cut_at_the_batch_deadline(shared: Shared) -> None:
    """The batch deadline cuts an MCP call too, with a timeout output naming the deadline."""
    dispatcher = ToolDispatcher(shared.registry)
    results = await dispatcher.run_batch(
        calls(("web_sleep_missing", {}), ("t__sleep", {"seconds": 0.45}), ("t__add", {"a": 1})),
        deadline=time.monotonic() + 0.2,
    )
    missing, slow, bad = results
    assert missing.error_type == "unknown_tool"
    assert slow.error_type == "timeout"
    assert "batch deadline" in error_of(slow.output)["message"]
    assert bad.error_type == "tool_error"  # the server rejects the arguments (b is missing)


async def test_is_error_result_becomes_a_tool_error_output(shared: Shared) -> None:
    """An isError result is a tool_error output carrying the server's message."""
    [result] = await ToolDispatcher(shared.registry).run_batch(
        calls(("t__fail", {"message": "disk full"}))
    )
    assert result.is_error and result.error_type == "tool_error"
    body = error_of(result.output)
    assert "disk full" in body["message"] and body["tool"] == "t__fail"


async def test_a_call_id_executes_once(shared: Shared) -> None:
    """Re-sending a call id returns the cached result without calling the server again."""
    dispatcher = ToolDispatcher(shared.registry)
    [first] = await dispatcher.run_batch([ToolCall("same", "t__pid", "{}")])
    [again] = await dispatcher.run_batch([ToolCall("same", "t__pid", "{}")])
    assert again is first


async def test_tool_list_change_is_picked_up_before_the_next_round(shared: Shared) -> None:
    """A tool announced by list_changed is in definitions() right after the round that caused it."""
    assert "t__extra" not in shared.registry.names()
    dispatcher = ToolDispatcher(shared.registry)
    [grown] = await dispatcher.run_batch(calls(("t__grow", {})))
    assert grown.output == "grown"
    assert "t__extra" in [d["function"]["name"] for d in shared.registry.definitions()]
    [extra] = await dispatcher.run_batch([ToolCall("x", "t__extra", '{"word": "hi"}')])
    assert extra.output == "HI"


async def test_secrets_stay_out_of_reprs(shared: Shared) -> None:
    """Headers, env values and arguments never show in a config's or a source's repr."""
    text = repr(shared.http.server) + repr(shared.http) + repr(shared.http.state)
    assert "sk-never-logged" not in text
    assert "Bearer" not in text
