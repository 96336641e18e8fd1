"""ResponsesBackend: the Responses API behind the engine seam.

A turn is one response; a tool round answers it with ``function_call_output`` items in a new
response chained by ``previous_response_id`` (or in the same ``conversation``), so the turn
ref moves on every round. A broken stream of a background response is re-opened after its
last sequence number; otherwise the response is polled by id. There is no list endpoint to
find a response whose create answer was lost, so :meth:`find` finds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from runtime.core.backend import StartRequest, TextPart, Turn, TurnRef, TurnStream
from runtime.errors import BadRequestError, NotFoundError
from runtime.responses.client import ResponsesClient
from runtime.responses.models import Response
from runtime.responses.stream import ResponseStream, response_turn
from tools import ToolCallResult

if TYPE_CHECKING:
    from runtime.core.hooks import EventHandler

DEFAULT_MODEL = "gpt-4o"
IDEMPOTENCY_METADATA_KEY = "runtime_idempotency_key"


class ResponsesBackend:
    """Responses chained by ``previous_response_id`` or held in a conversation.

    Args:
        client: the Responses client (its retries handle transport failures).
        model: the model of a request that names none.
        background: create background responses (their streams resume after a break, and
            a cancel reaches them) unless the request says ``background`` or ``store=false``.
        conversations: run a request that names neither a conversation nor a previous
            response in a new conversation (the Threads successor), so the run can be
            continued by the conversation's id.
    """

    name: ClassVar[str] = "responses"
    new_turn_per_round: ClassVar[bool] = True
    can_find: ClassVar[bool] = False

    def __init__(
        self,
        client: ResponsesClient,
        *,
        model: str = DEFAULT_MODEL,
        background: bool = True,
        conversations: bool = False,
    ) -> None:
        self.client = client
        self.model = model
        self.background = background
        self.conversations = conversations

    def server_now(self) -> float:
        """The server's clock (responses carry no expiry; kept for the seam)."""
        return self.client.server_now()

    async def prepare(self, request: StartRequest) -> StartRequest:
        """A new conversation for the run when asked for one; the input travels with the
        first response (which appends it to the conversation)."""
        if not self.conversations or request.conversation or request.previous:
            return request
        if request.params.get("store") is False:
            return request  # a conversation keeps stored items only
        conversation = await self.client.create_conversation(metadata=request.metadata or None)
        return replace(request, conversation=conversation.id)

    async def start(
        self, request: StartRequest, *, key: str, handler: EventHandler | None
    ) -> ResponseStream:
        """Create the first response of the request."""
        body = self._body(request, first=True)
        body["metadata"] = {**request.metadata, IDEMPOTENCY_METADATA_KEY: key}
        if request.previous is not None and request.conversation is None:
            body["previous_response_id"] = request.previous
        return await self.client.create(
            input=request.input
            if isinstance(request.input, str)
            else [dict(i) for i in request.input],
            stream=True,
            handler=handler,
            **body,
        )

    async def submit(
        self,
        request: StartRequest,
        turn: Turn[Response],
        outputs: Sequence[ToolCallResult],
        *,
        handler: EventHandler | None,
    ) -> ResponseStream:
        """Answer a response's function calls in a new response that continues it."""
        items = [
            {"type": "function_call_output", "call_id": r.tool_call_id, "output": r.output}
            for r in outputs
        ]
        body = self._body(request, first=False)
        body["metadata"] = dict(request.metadata)
        if request.conversation is None:
            body["previous_response_id"] = turn.ref.id
        return await self.client.create(input=items, stream=True, handler=handler, **body)

    async def retrieve(self, ref: TurnRef) -> Turn[Response]:
        """The response as the server has it."""
        return response_turn(await self.client.retrieve(ref.id))

    async def resume(
        self, stream: TurnStream[Response], *, handler: EventHandler | None
    ) -> TurnStream[Response] | None:
        """Re-open a background response's stream after the last sequence number seen."""
        if not isinstance(stream, ResponseStream):
            return None
        response = stream.response
        if response is None or not response.background or stream.response_id is None:
            return None
        try:
            return await self.client.stream_existing(
                stream.response_id,
                starting_after=stream.last_sequence,
                handler=handler,
                state=stream.state,
            )
        except (BadRequestError, NotFoundError):
            return None  # the server will not replay it: the loop polls instead

    async def cancel(self, ref: TurnRef) -> Turn[Response] | None:
        """Cancel a background response; None when refused (not background, or over)."""
        try:
            return response_turn(await self.client.cancel(ref.id))
        except (BadRequestError, NotFoundError):
            return None

    async def find(self, request: StartRequest, key: str) -> TurnRef | None:
        """Responses cannot be listed: a response whose id was never seen is not found."""
        return None

    async def transcript(self, ref: TurnRef) -> tuple[TextPart, ...]:
        """The response's output messages as the server holds them."""
        response = await self.client.retrieve(ref.id)
        return tuple(TextPart(m.id, m.text) for m in response.messages)

    def _body(self, request: StartRequest, *, first: bool) -> dict[str, Any]:
        body: dict[str, Any] = dict(request.params)
        body["model"] = request.model or body.get("model") or self.model
        if request.instructions is not None:
            body["instructions"] = request.instructions
        if request.tools is not None:
            body["tools"] = responses_tools(request.tools)
        if request.conversation is not None:
            body["conversation"] = request.conversation
        if self.background and body.get("store") is not False:
            body.setdefault("background", True)
        if not first and _forces_a_call(body.get("tool_choice")):
            # A call forced on every follow-up would never let the model answer.
            body.pop("tool_choice")
        return body


def responses_tools(definitions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Assistants/Chat tool definitions -> Responses ones (``function`` fields flattened)."""
    out = []
    for tool in definitions:
        function = tool.get("function")
        if tool.get("type") == "function" and isinstance(function, dict):
            out.append({"type": "function", **function})
        else:
            out.append(dict(tool))
    return out


def _forces_a_call(choice: object) -> bool:
    return choice == "required" or (isinstance(choice, dict) and choice.get("type") == "function")
