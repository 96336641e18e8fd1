"""One open protocol session, and what both protocol facades share (no protocol imported).

:class:`BackendSession` gives both protocols the same small surface (see
:mod:`runtime.backends`, which builds one from settings); :class:`Facade` is the base of
``Orchestrator`` and ``ResponsesOrchestrator``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from runtime.core.approval import Decision, PendingApproval
from runtime.core.backend import StartRequest, TurnRef
from runtime.core.hooks import EventHandler
from runtime.core.policy import RunPolicy
from runtime.core.result import RunResult
from runtime.core.runner import Runner
from runtime.http import HTTPClient
from tools import ToolCallResult, ToolRegistry

Protocol = Literal["assistants", "responses"]
RawT = TypeVar("RawT")
DEFAULT_MODEL = "gpt-4o"


@dataclass
class BackendSession:
    """An open client and the run loop over its protocol.

    Attributes:
        protocol: ``"assistants"`` or ``"responses"``.
        client: the AssistantsClient or ResponsesClient.
        runner: the run loop driving it.
        model: the model of a request that names none (Responses).
        conversations: Responses runs live in conversations (continued by their id).
    """

    protocol: Protocol
    client: HTTPClient
    runner: Runner[Any]
    model: str = DEFAULT_MODEL
    conversations: bool = False

    def request(
        self,
        message: str | Iterable[Mapping[str, object]],
        *,
        agent: str | None = None,
        conversation: str | None = None,
        previous: str | None = None,
        **params: Any,
    ) -> StartRequest:
        """The neutral request of one user message (or input items) and run parameters.

        Raises:
            ValueError: a parameter the protocol cannot honour (before anything is sent).
        """
        if self.protocol == "assistants":
            if agent is None:
                raise ValueError("the assistants protocol needs an assistant id")
            if previous is not None:
                raise ValueError("the assistants protocol continues threads, not responses")
        params = dict(params)
        tools = params.pop("tools", None)
        return StartRequest(
            input=message if isinstance(message, str) else tuple(message),
            conversation=conversation,
            previous=previous,
            agent=agent,
            model=params.pop("model", None)
            or (self.model if self.protocol == "responses" else None),
            instructions=params.pop("instructions", None),
            tools=tuple(tools) if tools is not None else None,
            metadata=dict(params.pop("metadata", None) or {}),
            params=params,
        )

    async def start(
        self,
        message: str | Iterable[Mapping[str, object]],
        *,
        handler: EventHandler | None = None,
        idempotency_key: str | None = None,
        adopt_existing: bool = False,
        scope: str | None = None,
        **params: Any,
    ) -> RunResult[Any]:
        """Send one user message and drive it to a terminal status (``scope``: of the run's
        write records, see :meth:`Runner.run`).

        Args:
            message: the user's text (or message dicts / input items).
            handler: callbacks for this run (default: the session's).
            idempotency_key: the key to find the turn again after an ambiguous failure.
            adopt_existing: first look for a turn started under the key.
            **params: ``agent``, ``conversation``, ``previous`` and run parameters.
        """
        request = self.request(message, **params)
        return await self.runner.run(
            request,
            handler=handler,
            idempotency_key=idempotency_key,
            adopt_existing=adopt_existing,
            scope=scope,
        )

    async def resume(
        self,
        ref: TurnRef,
        *,
        handler: EventHandler | None = None,
        known_results: Iterable[ToolCallResult] = (),
        decisions: Mapping[str, Decision] | None = None,
        pending: PendingApproval | None = None,
        scope: str | None = None,
        **params: Any,
    ) -> RunResult[Any]:
        """Adopt an existing turn and finish its run (``params`` shape later turns;
        ``decisions``, ``pending`` and ``scope`` as :meth:`Runner.resume`)."""
        request = self.request((), **params) if self.protocol == "responses" else None
        return await self.runner.resume(
            ref,
            request,
            handler=handler,
            known_results=known_results,
            decisions=decisions,
            pending=pending,
            scope=scope,
        )

    async def cancel(self, ref: TurnRef) -> None:
        """Cancel a run's turn, driven here or not."""
        await self.runner.cancel(ref)

    async def aclose(self) -> None:
        """Wait for the loop's clean-ups, then close the client."""
        try:
            await self.runner.aclose()
        finally:
            await self.client.aclose()


class Facade(Generic[RawT]):
    """What both protocol facades share: a client, a registry and the one run loop.

    Args:
        client: the protocol's client.
        registry: the tools the model may call.
        runner: the loop over the protocol's backend.
    """

    def __init__(self, client: HTTPClient, registry: ToolRegistry, runner: Runner[RawT]) -> None:
        self.client = client
        self.registry = registry
        self.runner = runner

    @property
    def policy(self) -> RunPolicy:
        """The run policy."""
        return self.runner.policy

    def session(self) -> BackendSession:
        """This facade as a protocol-neutral session (e.g. for the worker's executor)."""
        name = self.runner.backend.name
        protocol: Protocol = "responses" if name == "responses" else "assistants"
        conversations = bool(getattr(self.runner.backend, "conversations", False))
        return BackendSession(protocol, self.client, self.runner, conversations=conversations)

    async def aclose(self) -> None:
        """Wait for background clean-ups (server-side cancels) to finish."""
        await self.runner.aclose()
