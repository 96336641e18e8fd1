"""Credentials never follow a redirect: a 3xx is a typed error, and the other origin sees
nothing (neither ``Authorization`` nor Azure's ``api-key``)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from runtime import APIStatusError, AssistantsClient, RetryPolicy
from runtime.transport import REDIRECT_REFUSED

SECRET = "sk-test-redirect-0123456789"
AZURE_SECRET = "0123456789abcdef0123456789abcdef"


def recorder(seen: list[dict[str, str]]) -> web.Application:
    """An origin that records every request's headers and answers 200 with an empty run."""

    async def handle(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({"id": "run_1", "object": "thread.run", "status": "queued"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def redirector(target: str, status: int) -> web.Application:
    """An origin that redirects every request to the same path on ``target``, adding a
    signed-looking query parameter."""

    async def handle(request: web.Request) -> web.Response:
        location = f"{target}{request.rel_url.update_query(token='signed-secret-value')}"
        return web.Response(status=status, headers={"Location": location})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def client_for(base: str, style: str) -> AssistantsClient:
    retry = RetryPolicy(max_attempts=2, initial_wait_s=0, jitter_s=0)
    if style == "azure":
        return AssistantsClient(azure_endpoint=base, api_key=AZURE_SECRET, retry=retry)
    return AssistantsClient(base_url=base + "/v1", api_key=SECRET, retry=retry)


@pytest.mark.parametrize("style", ["bearer", "azure"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_cross_origin_redirect_is_refused_and_sends_no_credentials(
    serve: Any, style: str, status: int
) -> None:
    """Requests (plain and streaming) answered with a redirect to another origin raise
    APIStatusError(code=redirect_refused) naming the target without its query; the other
    origin (another loopback port) never receives a request, let alone a credential."""
    seen: list[dict[str, str]] = []
    other = await serve(recorder(seen))
    first = await serve(redirector(other, status))
    client = client_for(first, style)
    outcomes: list[object] = []
    try:
        for attempt in (
            lambda: client.retrieve_run("thread_1", "run_1"),
            lambda: client.create_run("thread_1", "asst_1", stream=True),
        ):
            try:
                outcomes.append(await attempt())
            except Exception as exc:
                outcomes.append(exc)
    finally:
        await client.aclose()
    for headers in seen:
        assert "authorization" not in headers and "api-key" not in headers
    assert seen == []  # nothing at all reached the other origin
    for error in outcomes:
        assert isinstance(error, APIStatusError), error
        assert error.status == status and error.code == REDIRECT_REFUSED
        assert f"redirected to {other}/" in error.message
        assert "signed-secret-value" not in str(error) and "token=" not in str(error)
        assert SECRET not in repr(error) and AZURE_SECRET not in repr(error)
