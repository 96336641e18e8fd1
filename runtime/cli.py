"""``python -m runtime demo`` and ``python -m runtime run``: conversations in a terminal.

``demo`` starts the emulator in-process, registers the example tools of
:mod:`runtime.demo_tools` and plays a two-turn conversation: five tool calls executed in
parallel in one round, then a plain text turn. ``run`` sends one message to the configured
server, or to the embedded emulator when no key and server address are configured.

Output has two shapes: on a terminal, a live view (plain ANSI, no extra dependency) that
streams text as it arrives and redraws one line per running tool call with its elapsed time;
otherwise log-like lines that tests and pipes can read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from runtime.backends import BackendSession, open_backend
from runtime.client import AssistantsClient
from runtime.config import ConfigError, Settings, load_settings
from runtime.demo_tools import DEMO_FOLLOW_UP, DEMO_REQUEST, build_demo_registry
from runtime.emulator import Emulator
from runtime.errors import RuntimeAPIError
from runtime.handler import EventHandler
from runtime.logging import configure_logging
from runtime.result import RunResult
from tools import ToolRegistry, default_registry

if TYPE_CHECKING:
    from runtime.protocol.models import Message, Run
    from runtime.stream import MessageSnapshot
    from tools import ToolCall, ToolCallResult

__all__ = [
    "ConsoleView",
    "Conversation",
    "LiveView",
    "PlainView",
    "call_signature",
    "demo_main",
    "load_tool_registry",
    "make_view",
    "one_line",
    "run_main",
    "status_summary",
    "usage_fields",
]

EMULATOR_API_KEY = "sk-emulator-local"
"""The key the CLI sends to its embedded emulator (which accepts any non-empty key)."""

DEFAULT_MODEL = "gpt-4o"
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


# --- formatting helpers ---------------------------------------------------------------------


def one_line(text: str, limit: int) -> str:
    """Collapse whitespace runs to single spaces and cut to ``limit`` characters (with …)."""
    flat = " ".join(text.split())
    if limit <= 0:
        return ""
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)] + "…"


def call_signature(name: str, arguments: str) -> str:
    """``name(key="value", n=1)`` from JSON arguments (the raw text when not an object)."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return f"{name}({arguments})"
    if not isinstance(parsed, dict):
        return f"{name}({arguments})"
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in parsed.items())
    return f"{name}({inner})"


def usage_fields(usage: Any) -> dict[str, int]:
    """Token counts of an Assistants ``Usage`` or a Responses usage object (0 when absent)."""
    if usage is None:
        return {}
    prompt = getattr(usage, "prompt_tokens", None)
    if prompt is None:
        prompt = getattr(usage, "input_tokens", 0)
    completion = getattr(usage, "completion_tokens", None)
    if completion is None:
        completion = getattr(usage, "output_tokens", 0)
    total = getattr(usage, "total_tokens", None) or (prompt or 0) + (completion or 0)
    return {"prompt": int(prompt or 0), "completion": int(completion or 0), "total": int(total)}


def status_summary(result: RunResult, seconds: float) -> str:
    """One human line: status, rounds, tool calls, tokens and wall time."""
    parts = [result.status]
    if result.reason or result.incomplete_reason:
        parts[0] += f" ({result.reason or result.incomplete_reason})"
    elif result.status == "failed" and result.last_error is not None:
        parts[0] += f" ({getattr(result.last_error, 'message', '')})"
    parts.append(f"{result.rounds} tool round{'s' if result.rounds != 1 else ''}")
    parts.append(f"{len(result.tool_calls)} tool call{'s' if len(result.tool_calls) != 1 else ''}")
    tokens = usage_fields(result.usage)
    if tokens:
        parts.append(
            f"tokens {tokens['prompt']} prompt + {tokens['completion']} completion"
            f" = {tokens['total']}"
        )
    parts.append(f"{seconds:.2f} s")
    return " · ".join(parts)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --- views ----------------------------------------------------------------------------------


@dataclass
class _Row:
    """One tool call on screen."""

    name: str
    arguments: str
    started: float
    result: ToolCallResult | None = None


class ConsoleView(EventHandler):
    """An EventHandler that shows a conversation; subclasses decide the shape."""

    def header(self, text: str) -> None:
        """Show a line about the session (server, protocol, tools)."""
        raise NotImplementedError

    def user(self, text: str) -> None:
        """Show the user's message before its run starts."""
        raise NotImplementedError

    def finished(self, result: RunResult, seconds: float) -> None:
        """Show the run's outcome."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop anything the view runs in the background."""


class PlainView(ConsoleView):
    """Log-like lines, one per event, no ANSI: for pipes, files and tests.

    Args:
        out: where assistant text goes.
        meta: where everything else goes (the same stream as ``out`` by default).
        stream_text: write text deltas as they arrive (else one ``assistant:`` line per
            message when it is done).
    """

    def __init__(self, out: TextIO, meta: TextIO | None = None, *, stream_text: bool = False):
        self.out = out
        self.meta = meta if meta is not None else out
        self.stream_text = stream_text
        self._last_status: str | None = None
        self._open_text = False

    def _line(self, text: str) -> None:
        self.meta.write(text + "\n")
        self.meta.flush()

    def header(self, text: str) -> None:
        self._line(text)

    def user(self, text: str) -> None:
        self._line("user: " + text.replace("\n", "\n      "))

    async def on_run_status(self, run: Run) -> None:
        if run.status != self._last_status:
            self._last_status = run.status
            self._end_text()
            self._line(f"run.status status={run.status} run_id={run.id}")

    async def on_text_delta(self, delta: str, snapshot: MessageSnapshot) -> None:
        if self.stream_text:
            self._open_text = True
            self.out.write(delta)
            self.out.flush()

    async def on_message_done(self, message: Message) -> None:
        if self.stream_text:
            self._end_text()
        elif message.text:
            self._line("assistant: " + message.text.replace("\n", "\n           "))

    async def on_tool_call_started(self, call: ToolCall) -> None:
        self._line(f"tool.started name={call.name} id={call.id} arguments={call.arguments}")

    async def on_tool_call_finished(self, result: ToolCallResult) -> None:
        outcome = (result.error_type or "error") if result.is_error else "ok"
        self._line(
            f"tool.finished name={result.name} id={result.tool_call_id} outcome={outcome} "
            f"seconds={result.seconds:.2f} output={one_line(result.output, 300)}"
        )

    async def on_error(self, error: RuntimeAPIError) -> None:
        self._line(f"stream.error type={type(error).__name__} message={error.message}")

    def _end_text(self) -> None:
        if self._open_text:
            self._open_text = False
            self.out.write("\n")
            self.out.flush()

    def finished(self, result: RunResult, seconds: float) -> None:
        self._end_text()
        self._last_status = None
        tokens = usage_fields(result.usage)
        fields = [
            f"status={result.status}",
            f"rounds={result.rounds}",
            f"tool_calls={len(result.tool_calls)}",
            *(f"{k}_tokens={v}" for k, v in tokens.items()),
            f"seconds={seconds:.2f}",
            f"run_id={result.run_id}",
        ]
        if result.thread_id:
            fields.append(f"thread_id={result.thread_id}")
        if result.reason:
            fields.append(f"reason={json.dumps(result.reason)}")
        self._line("run.finished " + " ".join(fields))


class LiveView(ConsoleView):
    """A live terminal view in plain ANSI.

    Text is written as it streams. Each tool call gets one line (name, arguments, a spinner
    and elapsed seconds while it runs; the time and result once finished); the block of tool
    lines is redrawn in place while it is the last thing on screen.

    Args:
        out: a terminal stream.
        color: use colours (off when ``NO_COLOR`` is set).
        tick_s: redraw interval of running tool calls.
    """

    def __init__(self, out: TextIO, *, color: bool | None = None, tick_s: float = 0.1) -> None:
        self.out = out
        self.color = ("NO_COLOR" not in os.environ) if color is None else color
        self.tick_s = tick_s
        self._rows: dict[str, _Row] = {}
        self._drawn = 0
        self._shown: dict[str, bool] = {}
        self._frame = 0
        self._in_text = False
        self._ticker: asyncio.Task[None] | None = None

    # -- primitives ---------------------------------------------------------------------------

    def _style(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    # -- session lines ------------------------------------------------------------------------

    def header(self, text: str) -> None:
        self._settle()
        self._write(self._style("2", text) + "\n")

    def user(self, text: str) -> None:
        self._settle()
        lines = text.splitlines() or [""]
        shown = [self._style("1;34", "you") + " " + lines[0]]
        for line in lines[1:]:
            styled = self._style("2", line) if line.lstrip().startswith("/call") else line
            shown.append("    " + styled)
        self._write("\n" + "\n".join(shown) + "\n")

    def finished(self, result: RunResult, seconds: float) -> None:
        self._settle()
        mark = self._style("1;32", "✓") if result.ok else self._style("1;31", "✗")
        self._write(f"{mark} {self._style('2', status_summary(result, seconds))}\n")

    async def aclose(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None and not ticker.done():
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)

    # -- streamed text ------------------------------------------------------------------------

    async def on_text_delta(self, delta: str, snapshot: MessageSnapshot) -> None:
        if not self._in_text:
            self._settle()
            self._in_text = True
            self._write(self._style("1;35", "assistant") + " ")
        self._write(delta)

    async def on_message_done(self, message: Message) -> None:
        self._end_text()

    def _end_text(self) -> None:
        if self._in_text:
            self._in_text = False
            self._write("\n")

    def _settle(self) -> None:
        """Leave the tool block as it is on screen and end open text: new output follows."""
        self._end_text()
        if self._rows:
            self._draw()
        self._rows = {}
        self._drawn = 0
        self._shown = {}

    # -- tool calls ---------------------------------------------------------------------------

    async def on_tool_call_started(self, call: ToolCall) -> None:
        self._end_text()
        self._rows[call.id] = _Row(call.name, call.arguments, time.monotonic())
        self._draw()
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(), name="live-view-ticker")

    async def on_tool_call_finished(self, result: ToolCallResult) -> None:
        row = self._rows.get(result.tool_call_id)
        if row is None:  # a cached result of an earlier round: show it as a new line
            row = self._rows[result.tool_call_id] = _Row(result.name, result.arguments, 0.0)
        row.result = result
        self._draw()

    async def on_error(self, error: RuntimeAPIError) -> None:
        self._settle()
        self._write(self._style("33", f"! {type(error).__name__}: {error.message}") + "\n")

    async def _tick(self) -> None:
        while any(row.result is None for row in self._rows.values()):
            await asyncio.sleep(self.tick_s)
            self._frame += 1
            if self._rows:
                self._draw()

    def _draw(self) -> None:
        now, size = time.monotonic(), shutil.get_terminal_size((100, 24))
        width = max(size.columns - 1, 40)
        if len(self._rows) > size.lines - 2:
            self._append(now, width)  # taller than the screen: it cannot be redrawn in place
            return
        parts = [f"\x1b[{self._drawn}F"] if self._drawn else []
        for row in self._rows.values():
            parts.append("\x1b[2K" + self._render(row, now, width) + "\n")
        self._drawn = len(self._rows)
        self._write("".join(parts))

    def _append(self, now: float, width: int) -> None:
        """Print a line per tool call when it starts and when it finishes, no redrawing."""
        parts = []
        for call_id, row in self._rows.items():
            finished = row.result is not None
            if self._shown.get(call_id) != finished:
                self._shown[call_id] = finished
                parts.append(self._render(row, now, width) + "\n")
        self._drawn = 0
        self._write("".join(parts))

    def _render(self, row: _Row, now: float, width: int) -> str:
        signature = one_line(call_signature(row.name, row.arguments), min(60, width // 2))
        name, _, rest = signature.partition("(")
        shown_sig = self._style("36", name) + ("(" + rest if rest else "")
        result = row.result
        if result is None:
            spinner = _SPINNER[self._frame % len(_SPINNER)]
            state = f"running {now - row.started:4.1f}s"
            return f"  {self._style('33', spinner)} {shown_sig}  {self._style('2', state)}"
        mark = self._style("31", "✗") if result.is_error else self._style("32", "✓")
        timing = f"{result.seconds:4.2f}s"
        room = width - len(signature) - len(timing) - 10
        output = one_line(result.output, room)
        arrow = self._style("31" if result.is_error else "2", "→ " + output)
        return f"  {mark} {shown_sig}  {self._style('2', timing)} {arrow}"


def make_view(
    out: TextIO, meta: TextIO | None = None, *, plain: bool = False, stream_text: bool = False
) -> ConsoleView:
    """A live view on a terminal (unless ``plain``), else log-like lines."""
    if not plain and _isatty(out) and (meta is None or _isatty(meta)):
        return LiveView(out)
    return PlainView(out, meta, stream_text=stream_text)


# --- conversations --------------------------------------------------------------------------


class Conversation:
    """Sends user messages one after the other on one conversation, whatever the protocol.

    Assistants: the first message creates a thread (unless ``conversation_id`` names one),
    later ones are added to it. Responses: each message continues from the previous
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

    async def send(self, text: str) -> RunResult:
        """Run the assistant on ``text`` and return the run's result."""
        result = await self.backend.start(
            text,
            assistant_id=self.assistant_id,
            thread_id=self.conversation_id,
            **self.params,
        )
        if self.backend.protocol == "responses":
            self.conversation_id = result.run_id
        else:
            self.conversation_id = result.thread_id or self.conversation_id
        return result


async def _emulator_assistant(
    backend: BackendSession, registry: ToolRegistry, model: str
) -> str | None:
    """Create an assistant on the embedded emulator (Assistants only; None for Responses)."""
    client = backend.client
    if not isinstance(client, AssistantsClient):
        return None
    assistant = await client.create_assistant(
        model=model, name="agent-runtime", tools=registry.definitions() or None
    )
    return assistant.id


# --- tools for `run` ------------------------------------------------------------------------


def _import_tools_module(spec: str) -> ModuleType:
    """Import ``package.module`` or a ``path/to/file.py``."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec).expanduser().resolve()
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load tools from {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `python -m` users expect their cwd modules
    return importlib.import_module(spec)


def load_tool_registry(modules: Sequence[str], *, builtins: bool = False) -> ToolRegistry:
    """Import tool modules and gather their tools into one registry.

    A module contributes its ``registry`` attribute when it is a :class:`ToolRegistry`,
    else whatever its ``@tool`` functions registered on :data:`tools.default_registry`.

    Args:
        modules: module names (``myapp.tools``) or ``.py`` paths.
        builtins: add the builtin clock and calculator.

    Returns:
        A new registry (a name registered twice keeps its first tool).
    """
    sources: list[ToolRegistry] = []
    for spec in modules:
        module = _import_tools_module(spec)
        own = getattr(module, "registry", None)
        sources.append(own if isinstance(own, ToolRegistry) else default_registry)
    combined = ToolRegistry()
    if builtins:
        from tools.builtin import register_builtins

        register_builtins(combined)
    for source in sources:
        for item in source:
            if item.name not in combined:
                combined.add(item)
    return combined


# --- demo -----------------------------------------------------------------------------------


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
    return parser


def demo_main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m runtime demo``; returns the exit code."""
    args = _demo_parser().parse_args(list(argv))
    try:
        settings = load_settings(protocol=args.protocol)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging("INFO" if args.verbose else "WARNING", "console", sys.stderr)
    delay = settings.demo.delta_delay_s if args.delta_delay is None else args.delta_delay
    view = make_view(sys.stdout, plain=args.plain)
    try:
        ok = asyncio.run(_demo(settings, view, delay))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if ok else 1


async def _demo(settings: Settings, view: ConsoleView, delay: float) -> bool:
    registry = build_demo_registry()
    try:
        async with (
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
            for text in (DEMO_REQUEST, DEMO_FOLLOW_UP):
                ok = await _turn(view, conversation, text) and ok
            return ok
    finally:
        await view.aclose()


def _without_azure(settings: Settings) -> Settings:
    """The settings with the Azure endpoint unset (the embedded emulator is OpenAI style)."""
    api = settings.api.model_copy(update={"azure_endpoint": None})
    return settings.model_copy(update={"api": api})


async def _turn(view: ConsoleView, conversation: Conversation, text: str) -> bool:
    view.user(text)
    started = time.monotonic()
    result = await conversation.send(text)
    view.finished(result, time.monotonic() - started)
    return result.ok


# --- run ------------------------------------------------------------------------------------


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
        help="continue this thread (Assistants) or from this response id (Responses)",
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
    return parser


def run_main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m runtime run``; returns the exit code.

    Exit codes: 0 when the run completed, 1 when it ended otherwise or an API error
    occurred, 2 for usage, configuration or tool-import errors, 130 on Ctrl-C.
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
        registry = load_tool_registry(args.tools, builtins=args.builtin_tools)
    except Exception as exc:  # any import-time failure of user code is a usage error here
        print(f"error: cannot load tools: {exc!r}", file=sys.stderr)
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
    return 0 if result.ok else 1


async def _run(
    settings: Settings, view: ConsoleView, registry: ToolRegistry, args: argparse.Namespace
) -> RunResult:
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
