"""Incremental server-sent-events decoder (WHATWG framing, bytes in, records out).

Feed it byte chunks exactly as they arrive from the socket; it yields one :class:`SSERecord`
per dispatched event. It handles LF, CRLF and CR line endings (also when a CRLF pair is split
between two chunks), comments, ``id:`` and ``retry:`` fields, multi-line ``data:``, events
without an ``event:`` line, multi-byte UTF-8 split across chunks and a stream that ends
without a trailing blank line. Lines and events are bounded in size (:class:`SSEDecodeError`
past the limit) so a hostile stream cannot grow memory without bound.

Deviation from the letter of the spec, on purpose: an event that has an ``event:`` line but no
``data:`` line is still dispatched (with empty data). The OpenAI reference contains such an
event (a ``thread.run.completed`` whose data line lost its ``data:`` prefix) and dropping it
silently would hide the run's terminal state.
"""

from __future__ import annotations

from typing import NamedTuple

from runtime.errors import SSEDecodeError

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024


class SSERecord(NamedTuple):
    """One dispatched server-sent event (immutable; a NamedTuple because one is built per event).

    Attributes:
        event: the ``event:`` field, or "message" when the event had none.
        data: the ``data:`` lines joined with "\\n" ("" when there were none).
        id: the last event id seen on the stream so far, if any.
        retry: the reconnection time in ms, when this event carried a ``retry:`` field.
    """

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Turns byte chunks into :class:`SSERecord` objects, incrementally."""

    __slots__ = (
        "_at_start",
        "_data_lines",
        "_data_size",
        "_deferred",
        "_event",
        "_has_fields",
        "_last_id",
        "_max_bytes",
        "_pending",
        "_retry",
        "_skip_lf",
    )

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_bytes = max_event_bytes
        self._pending = bytearray()
        self._at_start = True
        self._deferred: SSEDecodeError | None = None
        self._skip_lf = False
        self._event: str | None = None
        self._data_lines: list[str] = []
        self._data_size = 0
        self._has_fields = False
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        """The last ``id:`` seen, for a reconnecting client's Last-Event-ID."""
        return self._last_id

    def feed(self, chunk: bytes) -> list[SSERecord]:
        """Decode one chunk and return the events it completed (possibly none).

        Raises:
            SSEDecodeError: a line or event exceeds the size limit (raised on the next call
                when events completed earlier in the same chunk are returned first).
        """
        self._raise_deferred()
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if cut < 0:
            self._pending += chunk
            self._check_pending()
            return []
        if self._pending:
            head = bytes(self._pending) + chunk[: cut + 1]
            self._pending.clear()
        else:
            head = chunk[: cut + 1]
        self._pending += chunk[cut + 1 :]
        if cut == len(chunk) - 1 and chunk[cut:] == b"\r":
            # A CR at the chunk's very end may be the first half of a CRLF pair.
            self._skip_lf = True
        out: list[SSERecord] = []
        try:
            self._process(head, out)
            self._check_pending()
        except SSEDecodeError as exc:
            self._defer(exc, out)
        return out

    def flush(self) -> list[SSERecord]:
        """Finish the stream: process a last unterminated line and event."""
        self._raise_deferred()
        out: list[SSERecord] = []
        try:
            if self._pending:
                tail = bytes(self._pending) + b"\n"
                self._pending.clear()
                self._process(tail, out)
        except SSEDecodeError as exc:
            self._defer(exc, out)
            return out
        if self._has_fields:
            out.append(self._dispatch())
        return out

    def _defer(self, error: SSEDecodeError, delivered: list[SSERecord]) -> None:
        """Events completed before the bad line are still delivered; the error comes next call."""
        if not delivered:
            raise error
        self._deferred = error

    def _raise_deferred(self) -> None:
        error, self._deferred = self._deferred, None
        if error is not None:
            raise error

    def _check_pending(self) -> None:
        if len(self._pending) > self._max_bytes:
            size = len(self._pending)
            self._pending.clear()
            raise SSEDecodeError(f"SSE line of more than {self._max_bytes} bytes ({size} so far)")

    def _process(self, block: bytes, out: list[SSERecord]) -> None:
        text = block.decode("utf-8", errors="replace")
        if self._at_start:
            # The spec strips one leading BOM; the first block always holds it whole.
            self._at_start = False
            if text[:1] == "\ufeff":
                text = text[1:]
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if len(text) > self._max_bytes:
            # A huge line can arrive in one chunk: every line is checked.
            lines = text.split("\n")
            lines.pop()  # the block ends with a line break: the last piece is empty
            self._lines(lines, out, check_lines=True)
            return
        # Events are split at blank lines in one go. After a blank line the decoder holds no
        # fields, so each whole piece of the common shapes (``event: X`` + ``data: Y``, or a
        # lone ``data: Y``) becomes its record at once; any other piece, and one that
        # continues fields pending from the previous block, goes line by line.
        pieces = text.split("\n\n")
        rest = pieces.pop()  # lines after the last blank line (no event is complete there)
        last_id = self._last_id
        new = tuple.__new__  # SSERecord's own __new__ is a Python function: one frame less
        pending = self._has_fields or self._retry is not None
        for piece in pieces:
            if not pending:
                if piece[:7] == "event: ":
                    cut = piece.find("\n", 7)
                    if (
                        cut > 0
                        and piece[cut + 1 : cut + 7] == "data: "
                        and piece.find("\n", cut + 7) < 0
                    ):
                        name = piece[7:cut] or "message"
                        out.append(new(SSERecord, (name, piece[cut + 7 :], last_id, None)))
                        continue
                elif piece[:6] == "data: " and "\n" not in piece:
                    out.append(new(SSERecord, ("message", piece[6:], last_id, None)))
                    continue
            lines = piece.split("\n")
            lines.append("")  # the blank line that ended the piece
            self._lines(lines, out, check_lines=False)
            last_id = self._last_id
            pending = False  # a blank line leaves no field behind
        if rest:
            lines = rest.split("\n")
            lines.pop()  # the block ends with a line break: the last piece is empty
            self._lines(lines, out, check_lines=False)

    def _lines(self, lines: list[str], out: list[SSERecord], *, check_lines: bool) -> None:
        for line in lines:
            if not line:
                if self._has_fields:
                    out.append(self._dispatch())
                else:
                    self._retry = None
            elif line[:6] == "data: ":
                # The hot path of a line-by-line piece, inlined from _field.
                size = self._data_size + len(line) - 5
                if size > self._max_bytes:
                    self._reset()
                    raise SSEDecodeError(f"SSE event data larger than {self._max_bytes} bytes")
                self._data_size = size
                self._data_lines.append(line[6:])
                self._has_fields = True
            elif check_lines and len(line) > self._max_bytes:
                self._reset()
                raise SSEDecodeError(f"SSE line of more than {self._max_bytes} bytes")
            elif line[:7] == "event: ":
                self._event = line[7:]
                self._has_fields = True
            elif line[0] != ":":
                self._field(line)

    def _field(self, line: str) -> None:
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max_bytes:
                self._reset()
                raise SSEDecodeError(f"SSE event data larger than {self._max_bytes} bytes")
            self._data_lines.append(value)
            self._has_fields = True
        elif name == "event":
            self._event = value
            self._has_fields = True
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            # isascii(): str.isdigit() accepts e.g. "²", which int() rejects.
            self._retry = int(value)

    def _dispatch(self) -> SSERecord:
        lines = self._data_lines
        record = SSERecord(
            self._event or "message",
            lines[0] if len(lines) == 1 else "\n".join(lines),
            self._last_id,
            self._retry,
        )
        # _reset(), inlined: this runs once per event.
        self._event = None
        self._data_lines = []
        self._data_size = 0
        self._has_fields = False
        self._retry = None
        return record

    def _reset(self) -> None:
        self._event = None
        self._data_lines = []
        self._data_size = 0
        self._has_fields = False
        self._retry = None
