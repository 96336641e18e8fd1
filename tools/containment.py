"""Keep a tool from ending the event loop it shares with the host and its other runs.

The dispatcher contains ``SystemExit`` and ``KeyboardInterrupt`` where it awaits a tool.
Two ways around that remain, both closed here on the loop itself by :func:`guard_loop`
(idempotent, called by every batch), for code running in a tool's context (the
``running_tool`` context variable, which the dispatcher sets around each call and which
tasks, callbacks and threads started by the tool inherit):

* ``loop.stop()`` only sets a flag: ``run_forever`` returns after the current iteration,
  so ``asyncio.run`` ends with "Event loop stopped before Future completed" and every run
  on the loop dies. Nothing after the call can undo that reliably, so the call itself is
  refused: ``stop`` is replaced on the loop instance by a wrapper that raises
  :class:`LoopStopRefused` in a tool's context and otherwise stops the loop as before.
* asyncio re-raises ``SystemExit`` and ``KeyboardInterrupt`` out of the loop from any task,
  so one raised in a task a tool spawned (``create_task``, ``gather``) would end the loop
  before the tool sees it. A task factory (chained to the loop's previous one) wraps the
  coroutines of tasks created in a tool's context so that such an exception reaches the
  awaiting tool as :class:`ContainedExit` instead.

Limits: a loop whose ``stop`` cannot be replaced (an extension type such as uvloop's) is
not guarded against ``stop()``; a tool calling ``type(loop).stop(loop)`` bypasses the
guard; a task factory the host sets later replaces ours (its tasks are then uncontained).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import Callable, Coroutine
from contextvars import Context, ContextVar
from typing import Any, TypeVar, cast

T = TypeVar("T")

running_tool: ContextVar[str | None] = ContextVar("tools_running_tool", default=None)
"""Name of the tool whose call the current context belongs to (None outside tools)."""

_GUARD_MARK = "_tools_guard"
_PLAIN_MARK = "_tools_plain"

TaskFactory = Callable[..., "asyncio.Future[Any]"]


class LoopStopRefused(BaseException):
    """Raised inside a tool that calls ``loop.stop()`` on the dispatcher's loop.

    A BaseException, like SystemExit, so that ``except Exception`` in the tool does not
    swallow it and the call ends with a ``loop_stop`` error output.
    """


class ContainedExit(BaseException):
    """A ``SystemExit`` or ``KeyboardInterrupt`` raised in a task a tool spawned.

    Not one of the two exceptions asyncio re-raises out of the loop, and not an
    ``Exception``, so it travels to the awaiting tool and ends the call.

    Attributes:
        original: the exception the task raised.
    """

    def __init__(self, original: SystemExit | KeyboardInterrupt) -> None:
        super().__init__(f"{type(original).__name__} in a task started by the tool")
        self.original = original


def guard_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Install both guards on ``loop`` (cheap when already installed)."""
    if not getattr(loop.get_task_factory(), _GUARD_MARK, False):
        loop.set_task_factory(_containing_factory(loop.get_task_factory()))
    if not getattr(loop.stop, _GUARD_MARK, False):
        _guard_stop(loop)


def _guard_stop(loop: asyncio.AbstractEventLoop) -> None:
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
    # Extension-type loops have no instance dict: they stay unguarded against stop().
    with contextlib.suppress(AttributeError, TypeError):
        loop.stop = stop  # type: ignore[method-assign]


def _containing_factory(previous: TaskFactory | None) -> TaskFactory:
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        context: Context | None = kwargs.get("context")
        tool = running_tool.get() if context is None else context.get(running_tool)
        if tool is not None and asyncio.iscoroutine(coro):
            coro = _contained(coro)
        if previous is not None:
            return previous(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    setattr(factory, _GUARD_MARK, True)
    # Chained to no other factory: outside a tool's context it makes a plain Task.
    setattr(factory, _PLAIN_MARK, previous is None)
    return factory


def start_task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """``loop.create_task(coro)``, made directly when the loop's factory would only make a
    plain Task (ours, chained to none, outside a tool's context): one call layer less."""
    if running_tool.get() is None and getattr(loop.get_task_factory(), _PLAIN_MARK, False):
        return asyncio.Task(coro, loop=loop)
    return loop.create_task(coro)


def task_starter(
    loop: asyncio.AbstractEventLoop,
) -> Callable[[Coroutine[Any, Any, T]], asyncio.Task[T]]:
    """:func:`start_task` for the coroutines started now, in the current context: the
    factory is looked at once for all of them (a batch starts its calls in one pass)."""
    if running_tool.get() is None and getattr(loop.get_task_factory(), _PLAIN_MARK, False):
        # A partial, not a closure: no Python frame per task.
        plain = functools.partial(asyncio.Task, loop=loop)
        return cast("Callable[[Coroutine[Any, Any, T]], asyncio.Task[T]]", plain)
    return loop.create_task


async def _contained(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return await coro
    except (SystemExit, KeyboardInterrupt) as exc:
        raise ContainedExit(exc) from exc
