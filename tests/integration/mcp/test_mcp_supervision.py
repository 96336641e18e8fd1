"""Supervision of MCP servers: crashes, restarts with bounded backoff, dropped HTTP servers,
and the 2025 handshake revision."""

from __future__ import annotations

import psutil
import pytest
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from structlog.testing import capture_logs

from tools import ToolCall, ToolDispatcher, ToolRegistry
from tools.mcp import MCPServer, MCPToolSource

from .conftest import HttpServer, calls, error_of, server_pids, start_http_server, stdio_server

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_tool_list_change_on_a_legacy_connection() -> None:
    """On the 2025 handshake protocol the list_changed notification updates the registry too."""
    registry = ToolRegistry()
    async with MCPToolSource(stdio_server("old", protocol="legacy"), registry) as source:
        assert source.state.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        [grown] = await ToolDispatcher(registry).run_batch(calls(("old__grow", {})))
        assert grown.output == "grown"
        assert "old__extra" in registry


async def test_server_stderr_becomes_log_events_not_terminal_output(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """What a stdio server writes to stderr is logged as mcp.server_stderr, never printed."""
    registry = ToolRegistry()
    with capture_logs() as logs:
        async with MCPToolSource(stdio_server("e"), registry):
            [failed] = await ToolDispatcher(registry).run_batch(
                calls(("e__fail", {"message": "disk full 4711"}))
            )
            assert failed.error_type == "tool_error"
    lines = [e["line"] for e in logs if e["event"] == "mcp.server_stderr"]
    assert any("disk full 4711" in line for line in lines), lines
    assert "disk full 4711" not in capfd.readouterr().err


async def test_close_ends_processes_the_server_started() -> None:
    """Closing the source ends the server's process group: a child it left running is gone."""
    registry = ToolRegistry()
    async with MCPToolSource(stdio_server("g"), registry) as source:
        [server_pid, child_pid] = [
            int(r.output)
            for r in await ToolDispatcher(registry).run_batch(
                calls(("g__pid", {}), ("g__spawn_child", {}))
            )
        ]
        assert source.state.pid == server_pid
        assert psutil.pid_exists(child_pid)
    assert not alive(child_pid) and not alive(server_pid)


def alive(pid: int) -> bool:
    """Whether pid is still running 5 s from now (a killed process takes a moment to go)."""
    try:
        process = psutil.Process(pid)
        _, running = psutil.wait_procs([process], timeout=5)
        return bool(running) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_crash_mid_call_then_recovery_and_no_orphan_after_close() -> None:
    """A crash gives that call tool_unavailable; the next round restarts; close leaves no process;
    each step is logged."""
    registry = ToolRegistry()
    before = server_pids()
    with capture_logs() as logs:
        await crash_and_recover(registry, before)
    events = [e["event"] for e in logs if e["event"].startswith("mcp.")]
    assert events[0] == "mcp.server_started" and events[-1] == "mcp.server_stopped"
    assert {"mcp.server_crashed", "mcp.server_restarting"} <= set(events)
    crashed = next(e for e in logs if e["event"] == "mcp.server_crashed")
    assert crashed["server"] == "c" and crashed["log_level"] == "warning"


async def crash_and_recover(registry: ToolRegistry, before: set[int]) -> None:
    source = MCPToolSource(stdio_server("c"), registry, restart_backoff_s=0.05)
    async with source:
        [first_pid] = server_pids() - before
        [crashed] = await ToolDispatcher(registry).run_batch(calls(("c__crash", {})))
        assert crashed.error_type == "tool_unavailable", crashed.output
        assert "'c'" in error_of(crashed.output)["message"]
        assert source.state.status in ("restarting", "connected")
        [recovered] = await ToolDispatcher(registry).run_batch(calls(("c__pid", {})))
        assert not recovered.is_error, recovered.output
        second_pid = int(recovered.output)
        assert second_pid != first_pid
        assert source.state.status == "connected" and source.state.restarts == 1
        assert source.state.last_error is not None
    assert not psutil.pid_exists(second_pid) or psutil.Process(second_pid).status() == "zombie"
    assert server_pids() == before
    assert source.state.status == "closed"
    assert "c__pid" not in registry


async def test_restart_completes_even_when_every_call_times_out_first() -> None:
    """Calls with timeouts shorter than the server's start-up still see it come back."""
    registry = ToolRegistry()
    server = stdio_server("quick", tool_timeouts={"sleep": 0.2, "crash": 0.2})
    async with MCPToolSource(server, registry, restart_backoff_s=0.01) as source:
        [crashed] = await ToolDispatcher(registry).run_batch(calls(("quick__crash", {"delay": 0})))
        assert crashed.error_type == "tool_unavailable"
        outcomes = []
        for i in range(60):  # each call gives up after 0.2 s; a restart takes longer
            [result] = await ToolDispatcher(registry).run_batch(
                [ToolCall(f"q{i}", "quick__sleep", '{"seconds": 0}')]
            )
            outcomes.append(result.error_type)
            if not result.is_error:
                break
        assert outcomes[0] == "timeout" and outcomes[-1] is None, outcomes
        assert source.state.restarts == 1


async def test_crash_loop_gives_up_after_bounded_restarts() -> None:
    """A server that keeps crashing is restarted a bounded number of times, then 'failed'."""
    registry = ToolRegistry()
    source = MCPToolSource(stdio_server("loop"), registry, max_restarts=1, restart_backoff_s=0.01)
    async with source:
        outcomes = []
        for i in range(3):
            [result] = await ToolDispatcher(registry).run_batch(
                [ToolCall(f"k{i}", "loop__crash", '{"delay": 0}')]
            )
            outcomes.append(result.error_type)
        assert outcomes == ["tool_unavailable"] * 3
        assert source.state.status == "failed"
        assert "not restarted again" in error_of(result.output)["message"]


async def test_http_server_that_drops_is_reconnected(http_server: HttpServer) -> None:
    """Calls to a dropped HTTP server are tool_unavailable; once it is back, calls work again;
    the header's secret is in no log event."""
    registry = ToolRegistry()
    server = MCPServer(
        name="h", transport="http", url=http_server.url, headers={"X-Api-Key": "hdr-secret-123"}
    )
    with capture_logs() as logs:
        await drop_and_reconnect(server, registry, http_server)
    assert {"mcp.server_started", "mcp.server_crashed"} <= {e["event"] for e in logs}
    assert "hdr-secret-123" not in repr(logs)


async def drop_and_reconnect(
    server: MCPServer, registry: ToolRegistry, http_server: HttpServer
) -> None:
    # Enough restarts for a loaded machine to bring the server back in between (the give-up
    # after max_restarts is its own test).
    async with MCPToolSource(server, registry, restart_backoff_s=0.01, max_restarts=100) as source:
        [ok] = await ToolDispatcher(registry).run_batch(calls(("h__add", {"a": 2, "b": 3})))
        assert ok.output == "5"
        http_server.stop()
        [down] = await ToolDispatcher(registry, default_timeout_s=10).run_batch(
            calls(("h__add", {"a": 2, "b": 3}))
        )
        assert down.error_type == "tool_unavailable", down.output
        back = await start_http_server(http_server.port)
        try:
            [again] = await ToolDispatcher(registry).run_batch(calls(("h__add", {"a": 4, "b": 4})))
            assert again.output == "8", again.output
            assert source.state.status == "connected"
        finally:
            back.stop()
