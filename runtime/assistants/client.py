"""AssistantsClient: the Assistants API (v2) endpoints over the shared HTTP base.

Requests, auth, retries, typed errors and the server clock are :class:`~runtime.http.HTTPClient`'s.
Streaming calls return a :class:`~runtime.assistants.stream.RunStream` once the server has
answered 200; they are retried only before their first byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, overload

from runtime.assistants.models import Assistant, Message, Run, RunStep, Thread
from runtime.assistants.stream import RunStream
from runtime.core.hooks import EventHandler
from runtime.http import AsyncPaginator, HTTPClient, drop_none
from runtime.http import path_segment as seg
from runtime.protocol.objects import DeletionStatus

__all__ = ["AssistantsClient", "AsyncPaginator"]


class AssistantsClient(HTTPClient):
    """Client of the Assistants API (constructor arguments: :class:`~runtime.http.HTTPClient`).

    ``AssistantsClient(base_url="http://127.0.0.1:8321/v1", api_key="sk-...")`` or, for
    Azure, ``AssistantsClient(azure_endpoint="https://RES.openai.azure.com",
    api_version="2024-08-01-preview", api_key="...")``.
    """

    protocol_headers: ClassVar[Mapping[str, str]] = {"OpenAI-Beta": "assistants=v2"}
    default_azure_api_version: ClassVar[str] = "2024-08-01-preview"

    # --- assistants -----------------------------------------------------------------------

    async def create_assistant(self, *, model: str, **params: Any) -> Assistant:
        """Create an assistant (name, instructions, tools, metadata, ...)."""
        body = drop_none({"model": model, **params})
        return await self._call("POST", "/assistants", Assistant, body=body, idempotent=False)

    async def retrieve_assistant(self, assistant_id: str) -> Assistant:
        """Retrieve an assistant."""
        return await self._call("GET", f"/assistants/{seg(assistant_id)}", Assistant)

    def list_assistants(self, **page: Any) -> AsyncPaginator[Assistant]:
        """Iterate assistants (limit, order, after, before)."""
        return self._paginate("/assistants", Assistant, page)

    async def delete_assistant(self, assistant_id: str) -> DeletionStatus:
        """Delete an assistant."""
        return await self._call("DELETE", f"/assistants/{seg(assistant_id)}", DeletionStatus)

    # --- threads and messages -------------------------------------------------------------

    async def create_thread(
        self, *, messages: Sequence[Mapping[str, Any]] | None = None, **params: Any
    ) -> Thread:
        """Create a thread, optionally with initial messages."""
        body = drop_none({"messages": list(messages) if messages else None, **params})
        return await self._call("POST", "/threads", Thread, body=body, idempotent=False)

    async def retrieve_thread(self, thread_id: str) -> Thread:
        """Retrieve a thread."""
        return await self._call("GET", f"/threads/{seg(thread_id)}", Thread)

    async def update_thread(self, thread_id: str, *, metadata: Mapping[str, str]) -> Thread:
        """Replace a thread's metadata."""
        path = f"/threads/{seg(thread_id)}"
        body = {"metadata": dict(metadata)}
        return await self._call("POST", path, Thread, body=body, idempotent=True)

    async def delete_thread(self, thread_id: str) -> DeletionStatus:
        """Delete a thread."""
        return await self._call("DELETE", f"/threads/{seg(thread_id)}", DeletionStatus)

    async def create_message(
        self,
        thread_id: str,
        *,
        content: str | list[dict[str, Any]],
        role: str = "user",
        **params: Any,
    ) -> Message:
        """Add a message to a thread."""
        body = drop_none({"role": role, "content": content, **params})
        path = f"/threads/{seg(thread_id)}/messages"
        return await self._call("POST", path, Message, body=body, idempotent=False)

    async def retrieve_message(self, thread_id: str, message_id: str) -> Message:
        """Retrieve one message."""
        return await self._call(
            "GET", f"/threads/{seg(thread_id)}/messages/{seg(message_id)}", Message
        )

    def list_messages(self, thread_id: str, **page: Any) -> AsyncPaginator[Message]:
        """Iterate a thread's messages (limit, order, after, before, run_id)."""
        return self._paginate(f"/threads/{seg(thread_id)}/messages", Message, page)

    # --- runs -----------------------------------------------------------------------------

    @overload
    async def create_run(
        self,
        thread_id: str,
        assistant_id: str,
        *,
        stream: Literal[False] = False,
        **params: Any,
    ) -> Run: ...

    @overload
    async def create_run(
        self,
        thread_id: str,
        assistant_id: str,
        *,
        stream: Literal[True],
        handler: EventHandler | None = None,
        **params: Any,
    ) -> RunStream: ...

    async def create_run(
        self,
        thread_id: str,
        assistant_id: str,
        *,
        stream: bool = False,
        handler: EventHandler | None = None,
        **params: Any,
    ) -> Run | RunStream:
        """Create a run; with ``stream=True`` return its :class:`RunStream`."""
        body = drop_none({"assistant_id": assistant_id, **params})
        path = f"/threads/{seg(thread_id)}/runs"
        if stream:
            return await self._stream(
                "POST", path, {**body, "stream": True}, handler, None, thread_id
            )
        return await self._call("POST", path, Run, body=body, idempotent=False)

    @overload
    async def create_thread_and_run(
        self, assistant_id: str, *, stream: Literal[False] = False, **params: Any
    ) -> Run: ...

    @overload
    async def create_thread_and_run(
        self,
        assistant_id: str,
        *,
        stream: Literal[True],
        handler: EventHandler | None = None,
        **params: Any,
    ) -> RunStream: ...

    async def create_thread_and_run(
        self,
        assistant_id: str,
        *,
        stream: bool = False,
        handler: EventHandler | None = None,
        **params: Any,
    ) -> Run | RunStream:
        """Create a thread and a run on it in one call (``thread={"messages": [...]}``)."""
        body = drop_none({"assistant_id": assistant_id, **params})
        if stream:
            return await self._stream(
                "POST", "/threads/runs", {**body, "stream": True}, handler, None
            )
        return await self._call("POST", "/threads/runs", Run, body=body, idempotent=False)

    async def retrieve_run(self, thread_id: str, run_id: str) -> Run:
        """Retrieve a run (``run.response_meta.poll_after_ms`` carries the polling hint)."""
        return await self._call("GET", f"/threads/{seg(thread_id)}/runs/{seg(run_id)}", Run)

    def list_runs(self, thread_id: str, **page: Any) -> AsyncPaginator[Run]:
        """Iterate a thread's runs (limit, order, after, before)."""
        return self._paginate(f"/threads/{seg(thread_id)}/runs", Run, page)

    async def update_run(self, thread_id: str, run_id: str, *, metadata: dict[str, str]) -> Run:
        """Replace a run's metadata."""
        path = f"/threads/{seg(thread_id)}/runs/{seg(run_id)}"
        return await self._call("POST", path, Run, body={"metadata": metadata}, idempotent=True)

    async def cancel_run(self, thread_id: str, run_id: str) -> Run:
        """Ask the server to cancel a run (it goes cancelling, then cancelled)."""
        path = f"/threads/{seg(thread_id)}/runs/{seg(run_id)}/cancel"
        # Idempotent in effect: a repeated cancel at worst answers 400 "already cancelling".
        return await self._call("POST", path, Run, idempotent=True)

    @overload
    async def submit_tool_outputs(
        self,
        thread_id: str,
        run_id: str,
        tool_outputs: Sequence[Mapping[str, str]],
        *,
        stream: Literal[False] = False,
    ) -> Run: ...

    @overload
    async def submit_tool_outputs(
        self,
        thread_id: str,
        run_id: str,
        tool_outputs: Sequence[Mapping[str, str]],
        *,
        stream: Literal[True],
        handler: EventHandler | None = None,
    ) -> RunStream: ...

    async def submit_tool_outputs(
        self,
        thread_id: str,
        run_id: str,
        tool_outputs: Sequence[Mapping[str, str]],
        *,
        stream: bool = False,
        handler: EventHandler | None = None,
    ) -> Run | RunStream:
        """Submit every output of a ``requires_action`` in one request."""
        path = f"/threads/{seg(thread_id)}/runs/{seg(run_id)}/submit_tool_outputs"
        body: dict[str, Any] = {"tool_outputs": [dict(o) for o in tool_outputs]}
        if stream:
            return await self._stream(
                "POST", path, {**body, "stream": True}, handler, run_id, thread_id
            )
        return await self._call("POST", path, Run, body=body, idempotent=False)

    def list_run_steps(self, thread_id: str, run_id: str, **page: Any) -> AsyncPaginator[RunStep]:
        """Iterate a run's steps (limit, order, after, before)."""
        return self._paginate(f"/threads/{seg(thread_id)}/runs/{seg(run_id)}/steps", RunStep, page)

    async def retrieve_run_step(self, thread_id: str, run_id: str, step_id: str) -> RunStep:
        """Retrieve one run step."""
        path = f"/threads/{seg(thread_id)}/runs/{seg(run_id)}/steps/{seg(step_id)}"
        return await self._call("GET", path, RunStep)

    # --- streams --------------------------------------------------------------------------

    async def _stream(
        self,
        method: str,
        path: str,
        body: Any,
        handler: EventHandler | None,
        run_id: str | None,
        thread_id: str | None = None,
    ) -> RunStream:
        response = await self._open_stream(method, path, body)
        assert response.chunks is not None
        return RunStream(
            response.chunks,
            handler=handler,
            max_event_bytes=self.max_event_bytes,
            close=response.aclose,
            run_id=run_id,
            thread_id=thread_id,
            idle_timeout_s=self.stream_idle_timeout_s,
        )
