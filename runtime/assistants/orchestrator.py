"""Orchestrator: the Assistants face of the one run loop (:class:`runtime.core.Runner`).

Every policy lives in the loop; this class only says what to run in Assistants words::

    orch = Orchestrator(client, registry, policy=RunPolicy())
    result = await orch.run(thread_id, assistant_id)
    result = await orch.create_thread_and_run(assistant_id, messages=[{"role": "user", ...}])
    result = await orch.resume(thread_id, run_id, known_results=...)
    result = await orch.resume(result.pending, decisions={call_id: approve()})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runtime.assistants.backend import AssistantsBackend
from runtime.assistants.client import AssistantsClient
from runtime.assistants.models import Run
from runtime.core.approval import Decision, PendingApproval
from runtime.core.backend import StartRequest, TurnRef
from runtime.core.hooks import EventHandler
from runtime.core.ledger import WriteLedger
from runtime.core.limits import UsageLimits
from runtime.core.policy import RunPolicy
from runtime.core.result import OutT, RunResult
from runtime.core.runner import Runner
from runtime.session import Facade
from tools import ToolCallResult, ToolRegistry


class Orchestrator(Facade[Run]):
    """Drives assistant runs with local tools.

    Args:
        client: the API client (its retries handle transport failures).
        registry: the tools the model may call.
        policy: retry, expiry, cancellation and bounds.
        handler: default callbacks for every run (a run may pass its own).
        ledger: where ``write`` tools' executions are recorded (default: in memory).
    """

    def __init__(
        self,
        client: AssistantsClient,
        registry: ToolRegistry,
        policy: RunPolicy | None = None,
        handler: EventHandler | None = None,
        *,
        ledger: WriteLedger | None = None,
    ) -> None:
        runner = Runner(AssistantsBackend(client), registry, policy, handler, ledger)
        super().__init__(client, registry, runner)
        self.client: AssistantsClient = client

    async def run(
        self,
        thread_id: str,
        assistant_id: str,
        *,
        handler: EventHandler | None = None,
        idempotency_key: str | None = None,
        adopt_existing: bool = False,
        raise_on_failure: bool = False,
        output_type: type[OutT] | None = None,
        usage_limits: UsageLimits | None = None,
        **run_params: Any,
    ) -> RunResult[Run, OutT]:
        """Create a run on ``thread_id`` and drive it to a terminal status.

        Args:
            thread_id: the thread to run on.
            assistant_id: the assistant to run.
            handler: callbacks for this run (default: the orchestrator's).
            idempotency_key: stored in the run's metadata to find it again after an
                ambiguous failure (default: a fresh UUID).
            adopt_existing: first look for a run of ours (same key) and resume it.
            raise_on_failure: raise RunFailedError unless the run completed.
            output_type: a pydantic model, dataclass or TypedDict the answer must be
                (sent as ``response_format`` json_schema; ``result.output`` is the instance).
            usage_limits: limits of this run (default: the policy's ``usage_limits``); a run
                that reached one ends ``cancelled`` with ``stopped_by="usage_limit"``.
            **run_params: passed through to the API (instructions, tools, metadata, ...);
                ``tools`` defaults to the registry's definitions.

        Returns:
            The RunResult, whatever the terminal status.
        """
        request = _request(assistant_id, run_params, conversation=thread_id)
        result = await self.runner.run(
            request,
            handler=handler,
            idempotency_key=idempotency_key,
            adopt_existing=adopt_existing,
            output_type=output_type,
            usage_limits=usage_limits,
        )
        return result.raise_for_status() if raise_on_failure else result

    async def create_thread_and_run(
        self,
        assistant_id: str,
        *,
        messages: Sequence[Mapping[str, Any]] = (),
        thread: Mapping[str, Any] | None = None,
        handler: EventHandler | None = None,
        idempotency_key: str | None = None,
        raise_on_failure: bool = False,
        output_type: type[OutT] | None = None,
        usage_limits: UsageLimits | None = None,
        **run_params: Any,
    ) -> RunResult[Run, OutT]:
        """Create a thread with ``messages`` and run ``assistant_id`` on it (``output_type``
        and ``usage_limits`` as for :meth:`run`).

        The thread is created first, then the run: a run created on a known thread can be
        found again after an ambiguous failure, so a retry never makes a second run.

        Raises:
            ValueError: a message is not a ``{"role", "content"}`` mapping (before anything
                is created on the server).
        """
        all_messages = [*(thread or {}).get("messages", []), *messages]
        request = _request(assistant_id, run_params, messages=validate_messages(all_messages))
        result = await self.runner.run(
            request,
            handler=handler,
            idempotency_key=idempotency_key,
            output_type=output_type,
            usage_limits=usage_limits,
        )
        return result.raise_for_status() if raise_on_failure else result

    async def resume(
        self,
        thread_id: str | PendingApproval,
        run_id: str | None = None,
        *,
        handler: EventHandler | None = None,
        known_results: Iterable[ToolCallResult] = (),
        raise_on_failure: bool = False,
        decisions: Mapping[str, Decision] | None = None,
    ) -> RunResult[Run]:
        """Adopt a run that already exists and drive it to a terminal status.

        Args:
            thread_id: the run's thread, or the :class:`PendingApproval` of a paused run
                (``result.pending``, maybe from another process: then no ``run_id``).
            run_id: the run.
            handler: callbacks for this run.
            known_results: tool outputs computed earlier (e.g. before a crash); they are
                submitted again if still required, never re-executed.
            raise_on_failure: raise RunFailedError unless the run completed.
            decisions: ``{call_id: approve() | reject(reason)}`` for a run paused for
                approval (see :mod:`runtime.core.approval`).

        Raises:
            ApprovalError: a decision the pause cannot take (nothing is sent).
        """
        pending = thread_id if isinstance(thread_id, PendingApproval) else None
        if pending is not None:
            ref = TurnRef(pending.turn_id, pending.conversation)
        elif run_id is None:
            raise ValueError("resume needs a run_id (or a PendingApproval)")
        else:
            ref = TurnRef(run_id, thread_id)  # type: ignore[arg-type]  # str here
        result = await self.runner.resume(
            ref,
            handler=handler,
            known_results=known_results,
            decisions=decisions,
            pending=pending,
        )
        return result.raise_for_status() if raise_on_failure else result

    async def cancel(self, run_id: str, *, thread_id: str | None = None) -> Run | None:
        """Cancel a run from elsewhere: its local tools stop and the server run is cancelled.

        Args:
            run_id: the run to cancel.
            thread_id: its thread (needed when the run is not driven by this orchestrator).

        Returns:
            The run as the cancel request answered it, or None if it had already ended.
        """
        if thread_id is None and not self.runner.drives(run_id):
            raise ValueError(f"thread_id is needed to cancel run {run_id} not driven here")
        turn = await self.runner.cancel(TurnRef(run_id, thread_id))
        return turn.raw if turn is not None else None


def validate_messages(messages: Iterable[object]) -> tuple[Mapping[str, object], ...]:
    """Check messages before anything is created: each a mapping with a role and content.

    Raises:
        ValueError: naming the first bad message and what is wrong with it.
    """
    checked: list[Mapping[str, object]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(
                f"message {index} must be a mapping like {{'role': 'user', 'content': 'hi'}}, "
                f"not {type(message).__name__}"
            )
        if message.get("role") not in ("user", "assistant"):
            raise ValueError(f"message {index}: role must be 'user' or 'assistant'")
        if not isinstance(message.get("content"), str | list):
            raise ValueError(f"message {index}: content must be a string or a list of parts")
        checked.append(message)
    return tuple(checked)


def _request(
    assistant_id: str,
    params: dict[str, Any],
    *,
    conversation: str | None = None,
    messages: tuple[Mapping[str, object], ...] = (),
) -> StartRequest:
    params = dict(params)
    tools = params.pop("tools", None)
    metadata = params.pop("metadata", None) or {}
    return StartRequest(
        input=messages,
        conversation=conversation,
        agent=assistant_id,
        tools=tuple(tools) if tools is not None else None,
        metadata=dict(metadata),
        params=params,
    )
