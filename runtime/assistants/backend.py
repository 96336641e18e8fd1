"""AssistantsBackend: the Assistants API behind the engine seam.

A turn is a run (the same run id through all its tool rounds); its conversation is the
thread. The idempotency key rides in the run's metadata, so :meth:`find` can adopt a run
whose create answer was lost. Streams cannot be resumed: a broken one is recovered by
polling, and the transcript (the run's messages) is read back from the thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from runtime.assistants.client import AssistantsClient
from runtime.assistants.models import Run
from runtime.assistants.stream import RunStream, run_turn
from runtime.core.backend import StartRequest, TextPart, Turn, TurnRef, TurnStream
from runtime.errors import BadRequestError, NotFoundError
from tools import ToolCallResult

if TYPE_CHECKING:
    from runtime.core.hooks import EventHandler

IDEMPOTENCY_METADATA_KEY = "runtime_idempotency_key"
# How many of a thread's newest runs to look through for our idempotency key.
_FIND_WINDOW = 20


class AssistantsBackend:
    """Assistants runs on threads.

    Args:
        client: the API client (its retries handle transport failures).
    """

    name: ClassVar[str] = "assistants"
    new_turn_per_round: ClassVar[bool] = False
    can_find: ClassVar[bool] = True

    def __init__(self, client: AssistantsClient) -> None:
        self.client = client

    def server_now(self) -> float:
        """The server's clock (for ``expires_at``)."""
        return self.client.server_now()

    async def prepare(self, request: StartRequest) -> StartRequest:
        """Put the request's messages on a thread: a new one holding them, or the thread it
        names; the run is then created on that thread with no input left to send."""
        if isinstance(request.input, str):
            messages: list[dict[str, object]] = [{"role": "user", "content": request.input}]
        else:
            messages = [dict(m) for m in request.input]
        if request.conversation is None:
            thread = await self.client.create_thread(messages=messages)
            return replace(request, conversation=thread.id, input=())
        for message in messages:
            content = message.get("content", "")
            await self.client.create_message(
                request.conversation,
                content=content if isinstance(content, str | list) else str(content),
                role=str(message.get("role", "user")),
            )
        return replace(request, input=())

    async def start(
        self, request: StartRequest, *, key: str, handler: EventHandler | None
    ) -> RunStream:
        """Add the request's messages to its thread (when it named one) and create the run."""
        thread_id = _thread(request)
        if request.agent is None:
            raise ValueError("the assistants protocol needs an assistant id (agent)")
        body = dict(request.params)
        metadata = {**request.metadata, IDEMPOTENCY_METADATA_KEY: key}
        body["metadata"] = metadata
        if request.model is not None:
            body.setdefault("model", request.model)
        if request.instructions is not None:
            body.setdefault("instructions", request.instructions)
        if request.tools is not None:
            body.setdefault("tools", [dict(t) for t in request.tools])
        if request.output is not None:
            output = request.output
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": output.name,
                    "schema": dict(output.schema),
                    "strict": output.strict,
                },
            }
        return await self.client.create_run(
            thread_id, request.agent, stream=True, handler=handler, **body
        )

    async def submit(
        self,
        request: StartRequest,
        turn: Turn[Run],
        outputs: Sequence[ToolCallResult],
        *,
        handler: EventHandler | None,
    ) -> RunStream:
        """Submit every output of the run's required action in one request."""
        tool_outputs = [{"tool_call_id": r.tool_call_id, "output": r.output} for r in outputs]
        return await self.client.submit_tool_outputs(
            _conversation(turn.ref), turn.ref.id, tool_outputs, stream=True, handler=handler
        )

    async def retrieve(self, ref: TurnRef) -> Turn[Run]:
        """The run as the server has it."""
        return run_turn(await self.client.retrieve_run(_conversation(ref), ref.id))

    async def resume(
        self, stream: TurnStream[Run], *, handler: EventHandler | None
    ) -> TurnStream[Run] | None:
        """Run streams cannot be re-opened: the loop polls instead."""
        return None

    async def cancel(self, ref: TurnRef) -> Turn[Run] | None:
        """Cancel the run; None when the server refused (already over)."""
        try:
            return run_turn(await self.client.cancel_run(_conversation(ref), ref.id))
        except (BadRequestError, NotFoundError):
            return None

    async def find(self, request: StartRequest, key: str) -> TurnRef | None:
        """Our run on the thread, by the idempotency key in its metadata."""
        thread_id = _thread(request)
        runs = await self.client.list_runs(thread_id, limit=_FIND_WINDOW, order="desc").first_page()
        for run in runs:
            if (run.metadata or {}).get(IDEMPOTENCY_METADATA_KEY) == key:
                return TurnRef(run.id, thread_id)
        return None

    async def transcript(self, ref: TurnRef) -> tuple[TextPart, ...]:
        """The run's assistant messages as the thread holds them, oldest first."""
        pager = self.client.list_messages(_conversation(ref), run_id=ref.id, order="asc")
        return tuple([TextPart(m.id, m.text) async for m in pager if m.role == "assistant"])


def _thread(request: StartRequest) -> str:
    if request.conversation is None:
        raise ValueError("an Assistants run needs its thread (prepare the request first)")
    return request.conversation


def _conversation(ref: TurnRef) -> str:
    if ref.conversation is None:
        raise ValueError(f"the thread of run {ref.id} is not known")
    return ref.conversation
