"""``MCPToolSource``: one MCP server's tools in a ToolRegistry, with a supervised connection."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import re
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeVar

import pydantic
import structlog

from tools.errors import ToolError, ToolRegistrationError, ToolUnavailableError
from tools.mcp._sdk import require_mcp
from tools.mcp.config import MCPServer
from tools.mcp.content import error_text, render_result
from tools.registry import Tool, ToolRegistry, validate_name
from tools.schema import FunctionSchema, normalize_schema, to_strict_schema

if TYPE_CHECKING:
    from mcp import Client
    from mcp.client._transport import Transport
    from mcp.client.subscriptions import Subscription
    from mcp_types import Tool as RemoteTool

T = TypeVar("T")

Status = Literal["stopped", "connecting", "connected", "restarting", "failed", "closed"]

_MAX_PAGES = 100  # a tools/list cursor that never ends cannot hang a refresh
_MAX_BACKOFF_S = 5.0
_STDERR_DRAIN_S = 1.0
_STDERR_LINE_LIMIT = 64 * 1024
_STDERR_LOG_CHARS = 2000
_TOOL_LIST_CHANGED = "notifications/tools/list_changed"
_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass(frozen=True)
class MCPServerState:
    """What a source knows about its server, for health checks and logs.

    Attributes:
        status: ``stopped`` (not started), ``connecting``, ``connected``, ``restarting``
            (down; restarted on the next call), ``failed`` (gave up after too many
            consecutive failures), ``closed``.
        last_error: the latest connection failure or crash, if any.
        restarts: how many times the connection was re-established.
        tools: the names registered for this server.
        protocol_version: the MCP revision negotiated on the current connection.
        pid: the process id of a running stdio server (None for http, or where it cannot
            be found: only Linux's /proc is consulted).
    """

    status: Status
    last_error: str | None = None
    restarts: int = 0
    tools: tuple[str, ...] = ()
    protocol_version: str | None = None
    pid: int | None = None


class MCPToolSource:
    """Registers an MCP server's tools in a registry and keeps its connection alive.

    Each tool calls the server through the normal dispatcher path, so it gets the per-call
    timeout, the batch deadline, at-most-once execution per call id and concurrency with
    local tools. Failures become error outputs: an ``isError`` result or a request the
    server rejects is a ``tool_error``, a server that is down or drops the call a
    ``tool_unavailable``. A connection that is lost (a crashed stdio process, a dropped
    HTTP server) is re-established on the next call, after a backoff; after more than
    ``max_restarts`` consecutive failures without a successful call the source gives up
    (``state.status == "failed"``). Tool-list changes the server announces are applied to
    the registry as soon as the new list arrives, and before a call that triggered one
    returns.

    Args:
        server: the server's configuration.
        registry: where the tools are registered (next to local tools; a local tool of the
            same name wins).
        max_restarts: consecutive failed (re)connections or crashes before giving up.
        restart_backoff_s: delay before the first reconnection, doubled after each failure
            (at most 5 s).
        connect_timeout_s: bound on starting the server, the handshake and the tool list.
    """

    def __init__(
        self,
        server: MCPServer,
        registry: ToolRegistry,
        *,
        max_restarts: int = 5,
        restart_backoff_s: float = 0.2,
        connect_timeout_s: float = 30.0,
    ) -> None:
        if max_restarts < 0 or restart_backoff_s < 0 or not connect_timeout_s > 0:
            raise ValueError("max_restarts and restart_backoff_s must be >= 0, the timeout > 0")
        self.server = server
        self.registry = registry
        self.max_restarts = max_restarts
        self.restart_backoff_s = restart_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self._log: Any = structlog.get_logger("tools.mcp").bind(server=server.name)
        self._connection: _Connection | None = None
        self._lock = asyncio.Lock()
        self._reconnecting: asyncio.Task[tuple[Client, _Connection]] | None = None
        self._status: Status = "stopped"
        self._last_error: str | None = None
        self._failures = 0
        self._restarts = 0
        self._next_attempt = 0.0
        self._closed = False
        self._registered: dict[str, Tool] = {}
        self._refresh_task: asyncio.Task[None] | None = None
        self._refresh_again = False
        self._background: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"MCPToolSource({self.server.name!r}, status={self._status!r})"

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def state(self) -> MCPServerState:
        """The server's current state."""
        connection = self._connection
        return MCPServerState(
            status=self._status,
            last_error=self._last_error,
            restarts=self._restarts,
            tools=tuple(self._registered),
            protocol_version=None if connection is None else connection.protocol_version,
            pid=None if connection is None else connection.pid,
        )

    @property
    def tool_names(self) -> list[str]:
        """The names this source registered, in registration order."""
        return list(self._registered)

    async def start(self) -> MCPToolSource:
        """Start (or connect to) the server and register its tools.

        Raises:
            MCPNotInstalledError: the ``mcp`` package is missing.
            ToolUnavailableError: the server did not start or answer.
        """
        require_mcp()
        if self._closed:
            raise RuntimeError("this MCPToolSource is closed")
        async with self._lock:
            if self._connection is None:
                self._status = "connecting"
                try:
                    await self._open()
                except Exception as exc:
                    self._status = "failed"
                    self._last_error = _describe(exc)
                    self._log.warning("mcp.server_start_failed", error=self._last_error)
                    raise ToolUnavailableError(
                        f"MCP server {self.server.name!r} did not start: {self._last_error}"
                    ) from exc
        return self

    async def aclose(self) -> None:
        """Stop the server (or drop the connection) and unregister its tools; idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in (self._refresh_task, self._reconnecting):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task])
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._apply({})
        self._status = "closed"
        self._log.info("mcp.server_stopped")

    async def __aenter__(self) -> MCPToolSource:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def refresh(self) -> None:
        """Fetch the server's tool list now and update the registry."""
        client, _ = await self._client()
        await self._sync_tools(client)

    # -- connection supervision -------------------------------------------------------------

    async def _client(self) -> tuple[Client, _Connection]:
        connection = self._connection
        if connection is not None and connection.client is not None:
            return connection.client, connection
        # One reconnection at a time, in a task of its own: a call whose timeout is shorter
        # than a server's start-up gives up waiting, but the restart goes on for the next.
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = _detached(self._reconnect())
            self._reconnecting.add_done_callback(_retrieve)
        return await asyncio.shield(self._reconnecting)

    async def _reconnect(self) -> tuple[Client, _Connection]:
        name = self.server.name
        while True:
            if self._closed:
                raise ToolUnavailableError(f"MCP server {name!r} is closed")
            if self._failures > self.max_restarts:
                self._status = "failed"
                raise ToolUnavailableError(
                    f"MCP server {name!r} is not restarted again after {self._failures} "
                    f"consecutive failures; last error: {self._last_error}"
                )
            self._status = "restarting"
            delay = self._next_attempt - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._log.info("mcp.server_restarting", attempt=self._failures)
            try:
                connection = await self._open()
            except Exception as exc:
                self._failed(_describe(exc))
                self._log.warning(
                    "mcp.server_restart_failed", attempt=self._failures, error=self._last_error
                )
                continue
            self._restarts += 1
            assert connection.client is not None
            return connection.client, connection

    async def _open(self) -> _Connection:
        connection = _Connection(self.server, self._tools_changed, self._lost, self._log)
        client = await connection.open(self.connect_timeout_s)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await self._sync_tools(client)
        except BaseException:
            await asyncio.shield(connection.close())
            raise
        if self._closed:  # aclose() ran while this connection was being set up
            await connection.close()
            self._apply({})
            raise ToolUnavailableError(f"MCP server {self.server.name!r} is closed")
        self._connection = connection
        self._status = "connected"
        self._log.info(
            "mcp.server_started",
            transport=self.server.transport,
            target=self.server.describe(),
            protocol_version=connection.protocol_version,
            tools=len(self._registered),
        )
        return connection

    def _failed(self, error: str) -> None:
        self._failures += 1
        self._last_error = error
        backoff = self.restart_backoff_s * 2 ** (self._failures - 1)
        self._next_attempt = time.monotonic() + min(backoff, _MAX_BACKOFF_S)
        self._status = "failed" if self._failures > self.max_restarts else "restarting"

    def _lost(self, connection: _Connection, error: str) -> None:
        """The connection ended without being asked to: restart on the next call."""
        if connection is not self._connection or self._closed:
            return
        self._connection = None
        self._failed(error)
        self._log.warning("mcp.server_crashed", error=error, failures=self._failures)
        task = _detached(connection.close())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- calls ------------------------------------------------------------------------------

    async def _call(self, remote: str, arguments: dict[str, Any]) -> str:
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED

        client, connection = await self._client()
        name = self.server.name
        try:
            result = await client.call_tool(remote, arguments)
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED and not connection.ended.is_set():
                raise ToolError(
                    f"MCP server {name!r} rejected the call: {exc.message} (code {exc.code})"
                ) from None
            self._lost(connection, f"connection closed during a call: {exc.message}")
            raise self._dropped(remote, exc.message) from None
        except pydantic.ValidationError as exc:
            raise ToolError(
                f"MCP server {name!r} sent a malformed result ({exc.error_count()} error(s))"
            ) from None
        except _transport_errors() as exc:
            self._lost(connection, _describe(exc))
            raise self._dropped(remote, _describe(exc)) from None
        self._failures = 0
        await self._settle_changes()
        if result.is_error:
            raise ToolError(error_text(result))
        return render_result(result)

    def _dropped(self, remote: str, reason: str) -> ToolUnavailableError:
        return ToolUnavailableError(
            f"MCP server {self.server.name!r} stopped answering during the call of "
            f"{remote!r} ({reason}); it is reconnected on the next call"
        )

    async def _settle_changes(self) -> None:
        """Let a list change announced before this result reach the registry first."""
        await asyncio.sleep(0)  # the event was delivered before the result: let it land
        task = self._refresh_task
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout=self.connect_timeout_s)

    # -- tool list --------------------------------------------------------------------------

    def _tools_changed(self) -> None:
        if self._closed:
            return
        if self._refresh_task is not None and not self._refresh_task.done():
            self._refresh_again = True
            return
        self._refresh_task = _detached(self._refresh_in_background())

    async def _refresh_in_background(self) -> None:
        self._refresh_again = True
        while self._refresh_again and not self._closed:
            self._refresh_again = False
            connection = self._connection
            if connection is None or connection.client is None:
                return  # the next connection lists the tools anyway
            try:
                await self._sync_tools(connection.client)
            except Exception as exc:
                self._log.warning("mcp.refresh_failed", error=_describe(exc))
                return

    async def _sync_tools(self, client: Client) -> None:
        remote_tools: list[RemoteTool] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            remote_tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        wanted: dict[str, Tool] = {}
        for remote in remote_tools:
            if not self.server.exposes(remote.name):
                continue
            try:
                built = self._build_tool(remote)
            except ToolRegistrationError as exc:
                self._log.warning("mcp.tool_skipped", tool=remote.name, error=str(exc))
                continue
            if built.name in wanted:
                self._log.warning("mcp.tool_skipped", tool=remote.name, error="duplicate name")
                continue
            wanted[built.name] = built
        if not self._closed:
            self._apply(wanted)

    def _apply(self, wanted: dict[str, Tool]) -> None:
        """Make the registry hold exactly the wanted tools of this server."""
        before = set(self._registered)
        kept: dict[str, Tool] = {}
        for name, old in self._registered.items():
            new = wanted.get(name)
            if new is not None and _same(old, new):
                kept[name] = old
            elif self.registry.get(name) is old:
                self.registry.remove(name)
        for name, new in wanted.items():
            if name in kept:
                continue
            if name in self.registry:
                self._log.warning("mcp.tool_skipped", tool=name, error="name taken in the registry")
                continue
            self.registry.add(new)
            kept[name] = new
        self._registered = kept
        if self._status != "connecting" and not self._closed and set(kept) != before:
            self._log.info(
                "mcp.tools_changed",
                added=sorted(set(kept) - before),
                removed=sorted(before - set(kept)),
            )

    def _build_tool(self, remote: RemoteTool) -> Tool:
        local = self._local_name(remote.name)
        parameters, strict = self._parameters(local, remote.input_schema)
        model = pydantic.create_model(
            f"{local}_arguments", __config__=pydantic.ConfigDict(extra="allow")
        )
        description = remote.description or remote.title or ""
        schema = FunctionSchema(
            description=description,
            parameters=parameters,
            model=model,
            params=(),
            context_param=None,
            var_keyword=True,  # the server validates its own arguments
        )
        name = remote.name

        async def call_remote(**arguments: Any) -> str:
            return await self._call(name, arguments)

        call_remote.__name__ = local
        return Tool(
            name=local,
            description=description,
            parameters=parameters,
            fn=call_remote,
            is_async=True,
            schema=schema,
            timeout_s=self.server.timeout_for(name),
            strict=strict,
        )

    def _local_name(self, remote: str) -> str:
        name = _INVALID_NAME_CHARS.sub("_", self.server.tool_prefix + remote)[:64]
        validate_name(name)
        return name

    def _parameters(self, local: str, schema: Any) -> tuple[dict[str, Any], bool]:
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise ToolRegistrationError(f"tool {local!r}: its input schema is not an object")
        parameters = normalize_schema({"type": "object", **schema})
        if self.server.strict:
            try:
                return to_strict_schema(parameters, name=local), True
            except (ToolRegistrationError, KeyError, TypeError):
                pass  # free-form objects or odd references: offer it non-strict
        return parameters, False


def _same(old: Tool, new: Tool) -> bool:
    return old.definition() == new.definition() and old.timeout_s == new.timeout_s


class _Connection:
    """One session with the server, owned by a task of its own.

    The SDK's transports are anyio context managers that must be exited by the task that
    entered them (and whose shutdown is shielded against anyio cancellation only), so the
    session lives in a dedicated task that leaves it when asked via ``close()``.
    """

    def __init__(
        self,
        server: MCPServer,
        on_tools_changed: Callable[[], None],
        on_lost: Callable[[_Connection, str], None],
        log: Any,
    ) -> None:
        self.server = server
        self._log = log
        self._errlog: TextIO | None = None
        self.pid: int | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self.client: Client | None = None
        self.protocol_version: str | None = None
        self.ended = asyncio.Event()
        self._on_tools_changed = on_tools_changed
        self._on_lost = on_lost
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self, timeout_s: float) -> Client:
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._task = _detached(self._serve(ready))
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(ready)
        except BaseException:
            await asyncio.shield(self.close())
            raise

    async def close(self) -> None:
        self._stop.set()
        self.client = None
        if self._task is not None:
            await asyncio.wait([self._task])
        if self.pid is not None:
            # The SDK stops the server; processes the server started may outlive it. The
            # server leads its own process group (started in a new session): end the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self._stderr_task is not None:
            # EOF comes when the process is gone, unless a child of it holds the pipe open.
            await asyncio.wait([self._stderr_task], timeout=_STDERR_DRAIN_S)
            self._stderr_task.cancel()
            await asyncio.wait([self._stderr_task])

    async def _serve(self, ready: asyncio.Future[Client]) -> None:
        from mcp import Client
        from mcp_types import Implementation

        try:
            async with contextlib.AsyncExitStack() as stack:
                client = Client(
                    await self._transport(stack),
                    mode=self.server.protocol,
                    cache=None,  # a refresh must see the server's current list
                    message_handler=self._on_message,
                    client_info=Implementation(name="agent-runtime", version="1"),
                )
                await stack.enter_async_context(client)
                if self._errlog is not None:
                    self.pid = await asyncio.to_thread(_child_writing_to, self._errlog.fileno())
                    self._errlog.close()  # the process has its copy: EOF comes when it exits
                self.protocol_version = client.protocol_version
                subscription = await self._listen(stack, client)
                self.client = client
                ready.set_result(client)
                await self._until_stopped(subscription)
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            elif not self._stop.is_set():
                self._on_lost(self, _describe(exc))
        finally:
            self.client = None
            self.ended.set()
            if not ready.done():
                ready.set_exception(ToolUnavailableError("the connection was closed"))

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Transport:
        server = self.server
        if server.transport == "stdio":
            from mcp import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=str(server.command),
                args=list(server.args),
                env=dict(server.env) or None,
                cwd=server.cwd,
            )
            return stdio_client(params, errlog=self._stderr_pipe(stack))
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers=dict(server.headers), timeout=httpx2.Timeout(30.0, read=300.0)
            )
        )
        return streamable_http_client(str(server.url), http_client=http)

    def _stderr_pipe(self, stack: contextlib.AsyncExitStack) -> TextIO:
        """The server's stderr: a pipe whose lines become ``mcp.server_stderr`` log events,
        so a library that configures no logging stays silent."""
        read_fd, write_fd = os.pipe()
        self._errlog = open(write_fd, "w", encoding="utf-8")  # noqa: SIM115 - closed by the stack
        stack.callback(self._errlog.close)
        self._stderr_task = _detached(self._log_stderr(read_fd))
        return self._errlog

    async def _log_stderr(self, read_fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_STDERR_LINE_LIMIT)
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than the limit: dropped by the reader
                    continue
                if not line:
                    return
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    self._log.info("mcp.server_stderr", line=text[:_STDERR_LOG_CHARS])
        finally:
            transport.close()

    async def _listen(
        self, stack: contextlib.AsyncExitStack, client: Client
    ) -> Subscription | None:
        """Subscribe to tool-list changes on 2026-07-28+ connections (earlier ones notify)."""
        from mcp.client.subscriptions import listen
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        tools = client.server_capabilities.tools
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS or not (
            tools and tools.list_changed
        ):
            return None
        return await stack.enter_async_context(listen(client.session, tools_list_changed=True))

    async def _until_stopped(self, subscription: Subscription | None) -> None:
        if subscription is None:
            await self._stop.wait()
            return
        import anyio

        async def watch() -> None:
            try:
                async for _event in subscription:
                    self._on_tools_changed()
                reason = "the server closed the connection"
            except Exception as exc:
                reason = _describe(exc)
            if not self._stop.is_set():
                self._stop.set()
                self._on_lost(self, reason)

        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            await self._stop.wait()
            group.cancel_scope.cancel()

    async def _on_message(self, message: Any) -> None:
        if getattr(message, "method", None) == _TOOL_LIST_CHANGED:
            self._on_tools_changed()


def _detached(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task in a fresh context: connections outlive the tool call (and the run) that
    happened to start them, so they must not carry its context variables."""
    return asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())


def _child_writing_to(fd: int) -> int | None:
    """The pid of our child process whose stderr is the pipe behind fd (Linux /proc only)."""
    target = f"pipe:[{os.fstat(fd).st_ino}]"
    parent = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/fd/2") != target:
                continue
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:  # field 4 of stat: the parent's pid
            return int(entry)
    return None


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a task's exception as seen: its waiters may all have given up."""
    if not task.cancelled():
        task.exception()


def _transport_errors() -> tuple[type[BaseException], ...]:
    import anyio
    import httpx2

    return (
        OSError,
        anyio.ClosedResourceError,
        anyio.BrokenResourceError,
        anyio.EndOfStream,
        httpx2.TransportError,
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
