"""The HTTP seam: the only module that imports aiohttp on the client side.

The client talks to a :class:`Transport` with one async method, :meth:`Transport.send`, and
``aclose()``. :class:`AiohttpTransport` is the real one; aiohttp's exceptions become ours in
exactly one place, :func:`map_aiohttp_errors`.

Redirects are never followed: requests carry the API key (``Authorization`` or Azure's
``api-key``, which aiohttp would forward to another origin), and the API does not redirect.
A 3xx answer raises :class:`~runtime.errors.APIStatusError` with code ``redirect_refused``
naming where it pointed; configure that URL as the base URL if it is the right server.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import types
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import aiohttp

from runtime.errors import APIStatusError, ConnectError, RequestTimeout, TransportError

REDIRECT_REFUSED = "redirect_refused"
"""``APIStatusError.code`` of a 3xx answer: the transport does not follow redirects."""


@dataclass(frozen=True)
class Request:
    """One HTTP request, fully resolved.

    Attributes:
        method: HTTP method.
        url: absolute URL.
        headers: request headers (may hold the API key: never log them).
        json: JSON body, or None.
        params: query parameters.
        stream: True to return the body as a chunk iterator.
        timeout_s: total timeout for a non-stream request.
        idle_timeout_s: longest silence allowed between two chunks of a stream.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False, default_factory=dict)
    json: Any = None
    params: Mapping[str, str] = field(default_factory=dict)
    stream: bool = False
    timeout_s: float | None = None
    idle_timeout_s: float | None = None


class Response:
    """An HTTP answer: status, headers, and either the body or a chunk iterator."""

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes = b"",
        chunks: AsyncIterator[bytes] | None = None,
        release: Any = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.chunks = chunks
        self._release = release

    async def aclose(self) -> None:
        """Release the connection of a streamed response."""
        release = self._release
        self._release = None
        if release is not None:
            release()

    @property
    def request_id(self) -> str | None:
        """The x-request-id header."""
        return self.headers.get("x-request-id")

    @property
    def server_time(self) -> float | None:
        """The server's clock from the Date header (epoch seconds)."""
        value = self.headers.get("date")
        return _parse_http_date(value) if value else None


@functools.lru_cache(maxsize=32)
def _parse_http_date(value: str) -> float | None:
    """Parse an HTTP date once: it changes once a second, and every response carries one."""
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


class Transport(Protocol):
    """What the client needs from HTTP."""

    async def send(self, request: Request) -> Response:
        """Send one request; raise TransportError subclasses (and APIStatusError for a
        redirect, which is never followed)."""
        ...

    async def aclose(self) -> None:
        """Release all connections."""
        ...


class _MappedErrors:
    """The context manager :func:`map_aiohttp_errors` returns: a plain class, not a
    generator, because it wraps every request and a generator-based one costs more than
    the request's own bookkeeping. Stateless, so one instance serves each ``sent``."""

    __slots__ = ("sent",)

    def __init__(self, sent: bool) -> None:
        self.sent = sent

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        # No error, CancelledError and the like, or an error not of aiohttp: it goes on as is.
        if isinstance(exc, Exception) and (mapped := _mapped_error(exc, self.sent)) is not None:
            raise mapped from exc


_BEFORE_SENT = _MappedErrors(sent=False)
_AFTER_SENT = _MappedErrors(sent=True)


def map_aiohttp_errors(sent: bool = False) -> _MappedErrors:
    """Translate aiohttp and socket errors into our TransportError tree (a context manager).

    Args:
        sent: whether the request may already have reached the server (for the message).
    """
    return _AFTER_SENT if sent else _BEFORE_SENT


def _mapped_error(exc: Exception, sent: bool) -> TransportError | None:
    """Our error for an aiohttp or socket error (None: not one of those, re-raise it)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # Before ServerTimeoutError (its base): the request never left, so even a
        # non-idempotent POST may be retried (request_sent=False is what retry checks).
        return ConnectError(f"could not connect: connect timed out ({exc})", request_sent=False)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return RequestTimeout(f"the server went silent: {exc}")
    if isinstance(exc, TimeoutError):
        return RequestTimeout("the request timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(f"could not connect: {exc.os_error}", request_sent=False)
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
        # ClientConnectionError also covers a bare "Connection closed" mid-body, which
        # would otherwise fall through to the generic (never retried) TransportError.
        where = "after the request was sent" if sent else "during the request"
        return ConnectError(f"the connection was lost {where}: {exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ConnectError(f"the response body was cut: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"HTTP client error: {type(exc).__name__}: {exc}")
    if isinstance(exc, AttributeError):
        # aiohttp reads a response head from a connection that was closed under it as
        # ``None.getall`` (seen with a thousand streams at once): a lost connection, which
        # the loop can recover, not an error of ours to crash the run with.
        where = "after the request was sent" if sent else "during the request"
        return ConnectError(f"the connection was lost {where} (aiohttp: {exc})")
    return None


class AiohttpTransport:
    """The real transport: one aiohttp session and connection pool.

    Args:
        connect_timeout_s: time allowed to open a connection.
        max_connections: pool size.
    """

    def __init__(self, *, connect_timeout_s: float = 10.0, max_connections: int = 100) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
                auto_decompress=True,
            )
        return self._session

    async def send(self, request: Request) -> Response:
        """Send ``request`` and return its answer (streamed when ``request.stream``).

        Raises:
            TransportError: no usable answer (connection, timeout, client error).
            APIStatusError: a 3xx answer (code ``redirect_refused``); it is not followed.
        """
        session = self._get_session()
        timeout = self._timeout(request)
        with _BEFORE_SENT:
            resp = await session.request(
                request.method,
                request.url,
                headers=request.headers,  # aiohttp copies them into its own multidict
                json=request.json,
                params=request.params or None,
                timeout=timeout,
                allow_redirects=False,  # credentials must not follow a redirect elsewhere
            )
        headers = {k.lower(): v for k, v in resp.headers.items()}
        if 300 <= resp.status < 400:
            resp.release()
            raise _redirect_refused(resp.status, str(resp.url), headers)
        if request.stream and resp.status < 400:
            return Response(resp.status, headers, chunks=_chunks(resp), release=resp.release)
        try:
            with _AFTER_SENT:
                body = await resp.read()
        finally:
            resp.release()
        return Response(resp.status, headers, body=body)

    def _timeout(self, request: Request) -> aiohttp.ClientTimeout:
        # ClientTimeout is immutable and a client sends few distinct ones: built once each.
        key = (
            None if request.stream else request.timeout_s,
            request.idle_timeout_s if request.stream else None,
        )
        timeout = self._timeouts.get(key)
        if timeout is None:
            if len(self._timeouts) > 16:
                self._timeouts.clear()
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=key[0], sock_connect=self._connect_timeout_s, sock_read=key[1]
            )
        return timeout

    async def aclose(self) -> None:
        """Close the session (idempotent)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _redirect_refused(status: int, url: str, headers: Mapping[str, str]) -> APIStatusError:
    location = headers.get("location")
    where = "without a location"
    if location:
        try:
            target = urlsplit(urljoin(url, location))
            # Origin and path only: user info or a query string may carry a token.
            host = target.netloc.rpartition("@")[2]
            where = f"to {target.scheme}://{host}{target.path}"
        except ValueError:
            where = "to an unparsable location"
    return APIStatusError(
        f"the server redirected {where}; redirects are not followed, so credentials "
        "never leave the configured server (set the base URL to the final address)",
        status=status,
        code=REDIRECT_REFUSED,
        request_id=headers.get("x-request-id"),
    )


async def _chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        with _AFTER_SENT:
            async for chunk in resp.content.iter_any():
                yield chunk
    except asyncio.CancelledError:
        resp.close()
        raise
