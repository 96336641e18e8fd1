"""API keys never leak: every log line, exception text and repr of a busy session is scanned.

The session runs real runs against the emulator with the key required, with faults (429,
500, reset, stream cut), tools that fail, full payload logging, a 401 from a server that wants
another key, servers that echo the key back in error bodies, a refused connection, the Azure
style with a plain hex key (only registration can mask it), and settings loaded from the
environment. Logging is configured at DEBUG in JSON so every record of every library is kept.
"""

from __future__ import annotations

import io
import json
import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiohttp import web

from runtime import AssistantsClient, Orchestrator, RunPolicy
from runtime.config import load_settings
from runtime.emulator import Emulator
from runtime.errors import AuthenticationError, ConnectError, RuntimeAPIError
from runtime.logging import configure_logging, reset_logging
from runtime.retry import RetryPolicy
from tools import ToolRegistry

KEY = "sk-chaos-SECRET-1234567890"
AZURE_KEY = "c0ffee" * 5 + "42"  # plain hex, no sk- shape: only registration masks it
SECRETS = (KEY, AZURE_KEY)
FAST = RunPolicy(poll_interval_s=0.05, max_poll_interval_s=0.1, log_tool_payloads=True)
QUICK = RetryPolicy(initial_wait_s=0.01, max_wait_s=0.05, jitter_s=0)
ONE_TRY = RetryPolicy(max_attempts=2, initial_wait_s=0.01, max_wait_s=0.01, jitter_s=0)


class Texts(list[str]):
    """Every text a user could see or log: exception strings, reprs, tracebacks."""

    def exception(self, exc: BaseException) -> None:
        self += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]

    def leaks(self) -> list[str]:
        return [t for t in self if any(secret in t for secret in SECRETS)]


def registry() -> ToolRegistry:
    """Tools that succeed, raise, and take arguments (payload logging is on)."""
    reg = ToolRegistry()

    @reg.tool
    async def lookup(city: str) -> str:
        """Look a city up."""
        return f"{city}: fine"

    @reg.tool
    def boom(reason: str) -> str:
        """Always raises."""
        raise RuntimeError(f"boom: {reason}")

    return reg


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """JSON logging at DEBUG into a buffer, for the whole test."""
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", stream=stream)
    try:
        yield stream
    finally:
        structlog.contextvars.clear_contextvars()
        reset_logging()


def echo_app() -> web.Application:
    """A hostile server that echoes the credentials it received in its error answers."""

    def presented(request: web.Request) -> str:
        return request.headers.get("Authorization", "") + request.headers.get("api-key", "")

    async def unauthorized(request: web.Request) -> web.Response:
        body = {"error": {"message": f"Incorrect API key provided: {presented(request)}"}}
        return web.json_response(body, status=401)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=502, text=f"upstream rejected {presented(request)}")

    async def limited(request: web.Request) -> web.Response:
        body = {"error": {"message": f"rate limit for key {presented(request)}"}}
        return web.json_response(body, status=429, headers={"retry-after-ms": "1"})

    app = web.Application()
    app.router.add_route("*", "/v1/assistants", unauthorized)
    app.router.add_route("*", "/v1/threads", broken)
    app.router.add_route("*", "/v1/threads/{tid}/runs", limited)
    app.router.add_route("*", "/openai/assistants", unauthorized)
    return app


async def faulted_runs(texts: Texts) -> None:
    """Runs that need the key, under faults, with failing and unknown tools."""
    async with Emulator(api_key=KEY, seed=5) as emu:
        emu.inject("429", method="POST", path=r"/runs$", retry_after_ms=5)
        emu.inject("cut", method="POST", path=r"/runs$", after=2)
        emu.inject("500", method="POST", path=r"/submit_tool_outputs$")
        emu.inject("reset", method="GET", times=2)
        async with AssistantsClient(base_url=emu.base_url, api_key=KEY, retry=QUICK) as client:
            texts += [repr(client), str(client)]
            orch = Orchestrator(client, registry(), policy=FAST)
            assistant = await client.create_assistant(model="gpt-4o")
            message = '/call lookup {"city": "Oslo"}\n/call boom {"reason": "x"}\n/call nope {}'
            result = await orch.create_thread_and_run(
                assistant.id, messages=[{"role": "user", "content": message}]
            )
            texts += [repr(result), result.text, *(r.output for r in result.tool_calls)]
            assert result.status == "completed"
            assert result.recoveries >= 1 and client.retries >= 1
            structlog.get_logger("security.test").info(
                "client.debug", client=client, headers=dict(client._headers)
            )


async def wrong_key(texts: Texts) -> None:
    """401 from a server that expects another key, through the client and the orchestrator."""
    async with (
        Emulator(api_key="sk-the-right-one-00000000") as emu,
        AssistantsClient(base_url=emu.base_url, api_key=KEY) as client,
    ):
        with pytest.raises(AuthenticationError) as info:
            await client.create_assistant(model="gpt-4o")
        texts.exception(info.value)
        with pytest.raises(AuthenticationError) as info:
            await Orchestrator(client, registry()).create_thread_and_run("asst_x", messages=[])
        texts.exception(info.value)


async def echoing_server(texts: Texts, url: str) -> None:
    """Error answers that quote the key (JSON and plain text, 401/429/502, both styles)."""
    async with AssistantsClient(base_url=url + "/v1", api_key=KEY, retry=ONE_TRY) as client:
        for call in (
            client.create_assistant(model="m"),
            client.create_thread(),
            client.create_run("thread_1", "asst_1"),
            client.retrieve_thread("thread_1"),
        ):
            with pytest.raises(RuntimeAPIError) as info:
                await call
            texts.exception(info.value)
    async with AssistantsClient(azure_endpoint=url, api_key=AZURE_KEY) as azure:
        texts.append(repr(azure))
        with pytest.raises(AuthenticationError) as info:
            await azure.create_assistant(model="m")
        texts.exception(info.value)


async def azure_runs(texts: Texts) -> None:
    """A completed run in the Azure style, where the key is plain hex."""
    async with (
        Emulator(api_key=AZURE_KEY) as emu,
        AssistantsClient(azure_endpoint=emu.azure_endpoint, api_key=AZURE_KEY) as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o")
        result = await Orchestrator(client, registry(), policy=FAST).create_thread_and_run(
            assistant.id, messages=[{"role": "user", "content": "hello"}]
        )
        assert result.status == "completed"
        texts.append(repr(client))


async def refused(texts: Texts) -> None:
    """A connection that cannot be made."""
    async with AssistantsClient(base_url="http://127.0.0.1:9/v1", api_key=KEY, retry=ONE_TRY) as c:
        with pytest.raises(ConnectError) as info:
            await c.retrieve_thread("thread_1")
        texts.exception(info.value)


async def test_api_keys_never_appear_in_logs_errors_or_reprs(
    captured: io.StringIO, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logs, exception texts and reprs of a busy session (faults, 401s, echoes) never hold a key."""
    texts = Texts()
    await faulted_runs(texts)
    await wrong_key(texts)
    await echoing_server(texts, await serve(echo_app()))
    await azure_runs(texts)
    await refused(texts)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    settings = load_settings(None)
    texts += [repr(settings), str(settings), settings.model_dump_json()]
    assert settings.effective_api_key is not None
    assert settings.effective_api_key.get_secret_value() == KEY  # it is there, just hidden

    lines = captured.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    events = {r.get("event") for r in records}
    # The scan is meaningful: retries, stream loss, tool failures and HTTP errors were logged.
    assert {"runtime.retry_scheduled", "run.stream_lost", "tool.finished"} <= events, events
    assert any("Traceback" in line for line in lines)  # the failing tool's traceback
    assert len(lines) > 15
    assert [line for line in lines if any(s in line for s in SECRETS)] == []
    assert texts.leaks() == []
    assert any("***" in t for t in texts)  # echoed keys were masked, not absent


def test_stdlib_records_are_redacted_too(captured: io.StringIO) -> None:
    """A plain ``logging`` record (third-party libraries) with a registered key is masked."""
    AssistantsClient(base_url="http://127.0.0.1:1/v1", api_key=AZURE_KEY)  # registers the key
    logging.getLogger("third.party").warning("sending api-key %s to %s", AZURE_KEY, "host")
    try:
        raise ValueError(f"bad key {AZURE_KEY}")
    except ValueError:
        logging.getLogger("third.party").exception("failed")
    text = captured.getvalue()
    assert "sending api-key" in text and "failed" in text
    assert AZURE_KEY not in text


async def test_tool_error_output_sent_to_the_server_is_redacted() -> None:
    """A tool failing with the runtime's own key in its message does not send the key upstream."""
    reg = ToolRegistry()

    @reg.tool
    def call_upstream() -> str:
        """Fails like an HTTP library quoting the credentials it was given."""
        raise RuntimeError(f"upstream said: Incorrect API key provided: {KEY}")

    async with (
        Emulator(api_key=KEY) as emu,
        AssistantsClient(base_url=emu.base_url, api_key=KEY) as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o")
        result = await Orchestrator(client, reg, policy=FAST).create_thread_and_run(
            assistant.id, messages=[{"role": "user", "content": "/call call_upstream {}"}]
        )
        submitted = [json.dumps(r["json"]) for r in emu.requests if r["json"]]
    assert result.status == "completed"
    assert result.tool_calls[0].error_type == "tool_exception"
    assert not [body for body in submitted if KEY in body]
