"""ResponsesEventHandler: the neutral callbacks plus typed hooks for Responses objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.core.hooks import EventHandler

if TYPE_CHECKING:
    from runtime.responses.models import OutputItem, Response


class ResponsesEventHandler(EventHandler):
    """Callbacks of a Responses run: every neutral hook, and the protocol's objects."""

    async def on_response_status(self, response: Response) -> None:
        """A ``response.*`` lifecycle event carried the response (after :meth:`on_status`)."""

    async def on_output_item_added(self, item: OutputItem) -> None:
        """An output item (message, function call, ...) started."""

    async def on_output_item_done(self, item: OutputItem) -> None:
        """An output item finished."""
