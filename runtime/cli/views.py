"""Terminal views of a run: a live ANSI view on a terminal, log-like lines elsewhere.

The live view (plain ANSI, no extra dependency) streams text as it arrives and redraws one
line per running tool call with its elapsed time; the plain view writes one line per event
that tests and pipes can read.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from runtime.cli.format import call_signature, one_line, status_summary, usage_fields
from runtime.core.hooks import EventHandler, StatusUpdate
from runtime.core.result import RunResult
from runtime.errors import RuntimeAPIError

if TYPE_CHECKING:
    from runtime.protocol.snapshots import TextSnapshot
    from tools import ToolCall, ToolCallResult

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


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

    def finished(self, result: RunResult[Any], seconds: float) -> None:
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

    async def on_status(self, update: StatusUpdate) -> None:
        if update.status != self._last_status:
            self._last_status = update.status
            self._end_text()
            self._line(f"run.status status={update.status} run_id={update.id}")

    async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
        if self.stream_text:
            self._open_text = True
            self.out.write(delta)
            self.out.flush()

    async def on_message_done(self, snapshot: TextSnapshot) -> None:
        if self.stream_text:
            self._end_text()
        elif snapshot.text:
            self._line("assistant: " + snapshot.text.replace("\n", "\n           "))

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

    def finished(self, result: RunResult[Any], seconds: float) -> None:
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
        self._stopped = False

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

    def finished(self, result: RunResult[Any], seconds: float) -> None:
        self._settle()
        mark = self._style("1;32", "✓") if result.ok else self._style("1;31", "✗")
        self._write(f"{mark} {self._style('2', status_summary(result, seconds))}\n")

    async def aclose(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None and not ticker.done():
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        if any(row.result is None for row in self._rows.values()):
            # Interrupted: a call still shown as running would never finish on screen.
            self._stopped = True
            self._settle()

    # -- streamed text ------------------------------------------------------------------------

    async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
        if not self._in_text:
            self._settle()
            self._in_text = True
            self._write(self._style("1;35", "assistant") + " ")
        self._write(delta)

    async def on_message_done(self, snapshot: TextSnapshot) -> None:
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
        if result is None and self._stopped:
            elapsed = f"stopped after {now - row.started:.1f}s"
            return f"  {self._style('31', '■')} {shown_sig}  {self._style('2', elapsed)}"
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
