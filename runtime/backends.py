"""Pick the wire protocol by configuration: one entry point for the CLI and the worker.

``settings.protocol`` (``"assistants"`` or ``"responses"``) selects the client and the
orchestrator; :class:`BackendSession` gives both the same small, protocol-neutral surface::

    async with open_backend(settings, registry) as backend:
        result = await backend.start("What time is it in Tokyo?", assistant_id="asst_...")

How the neutral arguments map:

* Assistants: ``assistant_id`` is required; ``thread_id`` continues a thread (the message is
  added to it), otherwise a new thread is created with the message.
* Responses: ``assistant_id`` is ignored (pass ``model=`` / ``instructions=`` in ``params``);
  ``thread_id`` is taken as ``previous_response_id``, so a conversation continues from the
  ``run_id`` of the previous result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from runtime.client import AssistantsClient
from runtime.handler import EventHandler
from runtime.orchestrator import Orchestrator
from runtime.policy import RunPolicy
from runtime.responses.client import ResponsesClient
from runtime.responses.orchestrator import ResponsesOrchestrator
from runtime.result import RunResult
from tools import ToolCallResult, ToolRegistry

Protocol = Literal["assistants", "responses"]


@dataclass
class BackendSession:
    """An open client + orchestrator for one protocol.

    Attributes:
        protocol: ``"assistants"`` or ``"responses"``.
        client: the AssistantsClient or ResponsesClient.
        orchestrator: the Orchestrator or ResponsesOrchestrator driving it.
    """

    protocol: Protocol
    client: AssistantsClient | ResponsesClient
    orchestrator: Orchestrator | ResponsesOrchestrator

    async def start(
        self,
        message: str,
        *,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        handler: EventHandler | None = None,
        **params: Any,
    ) -> RunResult:
        """Send one user message and drive it to a terminal status.

        Args:
            message: the user's text.
            assistant_id: the assistant (Assistants only; required there).
            thread_id: a thread to continue (Assistants) or a previous response id (Responses).
            handler: callbacks for this run (default: the session's).
            **params: run / request parameters passed through (``model=`` for Responses).

        Returns:
            The RunResult (``thread_id`` set for Assistants, ``run_id`` the run / response).
        """
        orch = self.orchestrator
        if isinstance(orch, ResponsesOrchestrator):
            if thread_id is not None:
                params["previous_response_id"] = thread_id
            return await orch.run(message, handler=handler, **params)
        if assistant_id is None:
            raise ValueError("the assistants protocol needs an assistant_id")
        if thread_id is None:
            messages = [{"role": "user", "content": message}]
            return await orch.create_thread_and_run(
                assistant_id, messages=messages, handler=handler, **params
            )
        await orch.client.create_message(thread_id, content=message)
        return await orch.run(thread_id, assistant_id, handler=handler, **params)

    async def resume(
        self,
        run_id: str,
        *,
        thread_id: str | None = None,
        handler: EventHandler | None = None,
        known_results: Iterable[ToolCallResult] = (),
    ) -> RunResult:
        """Adopt an existing run (Assistants, needs ``thread_id``) or response and finish it."""
        orch = self.orchestrator
        if isinstance(orch, ResponsesOrchestrator):
            return await orch.resume(run_id, known_results, handler=handler)
        if thread_id is None:
            raise ValueError("resuming an Assistants run needs its thread_id")
        return await orch.resume(thread_id, run_id, handler=handler, known_results=known_results)

    async def cancel(self, run_id: str, *, thread_id: str | None = None) -> None:
        """Cancel a run (Assistants) or a response (Responses), driven here or not."""
        orch = self.orchestrator
        if isinstance(orch, ResponsesOrchestrator):
            await orch.cancel(run_id)
        else:
            await orch.cancel(run_id, thread_id=thread_id)


def create_backend(
    settings: Any,
    registry: ToolRegistry,
    *,
    handler: EventHandler | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    policy: RunPolicy | None = None,
) -> BackendSession:
    """Build the client and orchestrator of ``settings.protocol`` without opening a scope.

    The caller closes them (``orchestrator.aclose()`` then ``client.aclose()``); the worker
    does so to bound each clean-up step at exit. Arguments as :func:`open_backend`.

    Returns:
        The BackendSession.
    """
    overrides: dict[str, Any] = {}
    if base_url is not None:
        overrides.update(base_url=base_url, azure_endpoint=None)
    if api_key is not None:
        overrides["api_key"] = api_key
    run_policy = policy or RunPolicy.from_settings(settings)
    if settings.protocol == "responses":
        responses = ResponsesClient.from_settings(settings, **overrides)
        orch = ResponsesOrchestrator(responses, registry, policy=run_policy, handler=handler)
        return BackendSession("responses", responses, orch)
    assistants = AssistantsClient.from_settings(settings, **overrides)
    return BackendSession(
        "assistants",
        assistants,
        Orchestrator(assistants, registry, policy=run_policy, handler=handler),
    )


@asynccontextmanager
async def open_backend(
    settings: Any,
    registry: ToolRegistry,
    *,
    handler: EventHandler | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    policy: RunPolicy | None = None,
) -> AsyncIterator[BackendSession]:
    """Open the client and orchestrator of ``settings.protocol``; close them on exit.

    Args:
        settings: :class:`runtime.config.Settings` (protocol, api, retry and policy sections).
        registry: the tools.
        handler: default callbacks of the orchestrator.
        base_url: override the configured server (OpenAI style, e.g. an emulator's).
        api_key: override the configured key.
        policy: override the run policy built from ``settings.policy``.

    Yields:
        The open BackendSession.
    """
    session = create_backend(
        settings, registry, handler=handler, base_url=base_url, api_key=api_key, policy=policy
    )
    try:
        yield session
    finally:
        try:
            await session.orchestrator.aclose()
        finally:
            await session.client.aclose()
