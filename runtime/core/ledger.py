"""Writes at most once: a record of every ``effects="write"`` tool execution.

A write tool's execution is recorded *before* it starts and its output when it ends, keyed
by :class:`WriteKey` (scope, tool name, canonical arguments), not by call id: a model that
re-plans the same call under a new id gets the recorded output instead of a second write.
A record started but never finished (the process died in between) answers with an error
output saying the outcome is unknown and must be verified, unless the tool opted out
(``unknown_outcome="rerun"``).

The scope is the run's job (the worker) or its conversation; a run without either uses its
first turn's id. :class:`MemoryLedger` keeps records for the life of the process; the
worker's stores keep them durably (``runtime.worker``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.jsontext import acyclic_encoder
from tools import ToolCall, ToolCallResult
from tools.encoding import error_output


@dataclass(frozen=True)
class WriteKey:
    """What makes two write calls the same.

    Attributes:
        scope: the job or conversation the call belongs to.
        tool: the tool's name.
        arguments: the canonical JSON of the validated arguments.
    """

    scope: str
    tool: str
    arguments: str

    def as_text(self) -> str:
        """One string for a store key (stable across processes)."""
        return json.dumps([self.scope, self.tool, self.arguments], separators=(",", ":"))


@dataclass(frozen=True)
class WriteRecord:
    """What the ledger knows about one write.

    Attributes:
        call_id: the call that started it.
        started_at: when it started (epoch seconds).
        output: the output, once finished (None while it runs, or after a crash).
        is_error: whether that output is an error.
        finished_at: when it finished.
    """

    call_id: str
    started_at: float
    output: str | None = None
    is_error: bool = False
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.output is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "started_at": self.started_at,
            "output": self.output,
            "is_error": self.is_error,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WriteRecord:
        return cls(
            call_id=str(data["call_id"]),
            started_at=float(data["started_at"]),
            output=data.get("output"),
            is_error=bool(data.get("is_error", False)),
            finished_at=data.get("finished_at"),
        )


class WriteLedger(Protocol):
    """Where write executions are recorded (in memory, sqlite, Redis)."""

    async def lookup(self, key: WriteKey) -> WriteRecord | None:
        """The record of ``key``, if any."""
        ...

    async def record_start(self, key: WriteKey, call_id: str) -> WriteRecord | None:
        """Record that ``call_id`` starts the write of ``key``; return the existing record
        instead (and record nothing) when one exists: then the write must not start."""
        ...

    async def record_finish(self, key: WriteKey, output: str, is_error: bool) -> None:
        """Record the write's output."""
        ...


class MemoryLedger:
    """A :class:`WriteLedger` in this process's memory.

    Args:
        max_records: records kept; past it the oldest are forgotten (a long-lived process
            must not grow without bound; a forgotten write can run again).
    """

    def __init__(self, max_records: int = 10_000) -> None:
        self._records: dict[WriteKey, WriteRecord] = {}
        self._max_records = max_records

    async def lookup(self, key: WriteKey) -> WriteRecord | None:
        return self._records.get(key)

    async def record_start(self, key: WriteKey, call_id: str) -> WriteRecord | None:
        existing = self._records.get(key)
        if existing is not None:
            return existing
        while len(self._records) >= self._max_records:
            del self._records[next(iter(self._records))]
        self._records[key] = WriteRecord(call_id, time.time())
        return None

    async def record_finish(self, key: WriteKey, output: str, is_error: bool) -> None:
        record = self._records.get(key) or WriteRecord("", time.time())
        self._records[key] = WriteRecord(
            record.call_id, record.started_at, output, is_error, time.time()
        )


def canonical_arguments(arguments: Mapping[str, Any] | str) -> str:
    """Arguments as one canonical JSON text (sorted keys, no spaces); raw text that is not
    JSON is kept as it is."""
    if not isinstance(arguments, str):
        return _CANONICAL.encode(arguments)
    text = arguments or "{}"
    try:
        # The bare scanner, without json.loads' frame and whitespace scan (once a call of
        # every round); anything else (surrounding whitespace, trailing text) goes the long way.
        value, end = _scan(text, 0)
        if end != len(text):
            value = json.loads(text)
    except (StopIteration, ValueError):
        try:
            value = json.loads(text)
        except ValueError:
            return arguments
    return _encode_parsed(value)


# What json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) builds on
# every call (it builds a new encoder for any non-default option): once a call of every round.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_scan: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009
# Values json.loads made hold no cycles. A mapping from the application may: it goes through
# _CANONICAL.encode, which looks for them.
_encode_parsed = acyclic_encoder(_CANONICAL)


def recorded_result(call: ToolCall, record: WriteRecord) -> ToolCallResult:
    """The answer to a write the ledger already holds: its output, or (started, never
    finished) an error output saying the outcome is unknown."""
    if record.output is not None:
        return ToolCallResult(
            tool_call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            output=record.output,
            is_error=record.is_error,
            seconds=0.0,
            error_type="recorded_error" if record.is_error else None,
        )
    message = (
        f"an earlier identical call of {call.name!r} started but its outcome was never "
        "recorded (the process stopped): it may or may not have taken effect; verify before "
        "trying again"
    )
    return ToolCallResult(
        tool_call_id=call.id,
        name=call.name,
        arguments=call.arguments,
        output=error_output("outcome_unknown", message, call.name),
        is_error=True,
        seconds=0.0,
        error_type="outcome_unknown",
    )
