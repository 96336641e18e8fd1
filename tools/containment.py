"""Keep a tool from stopping the event loop it shares with the host and its other runs.

``loop.stop()`` only sets a flag: ``run_forever`` returns after the current iteration, so
``asyncio.run`` ends with "Event loop stopped before Future completed" and every run on the
loop dies. Nothing after the call can undo that reliably, so the call itself is refused: the
dispatcher replaces ``stop`` on the loop instance once (:func:`guard_loop`) with a wrapper
that raises :class:`LoopStopRefused` when called in a tool's context (the ``running_tool``
context variable, which the dispatcher sets around each call and which tasks, callbacks and
threads started by the tool inherit) and otherwise stops the loop as before.

Limits: a loop whose ``stop`` cannot be replaced (an extension type such as uvloop's) is
not guarded, and a tool calling ``type(loop).stop(loop)`` bypasses the guard.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from contextvars import ContextVar

running_tool: ContextVar[str | None] = ContextVar("tools_running_tool", default=None)
"""Name of the tool whose call the current context belongs to (None outside tools)."""

_GUARD_MARK = "_tools_stop_guard"


class LoopStopRefused(BaseException):
    """Raised inside a tool that calls ``loop.stop()`` on the dispatcher's loop.

    A BaseException, like SystemExit, so that ``except Exception`` in the tool does not
    swallow it and the call ends with a ``loop_stop`` error output.
    """


def guard_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Make ``loop.stop()`` refuse callers in a tool's context (idempotent).

    Returns:
        True when the loop is guarded, False when its ``stop`` cannot be replaced.
    """
    if getattr(loop.stop, _GUARD_MARK, False):
        return True
    previous: Callable[[], None] | None = getattr(loop, "__dict__", {}).get("stop")
    # A weak reference: the loop holds the guard, the guard must not keep the loop alive.
    loop_ref = weakref.ref(loop)

    def stop() -> None:
        tool = running_tool.get()
        if tool is not None:
            raise LoopStopRefused(f"tool {tool!r} tried to stop the event loop; refused")
        if previous is not None:
            previous()
            return
        target = loop_ref()
        if target is not None:
            type(target).stop(target)

    setattr(stop, _GUARD_MARK, True)
    try:
        loop.stop = stop  # type: ignore[method-assign]
    except (AttributeError, TypeError):  # extension-type loops have no instance dict
        return False
    return True
