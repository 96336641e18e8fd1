"""ResponsesOrchestrator: the Responses face of the one run loop (:class:`runtime.core.Runner`).

Every policy lives in the loop; this class only says what to run in Responses words::

    orch = ResponsesOrchestrator(client, registry, policy=RunPolicy())
    result = await orch.run("What is the weather in Paris?", model="gpt-4o")
    result = await orch.resume(response_id, known_results=...)
    result = await orch.resume(result.pending, decisions={call_id: approve()})

Responses have no ``expires_at``: ``RunPolicy.total_deadline_s`` bounds a run instead
(status ``expired``). A forcing ``tool_choice`` applies to the first request only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runtime.core.approval import Decision, PendingApproval
from runtime.core.backend import StartRequest, TurnRef
from runtime.core.hooks import EventHandler
from runtime.core.ledger import WriteLedger
from runtime.core.limits import UsageLimits
from runtime.core.policy import RunPolicy
from runtime.core.result import OutT, RunResult
from runtime.core.runner import Runner
from runtime.responses.backend import DEFAULT_MODEL, ResponsesBackend
from runtime.responses.client import ResponsesClient
from runtime.responses.models import Response
from runtime.session import Facade
from tools import ToolCallResult, ToolRegistry


class ResponsesOrchestrator(Facade[Response]):
    """Drives Responses API runs with local tools.

    Args:
        client: the Responses client (its retries handle transport failures).
        registry: the tools the model may call.
        policy: retry, deadline, cancellation and bounds.
        handler: default callbacks for every run (a call may pass its own).
        conversations: run each new run in a new Conversation (continue it by passing
            ``conversation=result.conversation_id``); off: chain by previous_response_id.
        ledger: where ``write`` tools' executions are recorded (default: in memory).
    """

    def __init__(
        self,
        client: ResponsesClient,
        registry: ToolRegistry,
        policy: RunPolicy | None = None,
        handler: EventHandler | None = None,
        *,
        conversations: bool = False,
        ledger: WriteLedger | None = None,
    ) -> None:
        policy = policy or RunPolicy()
        backend = ResponsesBackend(
            client, background=policy.resumable_streams, conversations=conversations
        )
        super().__init__(client, registry, Runner(backend, registry, policy, handler, ledger))
        self.client: ResponsesClient = client

    async def run(
        self,
        input: str | Sequence[Mapping[str, Any]],
        *,
        model: str = DEFAULT_MODEL,
        instructions: str | None = None,
        handler: EventHandler | None = None,
        raise_on_failure: bool = False,
        output_type: type[OutT] | None = None,
        usage_limits: UsageLimits | None = None,
        **params: Any,
    ) -> RunResult[Response, OutT]:
        """Send ``input`` and drive the run until a response has no function calls.

        Args:
            input: a string or a list of input items.
            model: the model (or Azure deployment).
            instructions: system instructions, sent with every request of the run.
            handler: callbacks for this run (default: the orchestrator's).
            raise_on_failure: raise RunFailedError unless the final status is completed.
            output_type: a pydantic model, dataclass or TypedDict the answer must be (sent as
                ``text.format`` json_schema, strict; ``result.output`` is the instance).
            usage_limits: limits of this run (default: the policy's ``usage_limits``); a run
                that reached one ends ``cancelled`` with ``stopped_by="usage_limit"``.
            **params: other request fields (previous_response_id, conversation, background,
                store, max_output_tokens, tool_choice, metadata, ...); ``tools`` defaults to
                the registry's definitions.

        Returns:
            The RunResult: ``raw`` is the final Response, ``run_id`` its id.
        """
        request = _request(
            input if isinstance(input, str) else tuple(input), model, instructions, params
        )
        result = await self.runner.run(
            request, handler=handler, output_type=output_type, usage_limits=usage_limits
        )
        return result.raise_for_status() if raise_on_failure else result

    async def resume(
        self,
        response_id: str | PendingApproval,
        known_results: Iterable[ToolCallResult] = (),
        *,
        handler: EventHandler | None = None,
        raise_on_failure: bool = False,
        decisions: Mapping[str, Decision] | None = None,
        **params: Any,
    ) -> RunResult[Response]:
        """Adopt a response that already exists and drive the run on from it.

        Args:
            response_id: the response (it must be stored), or the :class:`PendingApproval`
                of a paused run (``result.pending``, maybe from another process).
            known_results: tool outputs computed earlier (e.g. before a crash); they are sent
                if still needed, never re-executed.
            handler: callbacks for this run.
            raise_on_failure: raise RunFailedError unless the final status is completed.
            decisions: ``{call_id: approve() | reject(reason)}`` for a run paused for
                approval (see :mod:`runtime.core.approval`).
            **params: request fields for follow-ups (default: model and instructions of the
                response, tools of the registry).

        Raises:
            ApprovalError: a decision the pause cannot take (nothing is sent).
        """
        pending = response_id if isinstance(response_id, PendingApproval) else None
        if pending is not None:
            response_id = pending.turn_id
            params.setdefault("model", pending.model)
            params.setdefault("instructions", pending.instructions)
            if pending.conversation:
                params.setdefault("conversation", pending.conversation)
        assert isinstance(response_id, str)
        model = params.pop("model", None)
        instructions = params.pop("instructions", None)
        if model is None or instructions is None:
            known = await self.client.retrieve(response_id)
            model = model or known.model or DEFAULT_MODEL
            if instructions is None and isinstance(known.instructions, str):
                instructions = known.instructions
        request = _request((), model, instructions, params)
        result = await self.runner.resume(
            TurnRef(response_id, request.conversation),
            request,
            handler=handler,
            known_results=known_results,
            decisions=decisions,
            pending=pending,
        )
        return result.raise_for_status() if raise_on_failure else result

    async def cancel(self, response_id: str) -> Response | None:
        """Cancel a run from elsewhere: its tools stop and its response is cancelled.

        Args:
            response_id: a response of the run (or any background response).

        Returns:
            The response as the cancel request answered it, or None when the server refused
            (not a background response, or already finished).
        """
        turn = await self.runner.cancel(TurnRef(response_id))
        return turn.raw if turn is not None else None


def _request(
    input: str | tuple[Mapping[str, Any], ...],
    model: str,
    instructions: str | None,
    params: dict[str, Any],
) -> StartRequest:
    params = {k: v for k, v in params.items() if v is not None}
    tools = params.pop("tools", None)
    conversation = params.pop("conversation", None)
    if isinstance(conversation, Mapping):
        conversation = conversation.get("id")
    return StartRequest(
        input=input,
        conversation=conversation,
        previous=params.pop("previous_response_id", None),
        model=model,
        instructions=instructions,
        tools=tuple(tools) if tools is not None else None,
        metadata=dict(params.pop("metadata", None) or {}),
        params=params,
    )
