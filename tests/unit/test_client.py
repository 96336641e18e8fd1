"""AssistantsClient against a loopback aiohttp server: URLs, auth, endpoints, pages, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from aiohttp import web

from runtime import AssistantsClient, EventHandler, RetryPolicy
from runtime.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    SSEDecodeError,
    StreamInterrupted,
    ThreadBusyError,
    UnprocessableEntityError,
)

ServeApp = Callable[[web.Application], Awaitable[str]]
KEY = "sk-test-0123456789abcdefSECRET"
AZURE_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    peer_port: int


@dataclass
class FakeAPI:
    """A catch-all server: records requests, answers from ``replies`` (path -> list of answers)."""

    seen: list[Seen] = field(default_factory=list)
    replies: dict[str, list[tuple[int, Any, dict[str, str]]]] = field(default_factory=dict)

    def reply(
        self, path: str, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        """Queue an answer for ``path`` (the last one repeats)."""
        self.replies.setdefault(path, []).append((status, body, headers or {}))

    async def handle(self, request: web.Request) -> web.Response:
        """Record the request and answer it."""
        raw = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                json.loads(raw) if raw else None,
                peer[1] if peer else 0,
            )
        )
        queue = self.replies.get(request.path) or [(200, default_body(request.path), {})]
        status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(
            status=status,
            text=text,
            content_type="application/json",
            headers={"x-request-id": "req_123", **headers},
        )

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def default_body(path: str) -> dict[str, Any]:
    """A minimal valid object for whatever the path asks for."""
    if path.endswith("/cancel"):
        return {"id": "run_1", "status": "cancelling"}
    if "/steps" in path:
        return {"id": "step_1"}
    if "/runs" in path:
        return {"id": "run_1", "thread_id": "thread_1", "status": "queued"}
    if "/messages" in path:
        return {"id": "msg_1", "role": "user", "content": []}
    if "/threads" in path:
        return {"id": "thread_1", "object": "thread"}
    return {"id": "asst_1", "object": "assistant", "model": "gpt-4o"}


@pytest.fixture
async def api(serve: ServeApp) -> tuple[FakeAPI, str]:
    """A running FakeAPI and its root URL."""
    fake = FakeAPI()
    return fake, await serve(fake.app())


def openai_client(root: str, **kwargs: Any) -> AssistantsClient:
    """An OpenAI-style client of the loopback server."""
    return AssistantsClient(base_url=root + "/v1", api_key=KEY, **kwargs)


ENDPOINTS: list[tuple[str, Callable[[AssistantsClient], Awaitable[Any]], str, str, Any]] = [
    (
        "create_assistant",
        lambda c: c.create_assistant(model="gpt-4o", name="a"),
        "POST",
        "/assistants",
        {"model": "gpt-4o", "name": "a"},
    ),
    (
        "retrieve_assistant",
        lambda c: c.retrieve_assistant("asst_1"),
        "GET",
        "/assistants/asst_1",
        None,
    ),
    (
        "delete_assistant",
        lambda c: c.delete_assistant("asst_1"),
        "DELETE",
        "/assistants/asst_1",
        None,
    ),
    (
        "create_thread",
        lambda c: c.create_thread(messages=[{"role": "user", "content": "hi"}]),
        "POST",
        "/threads",
        {"messages": [{"role": "user", "content": "hi"}]},
    ),
    ("retrieve_thread", lambda c: c.retrieve_thread("thread_1"), "GET", "/threads/thread_1", None),
    ("delete_thread", lambda c: c.delete_thread("thread_1"), "DELETE", "/threads/thread_1", None),
    (
        "create_message",
        lambda c: c.create_message("thread_1", content="hi"),
        "POST",
        "/threads/thread_1/messages",
        {"role": "user", "content": "hi"},
    ),
    (
        "retrieve_message",
        lambda c: c.retrieve_message("thread_1", "msg_1"),
        "GET",
        "/threads/thread_1/messages/msg_1",
        None,
    ),
    (
        "create_run",
        lambda c: c.create_run("thread_1", "asst_1", max_completion_tokens=5),
        "POST",
        "/threads/thread_1/runs",
        {"assistant_id": "asst_1", "max_completion_tokens": 5},
    ),
    (
        "create_thread_and_run",
        lambda c: c.create_thread_and_run("asst_1", thread={"messages": []}),
        "POST",
        "/threads/runs",
        {"assistant_id": "asst_1", "thread": {"messages": []}},
    ),
    (
        "retrieve_run",
        lambda c: c.retrieve_run("thread_1", "run_1"),
        "GET",
        "/threads/thread_1/runs/run_1",
        None,
    ),
    (
        "update_run",
        lambda c: c.update_run("thread_1", "run_1", metadata={"k": "v"}),
        "POST",
        "/threads/thread_1/runs/run_1",
        {"metadata": {"k": "v"}},
    ),
    (
        "cancel_run",
        lambda c: c.cancel_run("thread_1", "run_1"),
        "POST",
        "/threads/thread_1/runs/run_1/cancel",
        None,
    ),
    (
        "submit_tool_outputs",
        lambda c: c.submit_tool_outputs(
            "thread_1", "run_1", [{"tool_call_id": "call_1", "output": "42"}]
        ),
        "POST",
        "/threads/thread_1/runs/run_1/submit_tool_outputs",
        {"tool_outputs": [{"tool_call_id": "call_1", "output": "42"}]},
    ),
    (
        "retrieve_run_step",
        lambda c: c.retrieve_run_step("thread_1", "run_1", "step_1"),
        "GET",
        "/threads/thread_1/runs/run_1/steps/step_1",
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "call", "method", "path", "body"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS]
)
async def test_openai_style_endpoints(
    api: tuple[FakeAPI, str], name: str, call: Any, method: str, path: str, body: Any
) -> None:
    """Each endpoint hits {base}/v1/... with Bearer auth, the assistants=v2 header and its body."""
    fake, root = api
    async with openai_client(root) as client:
        result = await call(client)
    (seen,) = fake.seen
    assert (seen.method, seen.path, seen.body) == (method, "/v1" + path, body)
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.headers["OpenAI-Beta"] == "assistants=v2"
    assert "api-key" not in seen.headers and seen.query == {}
    assert result.response_meta is not None and result.response_meta.request_id == "req_123"


@pytest.mark.parametrize(
    ("name", "call", "method", "path", "body"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS]
)
async def test_azure_style_endpoints(
    api: tuple[FakeAPI, str], name: str, call: Any, method: str, path: str, body: Any
) -> None:
    """Azure style: {endpoint}/openai/...?api-version=V with the api-key header, no Bearer."""
    fake, root = api
    async with AssistantsClient(
        azure_endpoint=root + "/", api_version="2024-08-01-preview", api_key=AZURE_KEY
    ) as client:
        await call(client)
    (seen,) = fake.seen
    assert (seen.method, seen.path, seen.body) == (method, "/openai" + path, body)
    assert seen.query == {"api-version": "2024-08-01-preview"}
    assert seen.headers["api-key"] == AZURE_KEY
    assert "Authorization" not in seen.headers


async def test_one_session_reuses_its_connection(api: tuple[FakeAPI, str]) -> None:
    """Sequential calls of one client share one pooled connection (one aiohttp session)."""
    fake, root = api
    async with openai_client(root) as client:
        for _ in range(3):
            await client.retrieve_thread("thread_1")
    assert len({s.peer_port for s in fake.seen}) == 1


async def test_closed_client_refuses_reuse(api: tuple[FakeAPI, str]) -> None:
    """After the context manager exits, calls and re-entering raise ClientClosedError."""
    fake, root = api
    client = openai_client(root)
    async with client:
        await client.retrieve_thread("thread_1")
    assert client.closed
    with pytest.raises(ClientClosedError):
        await client.retrieve_thread("thread_1")
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    assert len(fake.seen) == 1


def paged_handler(
    items: list[str], seen: list[dict[str, str]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A list endpoint over ``items`` honouring limit/order/after/before like the real API."""

    async def handle(request: web.Request) -> web.Response:
        query = dict(request.query)
        seen.append(query)
        ordered = items if query.get("order", "desc") == "asc" else items[::-1]
        limit = int(query.get("limit", "20"))
        if "after" in query:
            ordered = ordered[ordered.index(query["after"]) + 1 :]
            page = ordered[:limit]
            more = len(ordered) > limit
        elif "before" in query:
            ordered = ordered[: ordered.index(query["before"])]
            page = ordered[-limit:]
            more = len(ordered) > limit
        else:
            page = ordered[:limit]
            more = len(ordered) > limit
        data = [{"id": i, "thread_id": "thread_1", "status": "completed"} for i in page]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
                "has_more": more,
            }
        )

    return handle


async def test_list_auto_paginates_with_after(serve: ServeApp) -> None:
    """list_runs follows has_more with after=last_id, passing limit and order through."""
    seen: list[dict[str, str]] = []
    app = web.Application()
    app.router.add_get(
        "/v1/threads/thread_1/runs", paged_handler([f"run_{i}" for i in range(5)], seen)
    )
    async with openai_client(await serve(app)) as client:
        runs = [run.id async for run in client.list_runs("thread_1", limit=2, order="asc")]
    assert runs == [f"run_{i}" for i in range(5)]
    assert seen == [
        {"limit": "2", "order": "asc"},
        {"limit": "2", "order": "asc", "after": "run_1"},
        {"limit": "2", "order": "asc", "after": "run_3"},
    ]


async def test_list_paginates_backwards_with_before(serve: ServeApp) -> None:
    """Iterating with before= pages towards the start using first_id, yielding each page."""
    seen: list[dict[str, str]] = []
    app = web.Application()
    app.router.add_get(
        "/v1/threads/thread_1/messages", paged_handler([f"m{i}" for i in range(6)], seen)
    )
    async with openai_client(await serve(app)) as client:
        pages = client.list_messages("thread_1", limit=2, order="asc", before="m5")
        ids = [m.id for m in await pages.to_list()]
    assert sorted(ids) == ["m0", "m1", "m2", "m3", "m4"]
    assert [q.get("before") for q in seen] == ["m5", "m3", "m1"]


async def test_list_other_endpoints_and_first_page(serve: ServeApp) -> None:
    """list_assistants, list_run_steps and first_page() use their own paths and stop early."""
    seen: list[dict[str, str]] = []
    app = web.Application()
    app.router.add_get("/v1/assistants", paged_handler(["asst_a", "asst_b", "asst_c"], seen))
    app.router.add_get("/v1/threads/t/runs/r/steps", paged_handler(["step_a"], seen))
    async with openai_client(await serve(app)) as client:
        first = await client.list_assistants(limit=2).first_page()
        steps = await client.list_run_steps("t", "r").to_list()
        limited = await client.list_assistants(limit=1).to_list(limit=2)
    assert [a.id for a in first] == ["asst_c", "asst_b"]
    assert [s.id for s in steps] == ["step_a"]
    assert [a.id for a in limited] == ["asst_c", "asst_b"]


ERRORS = [
    (
        400,
        {
            "error": {
                "message": "Bad param",
                "type": "invalid_request_error",
                "param": "model",
                "code": None,
            }
        },
        BadRequestError,
    ),
    (
        401,
        {
            "error": {
                "message": "No key",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
        AuthenticationError,
    ),
    (
        404,
        {
            "error": {
                "message": "No thread found with id 'thread_x'.",
                "type": "invalid_request_error",
                "code": None,
            }
        },
        NotFoundError,
    ),
    (422, {"error": {"message": "Unprocessable", "code": "x"}}, UnprocessableEntityError),
    (418, {"error": {"message": "teapot"}}, APIStatusError),
]


@pytest.mark.parametrize(("status", "body", "cls"), ERRORS, ids=[str(e[0]) for e in ERRORS])
async def test_error_statuses_map_to_typed_errors(
    api: tuple[FakeAPI, str], status: int, body: Any, cls: type[APIStatusError]
) -> None:
    """Error answers become the typed error with status, code, type, param, message, request id."""
    fake, root = api
    fake.reply("/v1/threads/thread_x", status, body)
    async with openai_client(root) as client:
        with pytest.raises(cls) as info:
            await client.retrieve_thread("thread_x")
    error = info.value
    assert type(error) is cls
    assert error.status == status and error.request_id == "req_123"
    assert error.message == body["error"]["message"]
    assert error.code == body["error"].get("code") and error.param == body["error"].get("param")
    assert error.body == body
    assert "req_123" in str(error) and str(status) in str(error)


async def test_thread_busy_error_carries_both_ids(api: tuple[FakeAPI, str]) -> None:
    """A 400 'already has an active run' becomes ThreadBusyError with thread and run ids."""
    fake, root = api
    message = "Thread thread_abc123 already has an active run run_xyz789."
    fake.reply(
        "/v1/threads/thread_abc123/messages",
        400,
        {"error": {"message": message, "type": "invalid_request_error"}},
    )
    async with openai_client(root) as client:
        with pytest.raises(ThreadBusyError) as info:
            await client.create_message("thread_abc123", content="hi")
    assert isinstance(info.value, BadRequestError)
    assert (info.value.thread_id, info.value.active_run_id) == ("thread_abc123", "run_xyz789")


async def test_non_json_error_body_and_server_error(
    api: tuple[FakeAPI, str], no_retry_waits: None
) -> None:
    """A 502 with an HTML body is a ServerError whose message is the body's start."""
    fake, root = api
    fake.reply("/v1/threads/t", 502, "<html>Bad gateway</html>")
    async with openai_client(root, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(ServerError) as info:
            await client.retrieve_thread("t")
    assert (
        info.value.status == 502 and "Bad gateway" in info.value.message and info.value.code is None
    )


async def test_invalid_success_body_is_invalid_response(api: tuple[FakeAPI, str]) -> None:
    """A 200 whose body is not the expected object raises InvalidResponseError."""
    fake, root = api
    fake.reply("/v1/threads/t", 200, {"no_id": True})
    fake.reply("/v1/threads/u", 200, "not json")
    async with openai_client(root) as client:
        with pytest.raises(InvalidResponseError):
            await client.retrieve_thread("t")
        with pytest.raises(InvalidResponseError):
            await client.retrieve_thread("u")


@pytest.mark.parametrize("azure", [False, True], ids=["openai", "azure"])
async def test_api_key_never_leaks(
    api: tuple[FakeAPI, str], no_retry_waits: None, azure: bool
) -> None:
    """The key is absent from repr(client), str/repr of errors and log lines, even when the
    server echoes it back in its error message."""
    fake, root = api
    key = AZURE_KEY if azure else KEY
    fake.reply(
        "/v1/threads/t",
        401,
        {"error": {"message": f"Incorrect API key provided: {key}.", "code": "invalid_api_key"}},
    )
    fake.reply(
        "/openai/threads/t",
        401,
        {"error": {"message": f"Incorrect API key provided: {key}.", "code": "invalid_api_key"}},
    )
    fake.reply("/v1/threads/busy", 429, {"error": {"message": f"slow down {key}"}})
    fake.reply("/openai/threads/busy", 429, {"error": {"message": f"slow down {key}"}})
    client = (
        AssistantsClient(azure_endpoint=root, api_key=key)
        if azure
        else openai_client(root, retry=RetryPolicy(max_attempts=2))
    )
    texts = [repr(client), str(client)]
    with structlog.testing.capture_logs() as logs:
        async with client:
            for thread_id in ("t", "busy"):
                with pytest.raises(APIStatusError) as info:
                    await client.retrieve_thread(thread_id)
                texts += [
                    str(info.value),
                    repr(info.value),
                    info.value.message,
                    str(info.value.args),
                ]
    assert logs, "the 429 retry should have logged"
    texts += [repr(entry) for entry in logs]
    assert key in json.dumps(fake.seen[0].headers)  # the key was really sent...
    for text in texts:
        assert key not in text  # ...and appears nowhere else
    assert isinstance(info.value, RateLimitError)


def sse(*events: tuple[str, Any]) -> bytes:
    """An SSE body."""
    return b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)


async def test_streams_release_their_connection(serve: ServeApp) -> None:
    """Leaving a stream early releases its connection: the client keeps working afterwards."""
    run = {"id": "run_1", "thread_id": "thread_1", "status": "queued"}
    body = sse(("thread.run.created", run), *[("thread.run.in_progress", run)] * 200)
    body += sse(("thread.run.completed", {**run, "status": "completed"})) + b"data: [DONE]\n\n"

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        return response

    async def retrieve(request: web.Request) -> web.Response:
        return web.json_response(run)

    app = web.Application()
    app.router.add_post("/v1/threads/thread_1/runs", stream)
    app.router.add_get("/v1/threads/thread_1/runs/run_1", retrieve)
    async with AssistantsClient(
        base_url=await serve(app) + "/v1", api_key=KEY, max_connections=1
    ) as client:
        for _ in range(3):  # with one pooled connection, a leaked one would hang here
            async with await client.create_run("thread_1", "asst_1", stream=True) as events:
                async for event in events:
                    if event.event == "thread.run.in_progress":
                        break
        full = await client.create_run("thread_1", "asst_1", stream=True)
        await full.until_done()
        assert full.run is not None and full.run.status == "completed"
        assert (await client.retrieve_run("thread_1", "run_1")).id == "run_1"


async def test_stream_request_error_raises_before_streaming(
    api: tuple[FakeAPI, str], no_retry_waits: None
) -> None:
    """A streamed create_run answered 400 busy raises ThreadBusyError instead of a RunStream."""
    fake, root = api
    message = "Thread thread_1 already has an active run run_9."
    fake.reply("/v1/threads/thread_1/runs", 400, {"error": {"message": message}})
    async with openai_client(root) as client:
        with pytest.raises(ThreadBusyError) as info:
            await client.create_run("thread_1", "asst_1", stream=True)
    assert info.value.active_run_id == "run_9"
    assert fake.seen[0].body == {"assistant_id": "asst_1", "stream": True}


async def test_submit_tool_outputs_stream_knows_its_run(serve: ServeApp) -> None:
    """submit_tool_outputs(stream=True) sends every output in one request and streams the rest."""
    seen: list[Any] = []
    run = {"id": "run_1", "thread_id": "thread_1", "status": "completed"}

    async def submit(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(sse(("thread.run.completed", run)) + b"event: done\ndata: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/threads/thread_1/runs/run_1/submit_tool_outputs", submit)
    outputs = [{"tool_call_id": "a", "output": "1"}, {"tool_call_id": "b", "output": "2"}]
    async with AssistantsClient(base_url=await serve(app) + "/v1", api_key=KEY) as client:
        stream = await client.submit_tool_outputs("thread_1", "run_1", outputs, stream=True)
        assert stream.run_id == "run_1"
        await stream.until_done()
    assert seen == [{"tool_outputs": outputs, "stream": True}]
    assert stream.run is not None and stream.run.status == "completed"


@pytest.mark.parametrize(
    "message",
    [
        "Thread thread_abc already has an active run run_def.",
        "Can't add messages to thread_abc while a run run_def is active.",
    ],
)
async def test_busy_thread_message_variants(api: tuple[FakeAPI, str], message: str) -> None:
    """Both wordings of the busy-thread 400 give ThreadBusyError with the ids."""
    fake, root = api
    fake.reply("/v1/threads/thread_abc/messages", 400, {"error": {"message": message}})
    async with openai_client(root) as client:
        with pytest.raises(ThreadBusyError) as info:
            await client.create_message("thread_abc", content="x")
    assert (info.value.thread_id, info.value.active_run_id) == ("thread_abc", "run_def")


async def test_endless_line_over_http_is_bounded(serve: ServeApp) -> None:
    """A server streaming one endless line ends in SSEDecodeError once max_event_bytes is passed."""
    sent: list[int] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            for _ in range(2000):  # up to 128 MB if nobody stops reading
                await response.write(b"data: " + b"a" * 65536)
                sent.append(1)
        except (ConnectionError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_post("/v1/threads/t/runs", endless)
    async with AssistantsClient(
        base_url=await serve(app) + "/v1", api_key=KEY, max_event_bytes=256 * 1024
    ) as client:
        stream = await client.create_run("t", "a", stream=True)
        with pytest.raises(SSEDecodeError):
            await stream.until_done()
    assert len(sent) < 2000


async def test_cancelling_a_stream_consumer_releases_everything(serve: ServeApp) -> None:
    """Cancelling the task that reads a silent stream ends it promptly, calls on_end once and
    leaves the client's only connection usable."""
    first_event = asyncio.Event()

    async def silent(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(sse(("thread.run.created", {"id": "run_1", "status": "queued"})))
        await asyncio.sleep(30)
        return response

    async def retrieve(request: web.Request) -> web.Response:
        return web.json_response({"id": "run_1", "status": "queued"})

    class Ends(EventHandler):
        ended = 0

        async def on_run_status(self, run: Any) -> None:
            first_event.set()

        async def on_end(self) -> None:
            self.ended += 1

    app = web.Application()
    app.router.add_post("/v1/threads/t/runs", silent)
    app.router.add_get("/v1/threads/t/runs/run_1", retrieve)
    handler = Ends()
    async with AssistantsClient(
        base_url=await serve(app) + "/v1", api_key=KEY, max_connections=1
    ) as client:
        stream = await client.create_run("t", "a", stream=True, handler=handler)
        task = asyncio.create_task(stream.until_done())
        await asyncio.wait_for(first_event.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert handler.ended == 1
        run = await asyncio.wait_for(client.retrieve_run("t", "run_1"), 5)
    assert run.id == "run_1"


async def test_bad_list_pages_are_invalid_responses(serve: ServeApp) -> None:
    """A list item without an id, or a page that never advances, is InvalidResponseError."""
    stuck = {"object": "list", "data": [{"id": "run_1"}], "has_more": True, "last_id": "run_1"}

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"status": "x"}], "has_more": False})

    async def repeating(request: web.Request) -> web.Response:
        return web.json_response(stuck)

    app = web.Application()
    app.router.add_get("/v1/threads/a/runs", broken)
    app.router.add_get("/v1/threads/b/runs", repeating)
    async with openai_client(await serve(app)) as client:
        with pytest.raises(InvalidResponseError):
            await client.list_runs("a").to_list()
        with pytest.raises(InvalidResponseError):
            await client.list_runs("a").first_page()
        with pytest.raises(InvalidResponseError, match="did not advance"):
            await client.list_runs("b").to_list()


async def test_deeply_nested_error_body(api: tuple[FakeAPI, str]) -> None:
    """An error body nested past json's recursion limit still gives a typed status error."""
    fake, root = api
    fake.reply("/v1/threads/t", 404, "[" * 100_000)
    async with openai_client(root) as client:
        with pytest.raises(NotFoundError):
            await client.retrieve_thread("t")


async def test_aclose_from_another_task_interrupts_the_reader(serve: ServeApp) -> None:
    """Closing a stream while another task waits on it ends that task with StreamInterrupted."""

    async def silent(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(sse(("thread.run.created", {"id": "run_1", "status": "queued"})))
        await asyncio.sleep(30)
        return response

    app = web.Application()
    app.router.add_post("/v1/threads/t/runs", silent)
    async with openai_client(await serve(app)) as client:
        stream = await client.create_run("t", "a", stream=True)
        reader = asyncio.create_task(stream.until_done())
        while stream.run is None:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(stream.aclose(), 5)
        with pytest.raises(StreamInterrupted) as info:
            await asyncio.wait_for(reader, 5)
    assert info.value.reason == "connection" and info.value.run_id == "run_1"


async def test_from_settings_azure_falls_back_to_api_key(
    api: tuple[FakeAPI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Azure configuration with only ``api_key`` set sends that key as the api-key header."""
    from runtime.config import Settings

    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    fake, root = api
    settings = Settings.model_validate(
        {"api": {"azure_endpoint": root, "api_key": AZURE_KEY, "api_version": "2024-05-01-preview"}}
    )
    async with AssistantsClient.from_settings(settings) as client:
        await client.retrieve_thread("thread_1")
    (seen,) = fake.seen
    assert seen.path == "/openai/threads/thread_1"
    assert seen.headers["api-key"] == AZURE_KEY
    assert seen.query == {"api-version": "2024-05-01-preview"}


def test_path_segment_quotes_only_what_an_id_needs() -> None:
    """An id goes into a URL path as it is, but for ':' (percent-encoded); a bad id is refused."""
    from runtime.http import path_segment

    assert path_segment("run_aZ-0.9~") == "run_aZ-0.9~"
    assert path_segment("ns:run_1") == "ns%3Arun_1"
    for bad in ("", ".", "..", "a/b", "a?b", "a b"):
        with pytest.raises(ValueError):
            path_segment(bad)
