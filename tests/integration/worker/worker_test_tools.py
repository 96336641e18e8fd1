"""Tools loaded by worker subprocesses in the end-to-end tests (``worker.tools``).

``slow_echo`` appends a ``start`` and an ``end`` line (JSON: pid, tool_call_id, text) to the
file named by ``WORKER_TEST_TOOL_LOG``, so a test can tell which process executed which call
and whether any call was executed twice. ``WORKER_TEST_SLEEP_SCALE`` scales its sleep;
``gated_echo`` logs the same way and waits for a file instead of a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from tools import ToolContext, ToolRegistry

registry = ToolRegistry()


def _record(event: str, ctx: ToolContext, text: str) -> None:
    path = os.environ.get("WORKER_TEST_TOOL_LOG")
    if not path:
        return
    line = json.dumps(
        {
            "event": event,
            "pid": os.getpid(),
            "call": ctx.tool_call_id,
            "run": ctx.run_id,
            "text": text,
            "t": time.time(),
        }
    )
    # One short O_APPEND write per line: lines of concurrent processes never interleave.
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


@registry.tool
async def slow_echo(text: str, sleep_ms: int, ctx: ToolContext) -> str:
    """Return text in upper case after sleeping.

    Args:
        text: what to echo.
        sleep_ms: milliseconds to sleep first.
    """
    _record("start", ctx, text)
    await asyncio.sleep(sleep_ms * float(os.environ.get("WORKER_TEST_SLEEP_SCALE", "1")) / 1000)
    _record("end", ctx, text)
    return text.upper()


@registry.tool
async def gated_echo(text: str, ctx: ToolContext) -> str:
    """Return text in upper case once the file named by ``WORKER_TEST_GATE`` exists.

    A test holds calls in flight for as long as it needs, whatever the machine's load.

    Args:
        text: what to echo.
    """
    _record("start", ctx, text)
    gate = os.environ["WORKER_TEST_GATE"]
    while not os.path.exists(gate):
        await asyncio.sleep(0.02)
    _record("end", ctx, text)
    return text.upper()


@registry.tool
def crash_worker(reason: str) -> str:
    """Kill the worker process on the spot: a poison job.

    Args:
        reason: why.
    """
    os._exit(3)


@registry.tool(needs_approval=True, effects="write")
async def approved_write(text: str, sleep_ms: int, ctx: ToolContext) -> str:
    """Write text somewhere, once a person approved it (logged like slow_echo).

    Args:
        text: what to write.
        sleep_ms: milliseconds the write takes.
    """
    _record("start", ctx, text)
    await asyncio.sleep(sleep_ms / 1000)
    _record("end", ctx, text)
    return f"wrote {text}"
