"""AiohttpTransport refuses every redirect with a typed error that names the target safely."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runtime.errors import APIStatusError, ConnectError, RequestTimeout, TransportError
from runtime.transport import REDIRECT_REFUSED, AiohttpTransport, Request, map_aiohttp_errors


def app_answering(status: int, location: str | None) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        headers = {"x-request-id": "req_1"}
        if location is not None:
            headers["Location"] = location
        return web.Response(status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/v2/runs?sig=abc", "redirected to {base}/v2/runs;"),
        (
            "https://user:pw@elsewhere.example:8443/x?key=1#frag",
            "redirected to https://elsewhere.example:8443/x;",
        ),
        (None, "redirected without a location;"),
    ],
)
async def test_redirect_is_refused_with_target_but_no_query_or_user_info(
    serve: Any, location: str | None, expected: str
) -> None:
    """A 302 (same origin or not) raises APIStatusError(code=redirect_refused): relative
    targets are resolved, user info, query and fragment are left out."""
    base = await serve(app_answering(302, location))
    transport = AiohttpTransport()
    try:
        for stream in (False, True):
            with pytest.raises(APIStatusError) as info:
                await transport.send(Request("GET", base + "/v1/runs", stream=stream))
            error = info.value
            assert (error.status, error.code, error.request_id) == (302, REDIRECT_REFUSED, "req_1")
            assert expected.format(base=base) in error.message
            for leak in ("sig=", "pw", "key=1", "frag"):
                assert leak not in error.message
    finally:
        await transport.aclose()


async def test_error_statuses_are_still_returned(serve: Any) -> None:
    """A 4xx is not a redirect: it comes back as a response for the client to map."""
    base = await serve(app_answering(404, None))
    transport = AiohttpTransport()
    try:
        response = await transport.send(Request("GET", base + "/v1/x"))
        assert response.status == 404
    finally:
        await transport.aclose()


@pytest.mark.parametrize("sent", [False, True])
def test_aiohttp_failing_on_a_closed_connection_is_a_lost_connection(sent: bool) -> None:
    """aiohttp's ``None.getall`` on a connection closed under a response head (seen at a
    thousand concurrent streams) becomes a ConnectError the loop recovers, not an
    AttributeError that ends the run."""
    with pytest.raises(ConnectError) as caught, map_aiohttp_errors(sent=sent):
        headers = None
        headers.getall("set-cookie", ())  # type: ignore[attr-defined]  # as aiohttp does
    assert caught.value.request_sent is True  # the server may have acted: never sent twice
    assert "getall" in caught.value.message
    assert isinstance(caught.value.__cause__, AttributeError)


@pytest.mark.parametrize(
    ("raised", "expected", "retry_safe"),
    [
        (aiohttp.ConnectionTimeoutError(), ConnectError, False),
        (aiohttp.ServerTimeoutError(), RequestTimeout, True),
        (TimeoutError(), RequestTimeout, True),
        (aiohttp.ClientPayloadError("cut"), ConnectError, True),
        (ConnectionResetError("reset"), ConnectError, True),
        (aiohttp.InvalidURL("x"), TransportError, True),
    ],
)
def test_aiohttp_errors_map_to_the_typed_tree(
    raised: Exception, expected: type[TransportError], retry_safe: bool
) -> None:
    """Each aiohttp or socket error becomes its typed error (a connect timeout: never
    sent), chained to the original; anything else passes through untouched."""
    with pytest.raises(expected) as caught, map_aiohttp_errors(sent=True):
        raise raised
    assert type(caught.value) is expected
    assert caught.value.__cause__ is raised
    if isinstance(caught.value, ConnectError):
        assert caught.value.request_sent is retry_safe
    with pytest.raises(KeyError), map_aiohttp_errors():
        raise KeyError("not ours")
