"""The Responses API (responses chained by ``previous_response_id`` or a conversation)
behind the engine seam.

::

    async with ResponsesClient(base_url=..., api_key=...) as rc:
        orch = ResponsesOrchestrator(rc, registry, policy=RunPolicy())
        result = await orch.run("What is the weather in Paris?", model="gpt-4o")
        # result.run_id is the final response id: pass it as previous_response_id to continue

Azure: ``ResponsesClient(azure_endpoint=..., api_key=..., api_version=...)``;
``ResponsesClient.from_settings(settings)``; ``ResponsesClient.sharing(assistants_client)``.
Low level: ``await rc.create(..., stream=True, handler=h)`` returns a ``ResponseStream``,
``stream=False`` a :class:`Response`; ``rc.retrieve(id)``, ``rc.cancel(id)``, ``rc.delete(id)``.

How the loop works (the same ``Runner`` and ``RunPolicy`` as Assistants):

1. ``POST /v1/responses`` with ``stream: true``, the registry's tools in the flat
   ``{"type": "function", "name", "parameters"}`` shape, ``background: true`` (policy
   ``resumable_streams``, default on; never with ``store=false``) and your parameters.
2. A stream that breaks after ``response.created`` is re-opened with
   ``GET /v1/responses/{id}?stream=true&starting_after=N``, so a handler sees every delta
   exactly once and no second response is created; where that is impossible the response is
   polled by id.
3. Every ``function_call`` item of a completed response runs concurrently through
   ``tools.ToolDispatcher`` (at most once per ``call_id``).
4. All outputs go back in one request: ``function_call_output`` items with
   ``previous_response_id``, or in the run's ``conversation``. Instructions and tools are
   re-sent with every request; a forcing ``tool_choice`` applies to the first request only.
5. Repeat until a response has no function calls. ``incomplete`` and ``failed`` are results.

``conversations=True`` (or ``conversations = true`` in ``config/runtime.toml``) runs each new
run in a new Conversation, reported by ``on_conversation``; a later run continues it with
``conversation=result.conversation_id``. Responses have no ``expires_at``:
``RunPolicy.total_deadline_s`` bounds the whole conversation.

Which failures can duplicate a response: a response is addressable only by its id (no list
endpoint, no idempotency key). When a ``create`` fails ambiguously (reset, 5xx, timeout after
sending) or its stream breaks before ``response.created``, the request is sent again; if the
server had started one, it runs (and is billed) unseen. Tools are never executed twice for
the same ``call_id``, and nothing can duplicate once the id is known. Without ``store`` a lost
stream cannot be recovered (``StreamError``).

Inconsistent streams never crash: when a later event disagrees with an earlier one (item or
response ids, text, arguments), a warning is logged (``responses.item_id_mismatch``,
``responses.text_mismatch``, ``responses.response_id_mismatch``,
``responses.arguments_mismatch``, ``responses.delta_for_other_item``) and the later
statement wins; the terminal response is the final state.
"""

from runtime.responses.backend import ResponsesBackend
from runtime.responses.client import ResponsesClient
from runtime.responses.handler import ResponsesEventHandler
from runtime.responses.models import FunctionCallItem, OutputMessage, Response, ResponseUsage
from runtime.responses.orchestrator import ResponsesOrchestrator
from runtime.responses.stream import ResponseStream

__all__ = [
    "FunctionCallItem",
    "OutputMessage",
    "Response",
    "ResponseStream",
    "ResponseUsage",
    "ResponsesBackend",
    "ResponsesClient",
    "ResponsesEventHandler",
    "ResponsesOrchestrator",
]
