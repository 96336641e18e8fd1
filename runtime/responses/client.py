"""ResponsesClient: the Responses API on the same session, auth, retry and error machinery.

The HTTP plumbing (request building, auth headers for OpenAI and Azure style, retries under
:class:`~runtime.retry.RetryPolicy`, typed errors from :mod:`runtime.errors`, the server clock)
is :class:`~runtime.client.AssistantsClient`'s, reused by composition: a private subclass
drops the ``OpenAI-Beta: assistants=v2`` header and nothing else changes.

Endpoints: ``POST /responses`` (streamed or not), ``GET /responses/{id}``,
``POST /responses/{id}/cancel`` (background responses) and ``DELETE /responses/{id}``.
Creating a response is not idempotent, so like creating a run it is retried only when the
server surely did not act on it (no connection, or 429); a stream is retried only before its
first byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self, overload

from runtime.client import AssistantsClient, _drop_none
from runtime.errors import ClientClosedError
from runtime.handler import EventHandler
from runtime.protocol.models import DeletionStatus
from runtime.protocol.sse import DEFAULT_MAX_EVENT_BYTES
from runtime.responses.models import Response
from runtime.responses.stream import ResponseStream
from runtime.retry import RetryPolicy
from runtime.transport import Transport

DEFAULT_AZURE_RESPONSES_API_VERSION = "2025-04-01-preview"


class _Plumbing(AssistantsClient):
    """AssistantsClient's HTTP machinery without the Assistants beta header."""

    def _build_headers(
        self,
        organization: str | None,
        project: str | None,
        extra: Mapping[str, str] | None,
    ) -> dict[str, str]:
        headers = super()._build_headers(organization, project, extra)
        headers.pop("OpenAI-Beta", None)
        return headers

    async def open_stream(
        self, path: str, body: dict[str, Any], handler: EventHandler | None
    ) -> ResponseStream:
        """POST ``body`` with ``stream: true`` and wrap the 200 answer in a ResponseStream."""
        response = await self._open_stream("POST", path, {**body, "stream": True})
        assert response.chunks is not None
        return ResponseStream(
            response.chunks,
            handler=handler,
            max_event_bytes=self.max_event_bytes,
            close=response.aclose,
        )


class ResponsesClient:
    """Client of the Responses API.

    Args:
        base_url: OpenAI-style base URL including ``/v1`` (default: OpenAI's).
        api_key: the API key (``Authorization: Bearer`` or Azure's ``api-key``).
        azure_endpoint: Azure resource endpoint; selects Azure style when given.
        api_version: Azure ``api-version`` (default: a Responses-capable preview version).
        organization: optional ``OpenAI-Organization`` header.
        project: optional ``OpenAI-Project`` header.
        retry: the retry policy of every request.
        timeout_s: timeout of a non-streaming request.
        stream_idle_timeout_s: longest silence allowed inside a stream.
        connect_timeout_s: time allowed to open a connection.
        max_connections: connection pool size.
        max_event_bytes: largest SSE line/event accepted.
        transport: a custom :class:`~runtime.transport.Transport` (shared or for tests).
        default_headers: extra headers for every request.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        azure_endpoint: str | None = None,
        api_version: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        stream_idle_timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        max_connections: int = 100,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        transport: Transport | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        if azure_endpoint is not None and api_version is None:
            api_version = DEFAULT_AZURE_RESPONSES_API_VERSION
        self._http = _Plumbing(
            base_url,
            api_key,
            azure_endpoint=azure_endpoint,
            api_version=api_version,
            organization=organization,
            project=project,
            retry=retry,
            timeout_s=timeout_s,
            stream_idle_timeout_s=stream_idle_timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
            max_event_bytes=max_event_bytes,
            transport=transport,
            default_headers=default_headers,
        )
        self._owns_transport = transport is None
        self._closed = False

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> ResponsesClient:
        """Build a client from :class:`runtime.config.Settings` (api and retry sections).

        An ``api_version`` left at its default is replaced by a Responses-capable one for
        Azure, since the Assistants default predates the Responses API there.
        """
        base = AssistantsClient.from_settings(settings)
        api = settings.api
        kwargs = cls._kwargs_of(base)
        if base.is_azure and "api_version" in getattr(api, "model_fields_set", ()):
            kwargs["api_version"] = api.api_version
        kwargs.update(
            organization=api.organization,
            project=api.project,
            connect_timeout_s=api.connect_timeout_s,
            max_connections=api.max_connections,
        )
        kwargs.update(overrides)
        if kwargs.get("azure_endpoint") is None and "api_version" not in overrides:
            kwargs["api_version"] = None  # api-version is an Azure query parameter only
        return cls(**kwargs)

    @classmethod
    def sharing(cls, client: AssistantsClient, *, api_version: str | None = None) -> Self:
        """A ResponsesClient on ``client``'s transport (its session and connection pool).

        The new client never closes the shared transport; ``client`` keeps owning it.

        Args:
            client: the AssistantsClient whose session, auth and retry policy to reuse.
            api_version: Azure ``api-version`` for Responses (default: a Responses-capable one).
        """
        kwargs = cls._kwargs_of(client)
        kwargs["api_version"] = api_version if client.is_azure else None
        kwargs["transport"] = client._transport
        shared = cls(**kwargs)
        shared._http._headers = {
            k: v for k, v in client._headers.items() if k.lower() != "openai-beta"
        }
        return shared

    @staticmethod
    def _kwargs_of(client: AssistantsClient) -> dict[str, Any]:
        azure = client.base_url.removesuffix("/openai") if client.is_azure else None
        return {
            "base_url": None if client.is_azure else client.base_url,
            "api_key": client._api_key,
            "azure_endpoint": azure,
            "retry": client.retry,
            "timeout_s": client.timeout_s,
            "stream_idle_timeout_s": client.stream_idle_timeout_s,
            "max_event_bytes": client.max_event_bytes,
        }

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._closed:
            raise ClientClosedError("this ResponsesClient is closed; create a new one")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session (unless it is shared); the client cannot be used afterwards."""
        self._closed = True
        self._http._closed = True
        if self._owns_transport:
            await self._http._transport.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closed

    @property
    def base_url(self) -> str:
        """The resolved base URL (``.../v1`` or ``{endpoint}/openai``)."""
        return self._http.base_url

    @property
    def is_azure(self) -> bool:
        """True for Azure style (``api-key`` header, ``api-version`` query)."""
        return self._http.is_azure

    @property
    def api_version(self) -> str | None:
        """The Azure ``api-version`` sent with each request, if any."""
        return self._http.api_version

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of every request."""
        return self._http.retry

    @property
    def retries(self) -> int:
        """How many retries this client made so far."""
        return self._http.retries

    def server_now(self) -> float:
        """The server's clock (epoch seconds), estimated from the Date headers seen so far."""
        return self._http.server_now()

    def __repr__(self) -> str:
        style = "azure" if self.is_azure else "openai"
        key = "set" if self._http._api_key else "none"
        return f"ResponsesClient(base_url={self.base_url!r}, style={style}, api_key=<{key}>)"

    # --- endpoints ------------------------------------------------------------------------

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
                background, store, max_output_tokens, metadata, ...); None values are dropped.

        Returns:
            The Response (not streamed) or the open ResponseStream.
        """
        body = _drop_none({"model": model, "input": input, **params})
        if stream:
            return await self._http.open_stream("/responses", body, handler)
        return await self._http._call("POST", "/responses", Response, body=body, idempotent=False)

    async def retrieve(self, response_id: str) -> Response:
        """Retrieve a stored response (``response.response_meta.poll_after_ms`` when sent)."""
        return await self._http._call("GET", f"/responses/{response_id}", Response)

    async def cancel(self, response_id: str) -> Response:
        """Cancel a background response (others answer 400)."""
        path = f"/responses/{response_id}/cancel"
        return await self._http._call("POST", path, Response, idempotent=True)

    async def delete(self, response_id: str) -> DeletionStatus:
        """Delete a stored response."""
        return await self._http._call("DELETE", f"/responses/{response_id}", DeletionStatus)
