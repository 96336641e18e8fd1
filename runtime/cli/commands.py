"""``python -m runtime demo`` and ``python -m runtime run``: conversations in a terminal.

``demo`` starts the emulator in-process, registers the example tools of
:mod:`runtime.demo_tools` and plays a three-turn conversation: five tool calls executed in
parallel in one round; a booking that pauses the run until a person approves it (typed
``y``/``n`` at a prompt; ``--approvals approve|reject`` answers for everyone, and without a
terminal on stdin the booking is approved automatically, which the demo says); then a plain
text turn. ``run`` sends one message to the configured
server, or to the embedded emulator when no key and server address are configured.

``run`` options: ``--assistant`` (required against a configured Assistants server),
``--thread`` (continue a thread; with ``--protocol responses``, a previous response id),
``--tools MODULE`` (repeatable: a module's ``registry``, or its ``@tool`` functions),
``--builtin-tools``, ``--mcp NAME=COMMAND``, ``--model``, ``--config``, ``--plain``,
``--verbose``. Text streams to stdout; tool lines and the final status line go to stderr (on
a terminal, a live view; otherwise one ``key=value`` line per event). Exit codes: 0 when the
run completed, 1 when it ended otherwise or an API error occurred, 2 for usage,
configuration or tool-import errors, 130 on Ctrl-C (the run is cancelled on the server
first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from runtime.assistants.client import AssistantsClient
from runtime.backends import BackendSession, open_backend
from runtime.cli.tools import load_tool_registry, mcp_tools, open_mcp_sources, parse_mcp_specs
from runtime.cli.views import ConsoleView, make_view
from runtime.config import ConfigError, Settings, enable_tracing, load_settings
from runtime.core.approval import Decision, PendingApproval, PendingCall, approve, reject
from runtime.core.backend import TurnRef
from runtime.core.result import RunResult
from runtime.demo_tools import DEMO_BOOKING, DEMO_FOLLOW_UP, DEMO_REQUEST, build_demo_registry
from runtime.emulator import Emulator
from runtime.errors import RuntimeAPIError
from runtime.logging import configure_logging as _configure_logging
from tools import ToolRegistry
from tools.mcp import MCPConfigError, MCPNotInstalledError, MCPServer, ToolUnavailableError

EMULATOR_API_KEY = "sk-emulator-local"
"""The key the CLI sends to its embedded emulator (which accepts any non-empty key)."""

DEFAULT_MODEL = "gpt-4o"


class Conversation:
    """Sends user messages one after the other on one conversation, whatever the protocol.

    Assistants: the first message creates a thread (unless ``conversation_id`` names one),
    later ones are added to it. Responses with conversations (``conversations = true``): the
    same with a Conversation. Responses without: each message continues from the previous
    response (``conversation_id`` is a response id).

    Args:
        backend: an open :class:`~runtime.backends.BackendSession`.
        assistant_id: the assistant (Assistants only).
        conversation_id: a thread id (Assistants) or previous response id (Responses).
        params: run / request parameters (``model`` for Responses).
    """

    def __init__(
        self,
        backend: BackendSession,
        assistant_id: str | None = None,
        conversation_id: str | None = None,
        **params: Any,
    ) -> None:
        self.backend = backend
        self.assistant_id = assistant_id
        self.conversation_id = conversation_id
        self.params = params

    async def send(self, text: str) -> RunResult[Any]:
        """Run the assistant on ``text`` and return the run's result."""
        # A thread or a conversation is continued by its id; a chain of responses (Responses
        # without conversations) by the last response's id.
        chained = self.backend.protocol == "responses" and not self.backend.conversations
        key = "previous" if chained else "conversation"
        params: dict[str, Any] = {key: self.conversation_id, **self.params}
        result = await self.backend.start(text, agent=self.assistant_id, **params)
        return self._moved_on(result)

    async def resume(
        self, pending: PendingApproval, decisions: dict[str, Decision]
    ) -> RunResult[Any]:
        """Resume a run paused for approval with the person's ``decisions``."""
        ref = TurnRef(pending.turn_id, pending.conversation)
        result = await self.backend.resume(ref, pending=pending, decisions=decisions, **self.params)
        return self._moved_on(result)

    def _moved_on(self, result: RunResult[Any]) -> RunResult[Any]:
        if self.backend.protocol == "responses" and not self.backend.conversations:
            self.conversation_id = result.run_id
        else:
            self.conversation_id = result.conversation_id or self.conversation_id
        return result


async def _emulator_assistant(
    backend: BackendSession, registry: ToolRegistry, model: str
) -> str | None:
    """Create an assistant on the embedded emulator (Assistants only; None for Responses)."""
    client = backend.client
    if backend.protocol != "assistants" or not isinstance(client, AssistantsClient):
        return None
    assistant = await client.create_assistant(
        model=model, name="agent-runtime", tools=registry.definitions() or None
    )
    return assistant.id


def _demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime demo",
        description="A conversation with parallel tool calls on the embedded emulator.",
    )
    parser.add_argument(
        "--protocol",
        choices=("assistants", "responses"),
        default="assistants",
        help="wire protocol (default: assistants)",
    )
    parser.add_argument(
        "--delta-delay",
        type=float,
        default=None,
        metavar="SECONDS",
        help="pause between streamed text deltas (default: [demo] delta_delay_s)",
    )
    parser.add_argument("--plain", action="store_true", help="log-like lines even on a terminal")
    parser.add_argument("--verbose", action="store_true", help="show the runtime's INFO logs")
    parser.add_argument(
        "--approvals",
        choices=("ask", "approve", "reject"),
        default="ask",
        help="calls that need approval: ask at a y/n prompt (default; approved automatically "
        "when stdin is not a terminal), or approve / reject them all",
    )
    _add_mcp_argument(parser)
    return parser


def _add_mcp_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mcp",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="offer an MCP server's tools, as NAME__TOOL (repeatable): 'NAME=COMMAND ARG ...' "
        "starts it over stdio, 'NAME=http://HOST:PORT/mcp' connects over streamable HTTP",
    )


def _mcp_servers(specs: Sequence[str]) -> list[MCPServer] | None:
    """The parsed ``--mcp`` values, or None after printing why they are unusable."""
    try:
        return parse_mcp_specs(specs)
    except (MCPConfigError, MCPNotInstalledError) as exc:
        print(f"error: --mcp: {exc}", file=sys.stderr)
        return None


class _QuietInterrupt(logging.Filter):
    """Drop the runner's abort warnings caused by Ctrl-C: the CLI reports it in one line."""

    _EVENTS = frozenset({"run.aborting", "run.abort_detached"})
    _ERRORS = frozenset({"CancelledError", "KeyboardInterrupt", None})

    def filter(self, record: logging.LogRecord) -> bool:
        event = record.msg
        if isinstance(event, dict) and event.get("event") in self._EVENTS:
            return event.get("error") not in self._ERRORS
        return True


def configure_logging(level: str, fmt: str, stream: Any) -> None:
    """The library's logging setup, minus the noise of an interrupted run."""
    _configure_logging(level, fmt, stream)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _QuietInterrupt) for f in handler.filters):
            handler.addFilter(_QuietInterrupt())


def demo_main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m runtime demo``; returns the exit code."""
    args = _demo_parser().parse_args(list(argv))
    try:
        settings = load_settings(protocol=args.protocol)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    servers = _mcp_servers(args.mcp)
    if servers is None:
        return 2
    configure_logging("INFO" if args.verbose else "WARNING", "console", sys.stderr)
    delay = settings.demo.delta_delay_s if args.delta_delay is None else args.delta_delay
    view = make_view(sys.stdout, plain=args.plain)
    try:
        ok = asyncio.run(_demo(settings, view, delay, servers, args.approvals))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ToolUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if ok else 1


async def _demo(
    settings: Settings,
    view: ConsoleView,
    delay: float,
    servers: Sequence[MCPServer] = (),
    approvals: str = "ask",
) -> bool:
    registry = build_demo_registry()
    try:
        async with (
            mcp_tools(servers, registry),
            Emulator(delta_delay_s=delay) as emu,
            open_backend(
                _without_azure(settings),
                registry,
                handler=view,
                base_url=emu.base_url,
                api_key=EMULATOR_API_KEY,
            ) as backend,
        ):
            view.header(
                f"agent-runtime demo · embedded emulator {emu.base_url} · protocol "
                f"{backend.protocol} · tools: {', '.join(registry.names())}"
            )
            view.header(
                "(the emulator's scripted model turns each /call line of a message into a "
                "tool call; the runtime runs them concurrently and submits all outputs at once)"
            )
            assistant_id = await _emulator_assistant(backend, registry, DEFAULT_MODEL)
            conversation = Conversation(backend, assistant_id)
            ok = True
            for text in (DEMO_REQUEST, DEMO_BOOKING, DEMO_FOLLOW_UP):
                ok = await _turn(view, conversation, text, approvals) and ok
            return ok
    finally:
        await view.aclose()


def _without_azure(settings: Settings) -> Settings:
    """The settings with the Azure endpoint unset (the embedded emulator is OpenAI style)."""
    api = settings.api.model_copy(update={"azure_endpoint": None})
    return settings.model_copy(update={"api": api})


async def _turn(
    view: ConsoleView, conversation: Conversation, text: str, approvals: str = "ask"
) -> bool:
    view.user(text)
    started = time.monotonic()
    result = await conversation.send(text)
    while result.pending is not None:  # paused: a call waits for a person
        decisions = await _ask(view, result.pending, approvals)
        result = await conversation.resume(result.pending, decisions)
    view.finished(result, time.monotonic() - started)
    return result.ok


async def _ask(view: ConsoleView, pending: PendingApproval, mode: str) -> dict[str, Decision]:
    """The person's decision on each pending call: typed y/n at a prompt, or ``mode``'s."""
    if mode == "ask" and not sys.stdin.isatty():
        view.header("approval: stdin is not a terminal, so approving automatically (--approvals)")
        mode = "approve"
    decisions: dict[str, Decision] = {}
    for call in pending.calls:
        if mode == "ask":
            answer = await asyncio.to_thread(_prompt, f"approve {_describe(call)}? [y/n] ")
            yes = answer.strip().lower() in ("y", "yes")
        else:
            yes = mode == "approve"
            view.header(f"approval: {'approved' if yes else 'rejected'} {_describe(call)}")
        decisions[call.id] = approve(by="demo") if yes else reject("the person said no", by="demo")
    return decisions


def _prompt(text: str) -> str:
    """Ask on stdout and read one line (``input()`` would prompt on stderr at a terminal);
    an empty read (the terminal closed) is a no."""
    sys.stdout.write(text)
    sys.stdout.flush()
    return sys.stdin.readline() or "n"


def _describe(call: PendingCall) -> str:
    arguments = ", ".join(f"{k}={v!r}" for k, v in call.arguments.items())
    return f"{call.tool}({arguments})"


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime run",
        description="Send one message and stream the answer. Uses the configured server "
        "(OPENAI_API_KEY + OPENAI_BASE_URL, or AZURE_OPENAI_ENDPOINT + key); without one, "
        "the embedded emulator.",
    )
    parser.add_argument("message", nargs="+", help="the user message (words are joined)")
    parser.add_argument(
        "--assistant", help="assistant id (Assistants protocol; optional on the emulator)"
    )
    parser.add_argument(
        "--thread",
        help="continue this thread (Assistants), this conversation (Responses with "
        "conversations = true) or from this response id (Responses)",
    )
    parser.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="MODULE",
        help="import tools from a module or .py file (repeatable); its `registry` "
        "attribute, else its @tool functions",
    )
    parser.add_argument(
        "--builtin-tools", action="store_true", help="offer the builtin clock and calculator"
    )
    parser.add_argument(
        "--protocol",
        choices=("assistants", "responses"),
        default=None,
        help="wire protocol (default: the configured one)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="Responses: the model; Assistants: the model of the assistant created on the "
        f"emulator (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--config", help="settings TOML file (default: config/runtime.toml)")
    parser.add_argument("--plain", action="store_true", help="no live view even on a terminal")
    parser.add_argument("--verbose", action="store_true", help="log at the configured level")
    _add_mcp_argument(parser)
    return parser


def run_main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m runtime run``; returns the exit code.

    Exit codes: 0 when the run completed, 1 when it ended otherwise or an API error
    occurred, 2 for usage, configuration or tool-import errors (an ``--mcp`` server that does
    not start included), 130 on Ctrl-C.
    """
    args = _run_parser().parse_args(list(argv))
    overrides = {"protocol": args.protocol} if args.protocol else {}
    try:
        settings = load_settings(args.config, **overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level if args.verbose else "WARNING", "console", sys.stderr)
    try:
        enable_tracing(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        registry = load_tool_registry(args.tools, builtins=args.builtin_tools)
    except Exception as exc:  # any import-time failure of user code is a usage error here
        print(f"error: cannot load tools: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    args.mcp_servers = _mcp_servers(args.mcp)
    if args.mcp_servers is None:
        return 2
    remote = settings.has_remote_server
    if remote and settings.protocol == "assistants" and not args.assistant:
        print("error: --assistant is required with a configured server", file=sys.stderr)
        return 2
    view = make_view(sys.stdout, sys.stderr, plain=args.plain, stream_text=True)
    try:
        result = asyncio.run(_run(settings, view, registry, args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeAPIError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except ToolUnavailableError as exc:  # an --mcp server did not start
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if result.ok else 1


async def _run(
    settings: Settings, view: ConsoleView, registry: ToolRegistry, args: argparse.Namespace
) -> RunResult[Any]:
    message = " ".join(args.message)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(view.aclose)
        overrides: dict[str, Any] = {}
        if not settings.has_remote_server:
            emu = await stack.enter_async_context(Emulator())
            print(
                "note: no API key and server configured (OPENAI_API_KEY + OPENAI_BASE_URL or "
                f"AZURE_OPENAI_ENDPOINT + key); using the embedded emulator at {emu.base_url}",
                file=sys.stderr,
            )
            settings = _without_azure(settings)
            overrides = {"base_url": emu.base_url, "api_key": EMULATOR_API_KEY}
        await open_mcp_sources(stack, args.mcp_servers, registry)
        backend = await stack.enter_async_context(
            open_backend(settings, registry, handler=view, **overrides)
        )
        assistant_id = args.assistant
        if assistant_id is None and overrides:
            assistant_id = await _emulator_assistant(backend, registry, args.model or DEFAULT_MODEL)
        params = {"model": args.model} if args.model and backend.protocol == "responses" else {}
        conversation = Conversation(backend, assistant_id, args.thread, **params)
        started = time.monotonic()
        result = await conversation.send(message)
        view.finished(result, time.monotonic() - started)
        return result
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: the stack may swallow)
