"""One HTTP base for both protocols: URLs, auth, retries, typed errors, pagination, clock.

:class:`HTTPClient` builds each :class:`~runtime.transport.Request` (OpenAI style
``{base}/v1/...`` with ``Authorization: Bearer``, or Azure style ``{endpoint}/openai/...``
with ``api-key`` and ``api-version``), sends it under the retry policy and turns error
answers into the typed tree of :mod:`runtime.errors`. Ids are checked and percent-encoded
before they enter a URL path, so an id can never address another resource. The server's
clock is estimated from ``Date`` headers; an implausible skew is reported and ignored.

``AssistantsClient`` and ``ResponsesClient`` are thin subclasses that add endpoints.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Generic, Self, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from runtime import tracing
from runtime.errors import APIStatusError, ClientClosedError, InvalidResponseError, status_error
from runtime.logging import ModuleLogger
from runtime.pacing import RatePacer, pacer_from_settings
from runtime.protocol.objects import APIObject, ListPage, ResponseMeta
from runtime.protocol.sse import DEFAULT_MAX_EVENT_BYTES
from runtime.retry import RetryPolicy, call_with_retries, parse_retry_after
from runtime.transport import AiohttpTransport, Request, Response, Transport

log = ModuleLogger("runtime.http")

M = TypeVar("M", bound=APIObject)
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# A Date header further than this from the local clock is not believed (a broken proxy or
# server clock would otherwise turn every deadline into an instant timeout).
MAX_CLOCK_SKEW_S = 300.0
_ID = re.compile(r"[A-Za-z0-9_\-.:~]+")


def path_segment(value: str) -> str:
    """``value`` checked as one id and percent-encoded for a URL path.

    Raises:
        ValueError: empty, ``.`` / ``..``, or characters no API id has (``/``, ``?``, ...).
    """
    if not isinstance(value, str) or not _ID.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"not a valid id for a URL path: {value!r}")
    # ":" is the one character of an id that quote() changes.
    return quote(value, safe="") if ":" in value else value


def drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    """The request fields that are set, pydantic models dumped to plain JSON values."""
    return {k: _plain(v) for k, v in params.items() if v is not None}


# Values that are never a model: the common request fields skip the (ABC) isinstance check.
_JSON_TYPES = frozenset({str, int, float, bool, list, dict, tuple})


def _plain(value: Any) -> Any:
    if type(value) in _JSON_TYPES:
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    return value


@dataclass(frozen=True)
class ClientOptions:
    """How a client reaches its server; shared by every protocol's client.

    Attributes:
        base_url: OpenAI-style base URL including ``/v1`` (default: OpenAI's).
        azure_endpoint: Azure resource endpoint; selects Azure style when given.
        api_version: Azure ``api-version`` query parameter.
        organization: optional ``OpenAI-Organization`` header.
        project: optional ``OpenAI-Project`` header.
        retry: the retry policy of every request.
        timeout_s: timeout of a non-streaming request.
        stream_idle_timeout_s: longest gap allowed between two stream events.
        connect_timeout_s: time allowed to open a connection.
        max_connections: connection pool size.
        max_event_bytes: largest SSE line/event accepted.
        default_headers: extra headers for every request.
        pacer: paces the requests that make the model work (see :mod:`runtime.pacing`).
    """

    base_url: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    organization: str | None = None
    project: str | None = None
    retry: RetryPolicy | None = None
    timeout_s: float = 60.0
    stream_idle_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_connections: int = 100
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    default_headers: Mapping[str, str] | None = None
    pacer: RatePacer | None = None


def options_from_settings(settings: Any) -> tuple[ClientOptions, str | None]:
    """Client options and API key from :class:`runtime.config.Settings` (api, retry)."""
    api, retry = settings.api, settings.retry
    # Settings.effective_api_key: Azure prefers azure_api_key but falls back to api_key
    # (computed here too for settings-like objects without that property).
    key = getattr(settings, "effective_api_key", None)
    if key is None:
        key = (api.azure_api_key if api.azure_endpoint else None) or api.api_key
    options = ClientOptions(
        base_url=api.base_url,
        azure_endpoint=api.azure_endpoint,
        api_version=api.api_version if api.azure_endpoint else None,
        organization=api.organization,
        project=api.project,
        retry=RetryPolicy(
            max_attempts=retry.max_attempts,
            initial_wait_s=retry.initial_wait_s,
            max_wait_s=retry.max_wait_s,
            jitter_s=retry.jitter_s,
            respect_retry_after=retry.respect_retry_after,
            max_retry_after_s=retry.max_retry_after_s,
        ),
        timeout_s=api.read_timeout_s,
        stream_idle_timeout_s=api.stream_idle_timeout_s,
        connect_timeout_s=api.connect_timeout_s,
        max_connections=api.max_connections,
        max_event_bytes=api.max_event_bytes,
        pacer=pacer_from_settings(settings),
    )
    return options, key.get_secret_value() if key is not None else None


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


class HTTPClient:
    """The HTTP machinery of a protocol client (subclasses add endpoints).

    Args:
        base_url: OpenAI-style base URL including ``/v1`` (default: OpenAI's).
        api_key: the API key (``Authorization: Bearer`` or Azure's ``api-key``).
        azure_endpoint: Azure resource endpoint; selects Azure style when given.
        api_version: Azure ``api-version`` (default: the protocol's).
        organization: optional ``OpenAI-Organization`` header.
        project: optional ``OpenAI-Project`` header.
        retry: the retry policy of every request.
        timeout_s: timeout of a non-streaming request.
        stream_idle_timeout_s: longest gap allowed between two stream events.
        connect_timeout_s: time allowed to open a connection.
        max_connections: connection pool size.
        max_event_bytes: largest SSE line/event accepted.
        transport: a custom :class:`~runtime.transport.Transport` (tests, proxies, sharing);
            a client closes only a transport it created.
        default_headers: extra headers for every request.
        pacer: paces the requests that make the model work, by model and key (a
            :class:`~runtime.pacing.RatePacer`; clients that share one share its buckets).
    """

    #: Headers of the protocol (e.g. the Assistants beta header), OpenAI style only.
    protocol_headers: ClassVar[Mapping[str, str]] = {}
    #: The Azure ``api-version`` used when none is given.
    default_azure_api_version: ClassVar[str] = "2024-08-01-preview"

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
        pacer: RatePacer | None = None,
    ) -> None:
        self.options = ClientOptions(
            base_url=base_url,
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
            default_headers=default_headers,
            pacer=pacer,
        )
        self._pacer = pacer
        self.is_azure = azure_endpoint is not None
        if azure_endpoint is not None:
            self.base_url = azure_endpoint.rstrip("/") + "/openai"
            self.api_version: str | None = api_version or self.default_azure_api_version
        else:
            self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
            self.api_version = api_version
        self._api_key = api_key
        _register_secret(api_key)
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.stream_idle_timeout_s = stream_idle_timeout_s
        self.max_event_bytes = max_event_bytes
        self._headers = self._build_headers()
        self._owns_transport = transport is None
        self._transport: Transport = transport or AiohttpTransport(
            connect_timeout_s=connect_timeout_s, max_connections=max_connections
        )
        self._closed = False
        self.clock_offset_s = 0.0
        self._skew_reported = False
        self.retries = 0

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_options(
        cls, options: ClientOptions, api_key: str | None, *, transport: Transport | None = None
    ) -> Self:
        """A client from shared options (e.g. another protocol's client's ``options``)."""
        rest = {f.name: getattr(options, f.name) for f in fields(options) if f.name != "base_url"}
        return cls(options.base_url, api_key, transport=transport, **rest)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> Self:
        """Build a client from :class:`runtime.config.Settings` (api and retry sections).

        Args:
            settings: the settings.
            **overrides: any constructor argument (``base_url``, ``api_key``, ``transport``,
                ...).
        """
        options, key = options_from_settings(settings)
        transport: Transport | None = overrides.pop("transport", None)
        if "api_key" in overrides:
            key = overrides.pop("api_key")
        if options.azure_endpoint and "api_version" not in getattr(
            settings.api, "model_fields_set", ()
        ):
            # A default api-version belongs to the protocol, not to the settings file.
            options = replace(options, api_version=None)
        if overrides:
            options = replace(options, **overrides)
        return cls.from_options(options, key, transport=transport)

    @classmethod
    def sharing(cls, client: HTTPClient, *, api_version: str | None = None) -> Self:
        """A client of this class on ``client``'s session and credentials.

        The new client never closes the shared transport; ``client`` keeps owning it.

        Args:
            client: the client (of any protocol) whose session, auth and retries to reuse.
            api_version: Azure ``api-version`` (default: this protocol's).
        """
        options = replace(client.options, api_version=api_version)
        return cls.from_options(options, client._api_key, transport=client._transport)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._closed:
            raise ClientClosedError(f"this {type(self).__name__} is closed; create a new one")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session (unless shared); the client cannot be used afterwards."""
        self._closed = True
        if self._owns_transport:
            await self._transport.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closed

    def __repr__(self) -> str:
        style = "azure" if self.is_azure else "openai"
        key = "set" if self._api_key else "none"
        return f"{type(self).__name__}(base_url={self.base_url!r}, style={style}, api_key=<{key}>)"

    @property
    def pacer(self) -> RatePacer | None:
        """The pacer of this client's model requests, if any."""
        return self._pacer

    def server_now(self) -> float:
        """The server's clock (epoch seconds), estimated from the Date headers seen so far."""
        return time.time() + self.clock_offset_s

    # --- requests -------------------------------------------------------------------------

    def _build_headers(self) -> dict[str, str]:
        options = self.options
        headers = {"Content-Type": "application/json", "User-Agent": "agent-runtime/0.1"}
        if self.is_azure:
            if self._api_key:
                headers["api-key"] = self._api_key
        else:
            headers.update(self.protocol_headers)
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
        if options.organization:
            headers["OpenAI-Organization"] = options.organization
        if options.project:
            headers["OpenAI-Project"] = options.project
        headers.update(options.default_headers or {})
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
            raise ClientClosedError(f"this {type(self).__name__} is closed; create a new one")
        pacer = self._pacer
        if pacer is not None and not pacer.paces(request.method, request.url):
            pacer = None
        if pacer is not None:
            await pacer.acquire(request.headers, request.json)
        response = await self._transport.send(request)
        if pacer is not None:
            await pacer.observe(request.headers, request.json, response.headers)
        if response.server_time is not None:
            self._observe_clock(response.server_time)
        if response.status >= 400:
            raise self._error(response)
        return response

    def _observe_clock(self, server_time: float) -> None:
        offset = server_time - time.time()
        if abs(offset) <= MAX_CLOCK_SKEW_S:
            self.clock_offset_s = offset
            return
        if not self._skew_reported:
            self._skew_reported = True
            log.warning(
                "http.clock_skew_ignored", offset_s=round(offset, 1), limit_s=MAX_CLOCK_SKEW_S
            )
        self.clock_offset_s = 0.0

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
        if tracing.current_span() is not None:
            status = getattr(error, "status", None)
            tracing.add_event(
                "runtime.retry",
                {
                    "attempt": attempt,
                    "wait_s": round(wait_s, 3),
                    "error.type": str(status) if status is not None else type(error).__name__,
                },
            )

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
        return parse_object(response, model)

    async def _open_stream(
        self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> Response:
        """Send a streaming request; retried only before its first byte (never re-sent blindly)."""
        request = self._request(method, path, body=body, params=params, stream=True)
        return await call_with_retries(
            lambda: self._send(request),
            self.retry,
            idempotent=method == "GET",
            operation=f"{method} {path} (stream)",
            on_retry=self._count_retry,
        )

    def _paginate(self, path: str, model: type[M], page: Mapping[str, Any]) -> AsyncPaginator[M]:
        params = {k: str(v) for k, v in page.items() if v is not None}

        async def fetch(query: dict[str, str]) -> ListPage:
            return await self._call("GET", path, ListPage, params=query)

        return AsyncPaginator(fetch, model, params)


def parse_object(response: Response, model: type[M]) -> M:
    """The typed object of a 2xx answer, carrying the answer's metadata."""
    try:
        obj = model.model_validate_json(response.body)
    except ValueError as exc:
        raise InvalidResponseError(
            f"the server answered {response.status} with a body that is not a valid "
            f"{model.__name__}: {str(exc)[:300]}"
        ) from exc
    obj.attach_meta(
        ResponseMeta(
            request_id=response.request_id,
            poll_after_ms=_int_or_none(response.headers.get("openai-poll-after-ms")),
            server_time=response.server_time,
        )
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
    from runtime.logging import register_secret

    register_secret(api_key)
