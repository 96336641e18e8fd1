"""Web chat: an aiohttp app whose POST /chat streams server-sent events while tools run.

``GET /`` serves the page (``web_chat.html`` beside this script); ``POST /chat`` with
``{"message": ..., "thread_id": ...}`` answers ``text/event-stream``: ``status`` events (each
change of the run's status, once), ``tool_started`` and ``tool_finished`` while the tools
execute, ``text`` as the answer streams, then one ``done`` event (status, reason, thread_id,
run_id) or one ``error`` event. During a silence (a slow tool) a ``: keep-alive`` comment goes
out every ``--keepalive`` seconds (default 15, or ``WEB_CHAT_KEEPALIVE_S``): it keeps proxies
from timing out and notices a browser that went away, whose run is then cancelled, here and on
the server. ``POST /cancel`` with ``{"run_id": ...}`` cancels a run streaming here (the page's
Cancel button); its stream then ends with ``done`` and status ``cancelled``.

    python examples/web_chat.py --port 8080      # then open http://127.0.0.1:8080/
    python examples/web_chat.py --self-test      # exercise /chat over loopback and exit

It uses the embedded emulator (its model turns ``/call NAME {json}`` lines into tool calls;
try ``/call slow_report {"seconds": 20}`` to watch a tool outlast the keep-alive interval).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any

import aiohttp
from aiohttp import web
from pydantic import Field

from runtime import AssistantsClient, Orchestrator, RunResult
from runtime.assistants import AssistantsEventHandler
from runtime.assistants.models import Run
from runtime.emulator import Emulator
from runtime.errors import RuntimeAPIError
from runtime.logging import configure_logging
from runtime.protocol.snapshots import TextSnapshot
from tools import ToolCall, ToolCallResult, ToolRegistry
from tools.builtin import register_builtins

PAGE_PATH = Path(__file__).with_name("web_chat.html")
KEEPALIVE_ENV = "WEB_CHAT_KEEPALIVE_S"
DEFAULT_KEEPALIVE_S = 15.0

registry = ToolRegistry()
register_builtins(registry)


@registry.tool(timeout_s=10.0)
async def get_weather(city: str) -> str:
    """Current weather in a city."""
    await asyncio.sleep(0.8)  # a slow API: the page shows the call running meanwhile
    return f"clear, 18 C in {city}"


@registry.tool(timeout_s=120.0)
async def slow_report(seconds: Annotated[float, Field(ge=0, le=100)] = 20.0) -> str:
    """Build a report that takes a while.

    Args:
        seconds: how long it takes.
    """
    await asyncio.sleep(seconds)  # longer than the keep-alive interval: comments keep it alive
    return f"report ready after {seconds:g} s"


Event = tuple[str, dict[str, Any]] | None


class QueueHandler(AssistantsEventHandler):
    """Turns run callbacks into (event, data) items on a queue the response drains.

    ``runs`` (shared by the app) maps each run id this handler has seen to its thread, so
    ``POST /cancel`` can find it.
    """

    def __init__(self, queue: asyncio.Queue[Event], runs: dict[str, str]) -> None:
        self.queue = queue
        self.runs = runs
        self.run_ids: set[str] = set()
        self._last_status: tuple[str, str] | None = None

    async def on_run_status(self, run: Run) -> None:
        self.runs[run.id] = run.thread_id
        self.run_ids.add(run.id)
        if self._last_status == (run.id, run.status):
            return  # run.created and run.queued both say "queued": tell the page once
        self._last_status = (run.id, run.status)
        data = {"status": run.status, "run_id": run.id, "thread_id": run.thread_id}
        self.queue.put_nowait(("status", data))

    async def on_tool_call_started(self, call: ToolCall) -> None:
        data = {"id": call.id, "name": call.name, "arguments": call.arguments}
        self.queue.put_nowait(("tool_started", data))

    async def on_tool_call_finished(self, result: ToolCallResult) -> None:
        data = {
            "id": result.tool_call_id,
            "name": result.name,
            "output": result.output,
            "is_error": result.is_error,
            "error_type": result.error_type,
            "seconds": round(result.seconds, 3),
        }
        self.queue.put_nowait(("tool_finished", data))

    async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
        self.queue.put_nowait(("text", {"delta": delta}))

    def forget_runs(self) -> None:
        for run_id in self.run_ids:
            self.runs.pop(run_id, None)


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)
CLIENT = web.AppKey("client", AssistantsClient)
ASSISTANT_ID = web.AppKey("assistant_id", str)
KEEPALIVE_S = web.AppKey("keepalive_s", float)
RUNS = web.AppKey("runs", dict[str, str])
PAGE = web.AppKey("page", str)


async def runtime_context(app: web.Application) -> AsyncIterator[None]:
    """Start the emulator, a client and an assistant with the app; close them after."""
    async with (
        Emulator(delta_delay_s=0.02) as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-local") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o", tools=registry.definitions())
        app[CLIENT] = client
        app[ORCHESTRATOR] = Orchestrator(client, registry)
        app[ASSISTANT_ID] = assistant.id
        yield
        await app[ORCHESTRATOR].aclose()


async def start_run(
    app: web.Application, message: str, thread_id: str | None, handler: AssistantsEventHandler
) -> RunResult:
    """Run the assistant on a new thread, or on ``thread_id`` after adding the message."""
    orchestrator, assistant_id = app[ORCHESTRATOR], app[ASSISTANT_ID]
    if thread_id is None:
        return await orchestrator.create_thread_and_run(
            assistant_id, messages=[{"role": "user", "content": message}], handler=handler
        )
    await app[CLIENT].create_message(thread_id, content=message)
    return await orchestrator.run(thread_id, assistant_id, handler=handler)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or 400."""
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def done_event(result: RunResult) -> dict[str, Any]:
    """The ``done`` event's data: how the run ended, and why when it did not complete."""
    error = result.last_error
    reason = result.reason or result.incomplete_reason or getattr(error, "message", None)
    return {
        "status": result.status,
        "reason": None if result.ok else reason,
        "thread_id": result.thread_id,
        "run_id": result.run_id,
    }


async def chat(request: web.Request) -> web.StreamResponse:
    """POST /chat: stream the run as server-sent events."""
    body = await json_body(request)
    message, thread_id = str(body.get("message", "")), body.get("thread_id") or None
    if not message.strip():
        raise web.HTTPBadRequest(text="message is required")
    queue: asyncio.Queue[Event] = asyncio.Queue()
    handler = QueueHandler(queue, request.app[RUNS])

    async def run_then_close() -> RunResult:
        try:
            return await start_run(request.app, message, thread_id, handler)
        finally:
            queue.put_nowait(None)  # wake the writer whatever happened

    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    task = asyncio.create_task(run_then_close())
    try:
        await forward(queue, response, request.app[KEEPALIVE_S])
        await response.write(sse("done", done_event(await task)))
    except ConnectionResetError:  # the browser went away (aiohttp's reset error is one)
        pass
    except Exception as exc:  # an API error of the run: tell the page, keep serving
        if task.done() and not task.cancelled() and task.exception() is exc:
            await response.write(sse("error", {"message": str(exc)}))
        else:
            raise
    finally:
        if not task.done():  # the browser went away: cancel the run (here and on the server)
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        handler.forget_runs()
    return response


async def cancel(request: web.Request) -> web.Response:
    """POST /cancel: cancel a run streaming from this app; its /chat stream ends ``cancelled``."""
    run_id = str((await json_body(request)).get("run_id") or "")
    thread_id = request.app[RUNS].get(run_id)
    if thread_id is None:
        raise web.HTTPNotFound(text=f"no run {run_id!r} is streaming here")
    try:
        run = await request.app[ORCHESTRATOR].cancel(run_id, thread_id=thread_id)
    except RuntimeAPIError as exc:
        raise web.HTTPBadGateway(text=f"the cancel request failed: {exc}") from None
    return web.json_response({"run_id": run_id, "status": run.status if run else "ended"})


async def forward(
    queue: asyncio.Queue[Event], response: web.StreamResponse, keepalive_s: float
) -> None:
    """Write queued events until the run ends; a comment line every ``keepalive_s`` of silence
    keeps proxies from timing out and notices a client that went away while tools run."""
    getter: asyncio.Future[Event] | None = None
    try:
        while True:
            getter = getter or asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter}, timeout=keepalive_s)
            if not done:
                await response.write(b": keep-alive\n\n")
                continue
            item, getter = getter.result(), None
            if item is None:
                return
            await response.write(sse(*item))
    finally:
        if getter is not None:
            getter.cancel()


async def index(request: web.Request) -> web.Response:
    """GET /: the chat page."""
    return web.Response(text=request.app[PAGE], content_type="text/html")


def keepalive_from_env() -> float:
    """The keep-alive interval from ``WEB_CHAT_KEEPALIVE_S``, else 15 s."""
    raw = os.environ.get(KEEPALIVE_ENV, "").strip()
    try:
        return float(raw) if raw else DEFAULT_KEEPALIVE_S
    except ValueError:
        raise ValueError(f"{KEEPALIVE_ENV} must be a number of seconds, not {raw!r}") from None


def build_app(keepalive_s: float | None = None) -> web.Application:
    """The web app (the runtime starts and stops with it).

    Args:
        keepalive_s: seconds of silence before a ``: keep-alive`` comment goes out
            (default: ``WEB_CHAT_KEEPALIVE_S``, else 15).
    """
    interval = keepalive_from_env() if keepalive_s is None else keepalive_s
    if not interval > 0:
        raise ValueError(f"the keep-alive interval must be positive, not {interval!r}")
    app = web.Application()
    app[KEEPALIVE_S] = interval
    app[RUNS] = {}
    app[PAGE] = PAGE_PATH.read_text(encoding="utf-8")
    app.cleanup_ctx.append(runtime_context)
    app.router.add_get("/", index)
    app.router.add_post("/chat", chat)
    app.router.add_post("/cancel", cancel)
    return app


async def self_test() -> int:
    """Serve on a loopback port, POST /chat twice (to the end, then hanging up mid-way)."""
    app = build_app(keepalive_s=0.1)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    message = '/call get_weather {"city": "Rome"}\n/call calculate {"expression": "12 * 12"}'
    seen: list[tuple[float, str, dict[str, Any]]] = []
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/") as page:
                assert page.status == 200 and 'fetch("chat"' in await page.text()
            started = time.monotonic()
            async with session.post(url + "/chat", json={"message": message}) as resp:
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                async for event, data in read_sse(resp.content):
                    seen.append((time.monotonic() - started, event, data))
            stream_ok = report(seen)
            hang_up_ok = await hang_up(session, url, app[CLIENT])
    finally:
        await runner.cleanup()
    return 0 if stream_ok and hang_up_ok else 1


async def hang_up(session: aiohttp.ClientSession, url: str, client: AssistantsClient) -> bool:
    """Close the connection while the tool runs; the server run must end cancelled."""
    run_id = thread_id = None
    async with session.post(
        url + "/chat", json={"message": '/call get_weather {"city": "Oslo"}'}
    ) as resp:
        async for event, data in read_sse(resp.content):
            run_id, thread_id = data.get("run_id", run_id), data.get("thread_id", thread_id)
            if event == "tool_started":
                resp.close()  # the browser tab is gone
                break
    assert run_id is not None and thread_id is not None
    hung_up = time.monotonic()
    status = ""
    while time.monotonic() - hung_up < 5.0:
        status = (await client.retrieve_run(thread_id, run_id)).status
        if status in ("cancelled", "completed", "failed", "expired"):
            break
        await asyncio.sleep(0.05)
    print(
        f"hang-up: the server run {run_id} ended {status} {time.monotonic() - hung_up:.2f} s later"
    )
    return status == "cancelled"


async def read_sse(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Decode an SSE body into (event, data) pairs as they arrive."""
    event = ""
    async for raw in content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])


def report(seen: list[tuple[float, str, dict[str, Any]]]) -> bool:
    """Print what arrived when; check the order of events and that tools streamed live."""
    for at, event, data in seen:
        if event != "text":
            print(f"{at:6.2f}s  {event:<13} {json.dumps(data)}")
    text = "".join(d["delta"] for _, e, d in seen if e == "text")
    print(f"text: {text!r}")
    events = [e for _, e, _ in seen]
    started = {d["id"]: at for at, e, d in seen if e == "tool_started"}
    finished = {d["id"]: at for at, e, d in seen if e == "tool_finished"}
    lead = max((finished[i] - started[i] for i in finished if i in started), default=0.0)
    statuses = [d["status"] for _, e, d in seen if e == "status"]
    repeats = sum(a == b for a, b in pairwise(statuses))
    ok = (
        events[-1:] == ["done"]
        and seen[-1][2]["status"] == "completed"
        and {"tool_started", "tool_finished", "text"} <= set(events)
        and events.index("tool_started") < events.index("tool_finished") < events.index("text")
        and lead >= 0.4  # get_weather sleeps 0.8 s: its start reached us long before its end
        and "get_weather returned: clear, 18 C in Rome" in text
        and "calculate returned: 144" in text
        and repeats == 0
    )
    print(f"stream: a tool_started event arrived {lead:.2f} s before its result")
    print(f"statuses: {' -> '.join(statuses)} ({repeats} repeated)")
    return ok


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--keepalive",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"seconds of silence before a keep-alive comment (default: ${KEEPALIVE_ENV} or 15)",
    )
    parser.add_argument(
        "--self-test", action="store_true", help="POST /chat over loopback and exit"
    )
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    if args.self_test:
        code = asyncio.run(self_test())
        print(f"self-test {'passed' if code == 0 else 'FAILED'}")
        return code
    print(f"serving on http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    try:
        app = build_app(args.keepalive)
    except ValueError as exc:
        parser.error(str(exc))
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
