"""Pick the wire protocol once, at the edge: one entry point for the CLI and the worker.

``settings.protocol`` (``"assistants"`` or ``"responses"``) names a factory in
:data:`PROTOCOLS`; it builds the client and the backend, and the one run loop
(:class:`~runtime.core.Runner`) drives it. :class:`BackendSession` gives both protocols the
same small surface::

    async with open_backend(settings, registry) as session:
        result = await session.start("What time is it in Tokyo?", agent="asst_...")

How the neutral arguments map:

* ``agent`` is the assistant id (Assistants; required there, ignored on Responses);
* ``conversation`` continues a thread (Assistants) or a conversation (Responses);
* ``previous`` continues from a response (Responses ``previous_response_id``); on
  Assistants it is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from runtime.core.hooks import EventHandler
from runtime.core.ledger import WriteLedger
from runtime.core.policy import RunPolicy
from runtime.core.runner import Runner
from runtime.http import HTTPClient
from runtime.pacing import RatePacer
from runtime.session import DEFAULT_MODEL, BackendSession
from runtime.transport import Transport
from tools import ToolRegistry

__all__ = ["DEFAULT_MODEL", "PROTOCOLS", "BackendSession", "create_backend", "open_backend"]


def _assistants(
    settings: Any, overrides: dict[str, Any], policy: RunPolicy
) -> tuple[HTTPClient, Any]:
    from runtime.assistants import AssistantsBackend, AssistantsClient

    client = AssistantsClient.from_settings(settings, **overrides)
    return client, AssistantsBackend(client)


def _responses(
    settings: Any, overrides: dict[str, Any], policy: RunPolicy
) -> tuple[HTTPClient, Any]:
    from runtime.responses import ResponsesBackend, ResponsesClient

    client = ResponsesClient.from_settings(settings, **overrides)
    backend = ResponsesBackend(
        client,
        background=policy.resumable_streams,
        conversations=bool(getattr(settings, "conversations", False)),
    )
    return client, backend


#: Protocol name -> factory of (client, backend). The only place a protocol is chosen.
PROTOCOLS: dict[str, Callable[[Any, dict[str, Any], RunPolicy], tuple[HTTPClient, Any]]] = {
    "assistants": _assistants,
    "responses": _responses,
}


def create_backend(
    settings: Any,
    registry: ToolRegistry,
    *,
    handler: EventHandler | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    policy: RunPolicy | None = None,
    model: str = DEFAULT_MODEL,
    transport: Transport | None = None,
    pacer: RatePacer | None = None,
    ledger: WriteLedger | None = None,
) -> BackendSession:
    """Build the client and run loop of ``settings.protocol`` without opening a scope.

    The caller closes the session (:meth:`BackendSession.aclose`). Arguments as
    :func:`open_backend`, plus ``transport``: the client's HTTP transport (the caller closes
    it; default: the client's own), ``pacer``: the client's rate pacer (default: the one
    ``[pacing]`` configures), and ``ledger``: where ``write`` tools' executions are
    recorded (default: in memory).
    """
    overrides: dict[str, Any] = {}
    if transport is not None:
        overrides["transport"] = transport
    if pacer is not None:
        overrides["pacer"] = pacer
    if base_url is not None:
        overrides.update(base_url=base_url, azure_endpoint=None)
    if api_key is not None:
        overrides["api_key"] = api_key
    factory = PROTOCOLS.get(settings.protocol)
    if factory is None:
        raise ValueError(f"unknown protocol {settings.protocol!r}: one of {sorted(PROTOCOLS)}")
    policy = policy or RunPolicy.from_settings(settings)
    client, backend = factory(settings, overrides, policy)
    runner: Runner[Any] = Runner(backend, registry, policy, handler, ledger)
    conversations = settings.protocol == "responses" and bool(
        getattr(settings, "conversations", False)
    )
    return BackendSession(settings.protocol, client, runner, model, conversations)


@asynccontextmanager
async def open_backend(
    settings: Any,
    registry: ToolRegistry,
    *,
    handler: EventHandler | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    policy: RunPolicy | None = None,
    model: str = DEFAULT_MODEL,
) -> AsyncIterator[BackendSession]:
    """Open the client and run loop of ``settings.protocol``; close them on exit.

    Args:
        settings: :class:`runtime.config.Settings` (protocol, api, retry and policy sections).
        registry: the tools.
        handler: default callbacks of the loop.
        base_url: override the configured server (OpenAI style, e.g. an emulator's).
        api_key: override the configured key.
        policy: override the run policy built from ``settings.policy``.
        model: the model of a Responses request that names none.

    Yields:
        The open BackendSession.
    """
    session = create_backend(
        settings,
        registry,
        handler=handler,
        base_url=base_url,
        api_key=api_key,
        policy=policy,
        model=model,
    )
    try:
        yield session
    finally:
        await session.aclose()
