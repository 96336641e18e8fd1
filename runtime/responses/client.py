"""ResponsesClient: the Responses API endpoints over the shared HTTP base.

Endpoints: ``POST /responses`` (streamed or not), ``GET /responses/{id}`` (and its resumable
stream, ``?stream=true&starting_after=N``), ``POST /responses/{id}/cancel`` (background
responses), ``DELETE /responses/{id}`` and ``GET /responses/{id}/input_items``. Creating a
response is not idempotent, so like creating a run it is retried only when the server surely
did not act on it (no connection, or 429); a stream is retried only before its first byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, overload

from runtime.core.hooks import EventHandler
from runtime.http import AsyncPaginator, HTTPClient, drop_none
from runtime.http import path_segment as seg
from runtime.protocol.objects import APIObject, DeletionStatus, ListPage
from runtime.responses.models import Conversation, Response
from runtime.responses.stream import ResponseAccumulator, ResponseStream
from runtime.transport import Response as HTTPResponse

DEFAULT_AZURE_RESPONSES_API_VERSION = "2025-04-01-preview"


class ConversationItem(APIObject):
    """One item of a conversation (a message, a function call or its output, ...)."""

    id: str | None = None
    type: str = "message"


class ResponsesClient(HTTPClient):
    """Client of the Responses API (constructor arguments: :class:`~runtime.http.HTTPClient`).

    ``ResponsesClient(base_url="http://127.0.0.1:8321/v1", api_key="sk-...")``; for Azure,
    ``azure_endpoint=`` with a Responses-capable ``api_version`` (the default is one).
    """

    protocol_headers: ClassVar[Mapping[str, str]] = {}
    default_azure_api_version: ClassVar[str] = DEFAULT_AZURE_RESPONSES_API_VERSION

    @overload
    async def create(
        self,
        *,
        model: str,
        input: str | list[Any] | None = None,
        stream: Literal[False] = False,
        **params: Any,
    ) -> Response: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        input: str | list[Any] | None = None,
        stream: Literal[True],
        handler: EventHandler | None = None,
        **params: Any,
    ) -> ResponseStream: ...

    async def create(
        self,
        *,
        model: str,
        input: str | list[Any] | None = None,
        stream: bool = False,
        handler: EventHandler | None = None,
        **params: Any,
    ) -> Response | ResponseStream:
        """Create a response; with ``stream=True`` return its :class:`ResponseStream`.

        Args:
            model: the model (or Azure deployment) name.
            input: a string or a list of input items (messages, ``function_call_output``...).
            stream: stream the response as server-sent events.
            handler: callbacks for the stream.
            **params: the other request fields (instructions, tools, previous_response_id,
                conversation, background, store, max_output_tokens, metadata, ...); None
                values are dropped.

        Returns:
            The Response (not streamed) or the open ResponseStream.
        """
        body = drop_none({"model": model, "input": input, **params})
        if stream:
            answer = await self._open_stream("POST", "/responses", {**body, "stream": True})
            return self._wrap(answer, handler, None)
        return await self._call("POST", "/responses", Response, body=body, idempotent=False)

    async def stream_existing(
        self,
        response_id: str,
        *,
        starting_after: int | None = None,
        handler: EventHandler | None = None,
        state: ResponseAccumulator | None = None,
    ) -> ResponseStream:
        """Re-open the stream of a background response after sequence ``starting_after``.

        Args:
            response_id: the response (created with ``background=true``).
            starting_after: the last sequence number already seen (None: from the start).
            handler: callbacks for the stream.
            state: the accumulator of the broken stream, to continue its snapshots.
        """
        params = {"stream": "true", "starting_after": starting_after}
        answer = await self._open_stream("GET", f"/responses/{seg(response_id)}", params=params)
        return self._wrap(answer, handler, state)

    async def retrieve(self, response_id: str) -> Response:
        """Retrieve a stored response (``response.response_meta.poll_after_ms`` when sent)."""
        return await self._call("GET", f"/responses/{seg(response_id)}", Response)

    async def cancel(self, response_id: str) -> Response:
        """Cancel a background response (others answer 400)."""
        path = f"/responses/{seg(response_id)}/cancel"
        return await self._call("POST", path, Response, idempotent=True)

    async def delete(self, response_id: str) -> DeletionStatus:
        """Delete a stored response."""
        return await self._call("DELETE", f"/responses/{seg(response_id)}", DeletionStatus)

    async def input_items(self, response_id: str, **page: Any) -> ListPage:
        """One page of a response's input items (limit, order, after, include)."""
        path = f"/responses/{seg(response_id)}/input_items"
        return await self._call("GET", path, ListPage, params=page)

    # --- conversations ----------------------------------------------------------------------

    async def create_conversation(
        self,
        *,
        items: list[dict[str, Any]] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Conversation:
        """Create a conversation, optionally holding initial items (messages, outputs...)."""
        body = drop_none({"items": items, "metadata": dict(metadata) if metadata else None})
        return await self._call("POST", "/conversations", Conversation, body=body, idempotent=False)

    async def retrieve_conversation(self, conversation_id: str) -> Conversation:
        """Retrieve a conversation."""
        return await self._call("GET", f"/conversations/{seg(conversation_id)}", Conversation)

    async def update_conversation(
        self, conversation_id: str, *, metadata: Mapping[str, str]
    ) -> Conversation:
        """Replace a conversation's metadata."""
        path = f"/conversations/{seg(conversation_id)}"
        body = {"metadata": dict(metadata)}
        return await self._call("POST", path, Conversation, body=body, idempotent=True)

    async def delete_conversation(self, conversation_id: str) -> DeletionStatus:
        """Delete a conversation."""
        path = f"/conversations/{seg(conversation_id)}"
        return await self._call("DELETE", path, DeletionStatus)

    async def add_items(self, conversation_id: str, items: list[dict[str, Any]]) -> ListPage:
        """Append items to a conversation (at most 20 per request on the service)."""
        path = f"/conversations/{seg(conversation_id)}/items"
        return await self._call("POST", path, ListPage, body={"items": items}, idempotent=False)

    def list_items(self, conversation_id: str, **page: Any) -> AsyncPaginator[ConversationItem]:
        """Iterate a conversation's items (limit, order, after, include)."""
        path = f"/conversations/{seg(conversation_id)}/items"
        return self._paginate(path, ConversationItem, page)

    def _wrap(
        self, answer: HTTPResponse, handler: EventHandler | None, state: ResponseAccumulator | None
    ) -> ResponseStream:
        assert answer.chunks is not None
        return ResponseStream(
            answer.chunks,
            handler=handler,
            max_event_bytes=self.max_event_bytes,
            close=answer.aclose,
            state=state,
            idle_timeout_s=self.stream_idle_timeout_s,
        )
