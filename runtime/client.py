"""AssistantsClient: the Assistants API (v2) over one HTTP session, OpenAI or Azure style.

Each call builds a :class:`~runtime.transport.Request`, sends it under the retry policy and
turns error answers into the typed tree of :mod:`runtime.errors`. Streaming calls return a
:class:`~runtime.stream.RunStream` once the server has answered 200; they are retried only
before their first byte.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, Literal, Self, TypeVar, overload

from pydantic import BaseModel

from runtime.errors import APIStatusError, ClientClosedError, InvalidResponseError, status_error
from runtime.handler import EventHandler
from runtime.protocol.models import (
    APIObject,
    Assistant,
    DeletionStatus,
    ListPage,
    Message,
    ResponseMeta,
    Run,
    RunStep,
    Thread,
)
from runtime.protocol.sse import DEFAULT_MAX_EVENT_BYTES
from runtime.retry import RetryPolicy, call_with_retries, parse_retry_after
from runtime.stream import RunStream
from runtime.transport import AiohttpTransport, Request, Response, Transport

M = TypeVar("M", bound=APIObject)
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_AZURE_API_VERSION = "2024-08-01-preview"


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in params.items() if v is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    return value


class AsyncPaginator(Generic[M]):
    """Iterates every item of a list endpoint, fetching pages as it goes.

    ``async for run in client.list_runs(thread_id, limit=20)`` follows ``has_more`` with
    ``after=last_id`` (or ``before=first_id`` when iterating with ``before``).
    """

    def __init__(
        self,
        fetch: Callable[[dict[str, str]], Awaitable[ListPage]],
        model: type[M],
        params: dict[str, str],
    ) -> None:
        self._fetch = fetch
        self._model = model
        self._params = params

    def __aiter__(self) -> AsyncIterator[M]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[M]:
        params = dict(self._params)
        backwards = "before" in params
        key = "before" if backwards else "after"
        while True:
            page = await self._fetch(params)
            for item in page.data:
                yield self._item(item)
            if not page.has_more or not page.data:
                return
            if backwards:
                cursor = str(page.data[0].get("id") or page.first_id)
            else:
                cursor = str(page.data[-1].get("id") or page.last_id)
            if cursor == params.get(key):
                # A server repeating its page with has_more=true would loop us forever.
                raise InvalidResponseError(f"list pagination did not advance past {cursor!r}")
            params[key] = cursor

    def _item(self, item: dict[str, Any]) -> M:
        try:
            return self._model.model_validate(item)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise InvalidResponseError(
                f"a list item is not a valid {self._model.__name__}: {str(exc)[:300]}"
            ) from exc

    async def first_page(self) -> list[M]:
        """Only the first page."""
        page = await self._fetch(dict(self._params))
        return [self._item(item) for item in page.data]

    async def to_list(self, limit: int | None = None) -> list[M]:
        """Collect items (at most ``limit``) into a list."""
        out: list[M] = []
        async for item in self:
            out.append(item)
            if limit is not None and len(out) >= limit:
                break
        return out


class AssistantsClient:
    """Client of the Assistants API.

    Args:
        base_url: OpenAI-style base URL including ``/v1`` (default: OpenAI's).
        api_key: the API key (sent as ``Authorization: Bearer`` or Azure's ``api-key``).
        azure_endpoint: Azure resource endpoint; selects Azure style when given.
        api_version: Azure ``api-version`` query parameter.
        organization: optional ``OpenAI-Organization`` header.
        project: optional ``OpenAI-Project`` header.
        retry: the retry policy of every request.
        timeout_s: timeout of a non-streaming request.
        stream_idle_timeout_s: longest silence allowed inside a stream.
        connect_timeout_s: time allowed to open a connection.
        max_connections: connection pool size.
        max_event_bytes: largest SSE line/event accepted.
        transport: a custom :class:`~runtime.transport.Transport` (tests, proxies).
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
        self.is_azure = azure_endpoint is not None
        if self.is_azure:
            assert azure_endpoint is not None
            self.base_url = azure_endpoint.rstrip("/") + "/openai"
            self.api_version: str | None = api_version or DEFAULT_AZURE_API_VERSION
        else:
            self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
            self.api_version = api_version
        self._api_key = api_key
        _register_secret(api_key)
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.stream_idle_timeout_s = stream_idle_timeout_s
        self.max_event_bytes = max_event_bytes
        self._headers = self._build_headers(organization, project, default_headers)
        self._transport: Transport = transport or AiohttpTransport(
            connect_timeout_s=connect_timeout_s, max_connections=max_connections
        )
        self._closed = False
        self.clock_offset_s = 0.0
        self.retries = 0

    # --- lifecycle ------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> AssistantsClient:
        """Build a client from :class:`runtime.config.Settings` (api and retry sections)."""
        api, retry = settings.api, settings.retry
        # Settings.effective_api_key: Azure prefers azure_api_key but falls back to api_key
        # (computed here too for settings-like objects without that property).
        key = getattr(settings, "effective_api_key", None)
        if key is None:
            key = (api.azure_api_key if api.azure_endpoint else None) or api.api_key
        kwargs: dict[str, Any] = {
            "base_url": api.base_url,
            "api_key": key.get_secret_value() if key is not None else None,
            "azure_endpoint": api.azure_endpoint,
            "api_version": api.api_version if api.azure_endpoint else None,
            "organization": api.organization,
            "project": api.project,
            "retry": RetryPolicy(
                max_attempts=retry.max_attempts,
                initial_wait_s=retry.initial_wait_s,
                max_wait_s=retry.max_wait_s,
                jitter_s=retry.jitter_s,
                respect_retry_after=retry.respect_retry_after,
                max_retry_after_s=retry.max_retry_after_s,
            ),
            "timeout_s": api.read_timeout_s,
            "stream_idle_timeout_s": api.stream_idle_timeout_s,
            "connect_timeout_s": api.connect_timeout_s,
            "max_connections": api.max_connections,
            "max_event_bytes": api.max_event_bytes,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    async def __aenter__(self) -> Self:
        if self._closed:
            raise ClientClosedError("this AssistantsClient is closed; create a new one")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session; the client cannot be used afterwards."""
        self._closed = True
        await self._transport.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closed

    def __repr__(self) -> str:
        style = "azure" if self.is_azure else "openai"
        key = "set" if self._api_key else "none"
        return f"AssistantsClient(base_url={self.base_url!r}, style={style}, api_key=<{key}>)"

    def server_now(self) -> float:
        """The server's clock (epoch seconds), estimated from the Date headers seen so far."""
        return time.time() + self.clock_offset_s

    # --- assistants -----------------------------------------------------------------------

    async def create_assistant(self, *, model: str, **params: Any) -> Assistant:
        """Create an assistant (name, instructions, tools, metadata, ...)."""
        body = _drop_none({"model": model, **params})
        return await self._call("POST", "/assistants", Assistant, body=body, idempotent=False)

    async def retrieve_assistant(self, assistant_id: str) -> Assistant:
        """Retrieve an assistant."""
        return await self._call("GET", f"/assistants/{assistant_id}", Assistant)

    def list_assistants(self, **page: Any) -> AsyncPaginator[Assistant]:
        """Iterate assistants (limit, order, after, before)."""
        return self._paginate("/assistants", Assistant, page)

    async def delete_assistant(self, assistant_id: str) -> DeletionStatus:
        """Delete an assistant."""
        return await self._call("DELETE", f"/assistants/{assistant_id}", DeletionStatus)

    # --- threads and messages -------------------------------------------------------------

    async def create_thread(
        self, *, messages: Sequence[Mapping[str, Any]] | None = None, **params: Any
    ) -> Thread:
        """Create a thread, optionally with initial messages."""
        body = _drop_none({"messages": list(messages) if messages else None, **params})
        return await self._call("POST", "/threads", Thread, body=body, idempotent=False)

    async def retrieve_thread(self, thread_id: str) -> Thread:
        """Retrieve a thread."""
        return await self._call("GET", f"/threads/{thread_id}", Thread)

    async def delete_thread(self, thread_id: str) -> DeletionStatus:
        """Delete a thread."""
        return await self._call("DELETE", f"/threads/{thread_id}", DeletionStatus)

    async def create_message(
        self,
        thread_id: str,
        *,
        content: str | list[dict[str, Any]],
        role: str = "user",
        **params: Any,
    ) -> Message:
        """Add a message to a thread."""
        body = _drop_none({"role": role, "content": content, **params})
        path = f"/threads/{thread_id}/messages"
        return await self._call("POST", path, Message, body=body, idempotent=False)

    async def retrieve_message(self, thread_id: str, message_id: str) -> Message:
        """Retrieve one message."""
        return await self._call("GET", f"/threads/{thread_id}/messages/{message_id}", Message)

    def list_messages(self, thread_id: str, **page: Any) -> AsyncPaginator[Message]:
        """Iterate a thread's messages (limit, order, after, before, run_id)."""
        return self._paginate(f"/threads/{thread_id}/messages", Message, page)

    # --- runs -----------------------------------------------------------------------------

    @overload
    async def create_run(
        self,
        thread_id: str,
        assistant_id: str,
        *,
        stream: Literal[False] = False,
        **params: Any,
    ) -> Run: ...

    @overload
    async def create_run(
        self,
        thread_id: str,
        assistant_id: str,
        *,
        stream: Literal[True],
        handler: EventHandler | None = None,
        **params: Any,
    ) -> RunStream: ...

    async def create_run(
        self,
        thread_id: str,
        assistant_id: str,
        *,
        stream: bool = False,
        handler: EventHandler | None = None,
        **params: Any,
    ) -> Run | RunStream:
        """Create a run; with ``stream=True`` return its :class:`RunStream`."""
        body = _drop_none({"assistant_id": assistant_id, **params})
        path = f"/threads/{thread_id}/runs"
        if stream:
            return await self._stream("POST", path, {**body, "stream": True}, handler, None)
        return await self._call("POST", path, Run, body=body, idempotent=False)

    @overload
    async def create_thread_and_run(
        self, assistant_id: str, *, stream: Literal[False] = False, **params: Any
    ) -> Run: ...

    @overload
    async def create_thread_and_run(
        self,
        assistant_id: str,
        *,
        stream: Literal[True],
        handler: EventHandler | None = None,
        **params: Any,
    ) -> RunStream: ...

    async def create_thread_and_run(
        self,
        assistant_id: str,
        *,
        stream: bool = False,
        handler: EventHandler | None = None,
        **params: Any,
    ) -> Run | RunStream:
        """Create a thread and a run on it in one call (``thread={"messages": [...]}``)."""
        body = _drop_none({"assistant_id": assistant_id, **params})
        if stream:
            return await self._stream(
                "POST", "/threads/runs", {**body, "stream": True}, handler, None
            )
        return await self._call("POST", "/threads/runs", Run, body=body, idempotent=False)

    async def retrieve_run(self, thread_id: str, run_id: str) -> Run:
        """Retrieve a run (``run.response_meta.poll_after_ms`` carries the polling hint)."""
        return await self._call("GET", f"/threads/{thread_id}/runs/{run_id}", Run)

    def list_runs(self, thread_id: str, **page: Any) -> AsyncPaginator[Run]:
        """Iterate a thread's runs (limit, order, after, before)."""
        return self._paginate(f"/threads/{thread_id}/runs", Run, page)

    async def update_run(self, thread_id: str, run_id: str, *, metadata: dict[str, str]) -> Run:
        """Replace a run's metadata."""
        path = f"/threads/{thread_id}/runs/{run_id}"
        return await self._call("POST", path, Run, body={"metadata": metadata}, idempotent=True)

    async def cancel_run(self, thread_id: str, run_id: str) -> Run:
        """Ask the server to cancel a run (it goes cancelling, then cancelled)."""
        path = f"/threads/{thread_id}/runs/{run_id}/cancel"
        # Idempotent in effect: a repeated cancel at worst answers 400 "already cancelling".
        return await self._call("POST", path, Run, idempotent=True)

    @overload
    async def submit_tool_outputs(
        self,
        thread_id: str,
        run_id: str,
        tool_outputs: Sequence[Mapping[str, str]],
        *,
        stream: Literal[False] = False,
    ) -> Run: ...

    @overload
    async def submit_tool_outputs(
        self,
        thread_id: str,
        run_id: str,
        tool_outputs: Sequence[Mapping[str, str]],
        *,
        stream: Literal[True],
        handler: EventHandler | None = None,
    ) -> RunStream: ...

    async def submit_tool_outputs(
        self,
        thread_id: str,
        run_id: str,
        tool_outputs: Sequence[Mapping[str, str]],
        *,
        stream: bool = False,
        handler: EventHandler | None = None,
    ) -> Run | RunStream:
        """Submit every output of a ``requires_action`` in one request."""
        path = f"/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"
        body: dict[str, Any] = {"tool_outputs": [dict(o) for o in tool_outputs]}
        if stream:
            return await self._stream("POST", path, {**body, "stream": True}, handler, run_id)
        return await self._call("POST", path, Run, body=body, idempotent=False)

    def list_run_steps(self, thread_id: str, run_id: str, **page: Any) -> AsyncPaginator[RunStep]:
        """Iterate a run's steps (limit, order, after, before)."""
        return self._paginate(f"/threads/{thread_id}/runs/{run_id}/steps", RunStep, page)

    async def retrieve_run_step(self, thread_id: str, run_id: str, step_id: str) -> RunStep:
        """Retrieve one run step."""
        path = f"/threads/{thread_id}/runs/{run_id}/steps/{step_id}"
        return await self._call("GET", path, RunStep)

    # --- plumbing -------------------------------------------------------------------------

    def _build_headers(
        self,
        organization: str | None,
        project: str | None,
        extra: Mapping[str, str] | None,
    ) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "agent-runtime/0.1"}
        if self.is_azure:
            if self._api_key:
                headers["api-key"] = self._api_key
        else:
            headers["OpenAI-Beta"] = "assistants=v2"
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
        if organization:
            headers["OpenAI-Organization"] = organization
        if project:
            headers["OpenAI-Project"] = project
        headers.update(extra or {})
        return headers

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        stream: bool = False,
    ) -> Request:
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        if self.api_version:
            query["api-version"] = self.api_version
        return Request(
            method=method,
            url=self.base_url + path,
            headers=self._headers,
            json=body,
            params=query,
            stream=stream,
            timeout_s=self.timeout_s,
            idle_timeout_s=self.stream_idle_timeout_s,
        )

    async def _send(self, request: Request) -> Response:
        if self._closed:
            raise ClientClosedError("this AssistantsClient is closed; create a new one")
        response = await self._transport.send(request)
        server_time = response.server_time
        if server_time is not None:
            self.clock_offset_s = server_time - time.time()
        if response.status >= 400:
            raise self._error(response)
        return response

    def _error(self, response: Response) -> APIStatusError:
        try:
            body: Any = json.loads(response.body) if response.body else None
        except (ValueError, RecursionError):  # not JSON, or hostile nesting
            body = None
        fallback = response.body[:200].decode("utf-8", "replace") if body is None else ""
        return status_error(
            response.status,
            body,
            request_id=response.request_id,
            retry_after_s=parse_retry_after(dict(response.headers)),
            fallback_message=fallback,
        )

    def _count_retry(self, attempt: int, error: BaseException, wait_s: float) -> None:
        self.retries += 1

    async def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> M:
        request = self._request(method, path, body=body, params=params)
        safe = method in ("GET", "DELETE") if idempotent is None else idempotent
        response = await call_with_retries(
            lambda: self._send(request),
            self.retry,
            idempotent=safe,
            operation=f"{method} {path}",
            on_retry=self._count_retry,
        )
        return _parse(response, model)

    async def _stream(
        self,
        method: str,
        path: str,
        body: Any,
        handler: EventHandler | None,
        run_id: str | None,
    ) -> RunStream:
        response = await self._open_stream(method, path, body)
        assert response.chunks is not None
        return RunStream(
            response.chunks,
            handler=handler,
            max_event_bytes=self.max_event_bytes,
            close=response.aclose,
            run_id=run_id,
        )

    async def _open_stream(self, method: str, path: str, body: Any) -> Response:
        """Send a streaming request; retried only before its first byte (never re-sent blindly)."""
        request = self._request(method, path, body=body, stream=True)
        return await call_with_retries(
            lambda: self._send(request),
            self.retry,
            idempotent=False,
            operation=f"{method} {path} (stream)",
            on_retry=self._count_retry,
        )

    async def _fetch_page(self, path: str, params: dict[str, str]) -> ListPage:
        return await self._call("GET", path, ListPage, params=params)

    def _paginate(self, path: str, model: type[M], page: Mapping[str, Any]) -> AsyncPaginator[M]:
        params = {k: str(v) for k, v in page.items() if v is not None}

        async def fetch(query: dict[str, str]) -> ListPage:
            return await self._fetch_page(path, query)

        return AsyncPaginator(fetch, model, params)


def _parse(response: Response, model: type[M]) -> M:
    try:
        obj = model.model_validate_json(response.body)
    except ValueError as exc:
        raise InvalidResponseError(
            f"the server answered {response.status} with a body that is not a valid "
            f"{model.__name__}: {str(exc)[:300]}"
        ) from exc
    obj._meta = ResponseMeta(
        request_id=response.request_id,
        poll_after_ms=_int_or_none(response.headers.get("openai-poll-after-ms")),
        server_time=response.server_time,
    )
    return obj


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _register_secret(api_key: str | None) -> None:
    if not api_key:
        return
    try:
        from runtime.logging import register_secret
    except ImportError:  # pragma: no cover - logging module always ships
        return
    register_secret(api_key)
