"""AssistantsEventHandler: the neutral callbacks plus typed hooks for Assistants objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.core.hooks import EventHandler

if TYPE_CHECKING:
    from runtime.assistants.models import Message, Run, RunStep


class AssistantsEventHandler(EventHandler):
    """Callbacks of an Assistants run: every neutral hook, and the protocol's objects."""

    async def on_run_status(self, run: Run) -> None:
        """A ``thread.run.*`` event carried the run (after :meth:`on_status`)."""

    async def on_message_created(self, message: Message) -> None:
        """The assistant started a message."""

    async def on_run_step_done(self, step: RunStep) -> None:
        """A run step completed, failed, was cancelled or expired."""
