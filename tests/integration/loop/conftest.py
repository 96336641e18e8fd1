"""One run loop, two protocols: every test here runs once per backend against the emulator.

The ``driver`` fixture is parametrised over ``assistants`` and ``responses``. It gives a test
a small neutral facade over the protocol it runs on: start a run with a user message, the
emulator, the protocol's create and submit paths for fault injection, what the server
received (submitted tool outputs, created turns) and what it holds (statuses, stored text).
``open_driver`` builds a driver with other emulator, client or policy settings, optionally
behind a :class:`Proxy` that rewrites what the emulator answers (keep-alive-only streams,
streams broken by the proxy and replayed on a re-open, refused cancels or submissions, a
skewed clock, tool rounds without calls).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp import web

import runtime.retry
from runtime import AssistantsClient, EventHandler, Orchestrator, RunPolicy, RunResult, TurnRef
from runtime.emulator import Emulator, Scenario
from runtime.responses import ResponsesClient, ResponsesOrchestrator
from tools import ToolCall, ToolCallResult, ToolContext, ToolRegistry

Protocol = Literal["assistants", "responses"]
PROTOCOLS: tuple[Protocol, ...] = ("assistants", "responses")

# Not an "sk-" key: masking it proves the client's own key is redacted, not just a pattern.
API_KEY = "loop-test-key-7d3f9a2c41b8e6"
LEAKED_KEY = "sk-" + "Zq8" * 8  # an API-key-like secret a tool's exception may quote

FAST = RunPolicy(
    poll_interval_s=0.02,
    max_poll_interval_s=0.05,
    cancel_wait_s=2.0,
    busy_wait_s=5.0,
)


def fast(**changes: Any) -> RunPolicy:
    """FAST with some policies changed."""
    return replace(FAST, **changes)


# The emulator's polling hint is honoured by the loop: keep it short.
FAST_EMULATOR: dict[str, Any] = {"poll_after_ms": 20, "seed": 5}
_TERMINAL = ("completed", "failed", "cancelled", "incomplete", "expired")


def call(name: str, **arguments: Any) -> str:
    """A ``/call`` line: the emulator's model turns it into a tool call."""
    return f"/call {name} {json.dumps(arguments)}"


def lines(*items: str) -> str:
    return "\n".join(items)


def scenario(*turns: Mapping[str, Any], then: str = "default") -> Scenario:
    """A scripted model: these turns first, then the default rules (or repeat them)."""
    return Scenario.from_dict({"turns": [dict(t) for t in turns], "then": then})


# --- tools ------------------------------------------------------------------------------------


@dataclass
class Probe:
    """Records tool executions: how often each ran, overlaps, spans and cancellations."""

    calls: Counter[str] = field(default_factory=Counter)
    running: int = 0
    peak: int = 0
    spans: list[tuple[float, float]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, key: str) -> float:
        with self.lock:
            self.calls[key] += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        return time.monotonic()

    def leave(self, began: float) -> None:
        with self.lock:
            self.running -= 1
            self.spans.append((began, time.monotonic()))

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def registry(probe: Probe) -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        probe.leave(probe.enter(f"add:{a}+{b}"))
        return a + b

    @reg.tool
    async def slow(seconds: float, ctx: ToolContext, label: str = "x") -> str:
        """Sleep on the loop, then say so.

        Args:
            seconds: how long to sleep.
            label: a name for the call.
        """
        began = probe.enter(f"slow:{label}")
        probe.started.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            probe.cancelled.append(ctx.tool_call_id)
            raise
        finally:
            probe.leave(began)
        return f"slept {seconds} ({label})"

    @reg.tool
    def slow_sync(seconds: float, label: str = "x") -> str:
        """Sleep in a worker thread, then say so.

        Args:
            seconds: how long to sleep.
            label: a name for the call.
        """
        began = probe.enter(f"slow_sync:{label}")
        try:
            time.sleep(seconds)
        finally:
            probe.leave(began)
        return f"slept {seconds} ({label})"

    @reg.tool
    async def explode(reason: str) -> str:
        """Always fails with ``reason``."""
        probe.leave(probe.enter("explode"))
        raise RuntimeError(f"boom: {reason}")

    @reg.tool
    async def leak() -> str:
        """Fails with an error message that quotes credentials."""
        probe.leave(probe.enter("leak"))
        raise PermissionError(f"upstream refused key {LEAKED_KEY} (client key {API_KEY})")

    @reg.tool
    async def bail(code: int) -> str:
        """Calls sys.exit from inside a tool."""
        probe.leave(probe.enter("bail"))
        raise SystemExit(code)

    return reg


# --- what a test learns from the handler ------------------------------------------------------


class Watch(EventHandler):
    """Collects turn ids and fires events at points where a test acts."""

    def __init__(self) -> None:
        self.turns: list[str] = []
        self.text = asyncio.Event()
        self.tools = asyncio.Event()

    async def on_turn(self, ref: TurnRef) -> None:
        self.turns.append(ref.id)

    async def on_text_delta(self, delta: str, snapshot: Any) -> None:
        self.text.set()

    async def on_tool_call_started(self, call: Any) -> None:
        self.tools.set()


# --- a proxy in front of the emulator ---------------------------------------------------------

_HOP_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "content-encoding", "date", "server"}
)


@dataclass
class _Recording:
    events: list[tuple[int, bytes]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Proxy:
    """An aiohttp server forwarding every request to the emulator, rewriting some answers.

    Attributes:
        upstream: the emulator's root URL.
        keepalive_streams: how many of the next streams go silent after
            ``keepalive_after`` events, sending only ``: keep-alive`` comments from then on.
        keepalive_after: events forwarded before such a stream goes silent.
        keepalive_skip: streams passed through untouched before those.
        refuse_cancel: answer every ``.../cancel`` with a 400 (not forwarded).
        refuse_submits: answer every tool-output submission with a 400 (not forwarded).
        refused_submits: how many were refused.
        date_offset_s: shift of the ``Date`` header of every answer.
        empty_tool_calls: rewrite Assistants ``required_action`` to list no calls.
        cut_streams: how many of the next streams break (the proxy closes the client's
            connection) after ``cut_after`` events; the proxy reads them to their end.
        cut_after: events forwarded before such a break.
        cut_skip: streams passed through untouched before those.
        recordings: every Responses stream's events, by response id: a re-open
            (``GET /responses/{id}?stream=true&starting_after=N``) replays those after N,
            as the service does (the emulator cannot).
        reopened: how many re-opens were served.
        seen: ``(method, path)`` of every request received.
    """

    upstream: str
    keepalive_streams: int = 0
    keepalive_after: int = 2
    keepalive_skip: int = 0
    refuse_cancel: bool = False
    refuse_submits: bool = False
    refused_submits: int = 0
    date_offset_s: float = 0.0
    empty_tool_calls: bool = False
    cut_streams: int = 0
    cut_after: int = 3
    cut_skip: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)
    recordings: dict[str, _Recording] = field(default_factory=dict)
    reopened: int = 0
    session: aiohttp.ClientSession | None = None

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p in self.seen if m == method and re.search(pattern, p))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _headers(self, upstream: Mapping[str, str]) -> dict[str, str]:
        headers = {k: v for k, v in upstream.items() if k.lower() not in _HOP_HEADERS}
        stamp = time.time() + self.date_offset_s
        headers["Date"] = email.utils.formatdate(stamp, usegmt=True)
        return headers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path))
        payload = await request.read()
        if self.refuse_cancel and request.path.endswith("/cancel"):
            return self._refuse("cannot cancel now")
        if self.refuse_submits and _is_submit(request.path, payload):
            self.refused_submits += 1
            return self._refuse("tool outputs rejected")
        match = re.fullmatch(r"/v1/responses/([^/]+)", request.path)
        if match and request.query.get("stream") == "true" and match[1] in self.recordings:
            return await self._replay(request, self.recordings[match[1]])
        assert self.session is not None
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            data=payload,
        ) as answer:
            if answer.content_type == "text/event-stream":
                return await self._stream(request, answer)
            body = self._rewrite(await answer.read())
            return web.Response(
                body=body, status=answer.status, headers=self._headers(answer.headers)
            )

    def _refuse(self, message: str) -> web.Response:
        body = {"error": {"message": message, "type": "invalid_request_error"}}
        return web.json_response(body, status=400, headers=self._headers({}))

    async def _stream(
        self, request: web.Request, answer: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        out = web.StreamResponse(status=answer.status, headers=self._headers(answer.headers))
        await out.prepare(request)
        silent_after = cut_after = None
        if self.keepalive_streams > 0:
            if self.keepalive_skip > 0:
                self.keepalive_skip -= 1
            else:
                self.keepalive_streams -= 1
                silent_after = self.keepalive_after
        if self.cut_streams > 0:
            if self.cut_skip > 0:
                self.cut_skip -= 1
            else:
                self.cut_streams -= 1
                cut_after = self.cut_after
        events = 0
        event = b""
        recorded: _Recording | None = None
        try:
            async for line in answer.content:
                event += self._rewrite(line)
                if line not in (b"\n", b"\r\n"):
                    continue
                recorded = self._record(event, recorded)
                if cut_after is None or events < cut_after:
                    await out.write(event)
                event = b""
                events += 1
                if silent_after is not None and events >= silent_after:
                    await self._keep_alive(out)
                    return out
                if cut_after is not None and events == cut_after and request.transport:
                    request.transport.close()  # the client's stream breaks; we read on
            if cut_after is None:
                await out.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            if recorded is not None:
                recorded.done.set()
        return out

    def _record(self, event: bytes, recording: _Recording | None) -> _Recording | None:
        """Keep a Responses stream's events by response id, to replay them on a re-open."""
        for line in event.splitlines():
            if not line.startswith(b"data: "):
                continue
            try:
                data = json.loads(line[6:])
            except ValueError:
                return recording
            if recording is None and isinstance(data.get("response"), dict):
                recording = self.recordings.setdefault(data["response"]["id"], _Recording())
            if recording is not None and isinstance(data.get("sequence_number"), int):
                recording.events.append((data["sequence_number"], event))
        return recording

    async def _replay(self, request: web.Request, recording: _Recording) -> web.StreamResponse:
        """GET /responses/{id}?stream=true&starting_after=N: the recorded events after N."""
        await asyncio.wait_for(recording.done.wait(), 5)
        after = int(request.query.get("starting_after", "-1"))
        self.reopened += 1
        headers = self._headers({"Content-Type": "text/event-stream"})
        out = web.StreamResponse(status=200, headers=headers)
        await out.prepare(request)
        for sequence, event in recording.events:
            if sequence > after:
                await out.write(event)
        await out.write_eof()
        return out

    async def _keep_alive(self, out: web.StreamResponse) -> None:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            await out.write(b": keep-alive\n\n")

    def _rewrite(self, data: bytes) -> bytes:
        if not self.empty_tool_calls or b"required_action" not in data:
            return data
        prefix = b"data: " if data.startswith(b"data: ") else b""
        obj = json.loads(data[len(prefix) :])
        action = obj.get("required_action")
        if isinstance(action, dict):
            action["submit_tool_outputs"]["tool_calls"] = []
        end = b"\n" if data.endswith(b"\n") else b""
        return prefix + json.dumps(obj).encode() + end


def _is_submit(path: str, payload: bytes) -> bool:
    """A tool-output submission: Assistants' own route, or a Responses create answering calls."""
    if path.endswith("/submit_tool_outputs"):
        return True
    return path.endswith("/responses") and b'"function_call_output"' in payload


# --- the driver -------------------------------------------------------------------------------

ASSISTANTS_CREATE = r"/threads/[^/]+/runs$"
ASSISTANTS_SUBMIT = r"/submit_tool_outputs$"
RESPONSES_CREATE = r"/responses$"


@dataclass
class Driver:
    """One protocol behind a neutral face (see the module doc).

    Attributes:
        protocol: ``assistants`` or ``responses``.
        emu: the emulator.
        client: the protocol's client.
        orch: the protocol's orchestrator.
        assistant_id: the assistant the Assistants runs use.
        proxy: the proxy in front of the emulator, when there is one.
    """

    protocol: Protocol
    emu: Emulator
    client: AssistantsClient | ResponsesClient
    orch: Orchestrator | ResponsesOrchestrator
    assistant_id: str | None = None
    proxy: Proxy | None = None
    _parked_thread: str = ""

    @property
    def is_assistants(self) -> bool:
        return self.protocol == "assistants"

    # --- running ---------------------------------------------------------------------------

    async def run(
        self, text: str, *, handler: EventHandler | None = None, **params: Any
    ) -> RunResult[Any]:
        """Run the user message ``text`` to its end (Assistants: on a new thread)."""
        if isinstance(self.orch, Orchestrator):
            assert self.assistant_id is not None
            return await self.orch.create_thread_and_run(
                self.assistant_id,
                messages=[{"role": "user", "content": text}],
                handler=handler,
                **params,
            )
        return await self.orch.run(text, handler=handler, **params)

    async def park(self, text: str) -> tuple[str, list[ToolCall]]:
        """Start a turn outside the runtime and leave it waiting for tool outputs; return
        its id and the calls it waits on."""
        if isinstance(self.client, AssistantsClient):
            assert self.assistant_id is not None
            thread = await self.client.create_thread(messages=[{"role": "user", "content": text}])
            run = await self.client.create_run(thread.id, self.assistant_id)
            while run.status != "requires_action":
                await asyncio.sleep(0.02)
                run = await self.client.retrieve_run(thread.id, run.id)
            self._parked_thread = thread.id
            calls = [
                ToolCall(c.id, c.function.name, c.function.arguments)
                for c in run.required_tool_calls
            ]
            return run.id, calls
        response = await self.client.create(model="gpt-4o", input=text)
        calls = [ToolCall(c.call_id, c.name, c.arguments) for c in response.function_calls]
        return response.id, calls

    async def resume(self, turn_id: str, known: list[ToolCallResult]) -> RunResult[Any]:
        """Adopt a parked turn with ``orch.resume`` and drive it to its end."""
        if isinstance(self.orch, Orchestrator):
            return await self.orch.resume(self._parked_thread, turn_id, known_results=known)
        return await self.orch.resume(turn_id, known)

    def output_limit(self, tokens: int) -> dict[str, Any]:
        """Run parameters capping the model's output at ``tokens``."""
        key = "max_completion_tokens" if self.is_assistants else "max_output_tokens"
        return {key: tokens}

    @property
    def cancellable(self) -> dict[str, Any]:
        """Run parameters that make the server turn cancellable (a background response)."""
        return {} if self.is_assistants else {"background": True}

    async def cancel(self, turn_id: str) -> object | None:
        """``orch.cancel`` from elsewhere."""
        return await self.orch.cancel(turn_id)

    # --- fault injection -------------------------------------------------------------------

    @property
    def create_path(self) -> str:
        return ASSISTANTS_CREATE if self.is_assistants else RESPONSES_CREATE

    def inject_on_create(self, kind: str, **params: Any) -> None:
        """A fault on the request that starts the run."""
        self.emu.inject(kind, method="POST", path=self.create_path, **params)

    def inject_on_submit(self, kind: str, **params: Any) -> None:
        """A fault on the first tool-output submission. On Responses a submit is also a
        POST /v1/responses: the create before it takes a no-op rule (``slow`` of 0 ms)."""
        if self.is_assistants:
            self.emu.inject(kind, method="POST", path=ASSISTANTS_SUBMIT, **params)
            return
        self.emu.inject("slow", method="POST", path=RESPONSES_CREATE, ms=0)
        self.emu.inject(kind, method="POST", path=RESPONSES_CREATE, **params)

    # --- what the server received ----------------------------------------------------------

    def requests(self, method: str, pattern: str) -> list[dict[str, Any]]:
        """Request-log entries matching ``method`` and the path regex."""
        return [
            r
            for r in self.emu.requests
            if r["method"] == method and re.search(pattern, r["path"]) and "/v1/" in r["path"]
        ]

    def submit_requests(self) -> list[list[dict[str, str]]]:
        """Every tool-output submission received, as ``[{"call_id", "output"}, ...]``."""
        if self.is_assistants:
            return [
                [
                    {"call_id": o["tool_call_id"], "output": o["output"]}
                    for o in r["json"]["tool_outputs"]
                ]
                for r in self.requests("POST", ASSISTANTS_SUBMIT)
                if r["json"] is not None  # None: its body is still being read
            ]
        batches = []
        for r in self.requests("POST", RESPONSES_CREATE):
            items = (r["json"] or {}).get("input")
            if isinstance(items, list) and any(
                i.get("type") == "function_call_output" for i in items
            ):
                batches.append(
                    [
                        {"call_id": i["call_id"], "output": i["output"]}
                        for i in items
                        if i.get("type") == "function_call_output"
                    ]
                )
        return batches

    def start_requests(self) -> int:
        """Requests that started a run (not tool-output submissions)."""
        if self.is_assistants:
            return len(self.requests("POST", ASSISTANTS_CREATE))
        return len(self.requests("POST", RESPONSES_CREATE)) - len(self.submit_requests())

    def turns_created(self) -> int:
        """Runs (Assistants) or responses (Responses) the server created."""
        key = "runs_created" if self.is_assistants else "responses_created"
        return int(self.emu.stats.get(key, 0))

    def one_chain(self, rounds: int) -> int:
        """Turns one run creates with ``rounds`` tool rounds: one run, or a response each."""
        return 1 if self.is_assistants else rounds + 1

    def active_turns(self) -> int:
        """Runs or responses still queued or in progress on the server."""
        stats = self.emu.stats
        if self.is_assistants:
            return int(stats["active_runs"])
        done = sum(int(stats.get(f"responses_{s}", 0)) for s in _TERMINAL)
        return int(stats.get("responses_created", 0)) - done

    def cancel_requests(self) -> int:
        return len(self.requests("POST", r"/cancel$"))

    # --- what the server holds -------------------------------------------------------------

    async def status(self, turn_id: str) -> str:
        """The server's status of a run or response."""
        if self.is_assistants:
            return str(self.emu.get_run(turn_id)["status"])
        assert isinstance(self.client, ResponsesClient)
        return str((await self.client.retrieve(turn_id)).status)

    async def wait_settled(self, timeout_s: float = 3.0) -> None:
        """Wait until the server has no active turn (a cancel takes a moment)."""
        deadline = time.monotonic() + timeout_s
        while self.active_turns() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def stored_text(self, result: RunResult[Any]) -> str:
        """The assistant text the server stored for the run, joined as RunResult.text is."""
        if self.is_assistants:
            texts = [
                "\n".join(p["text"]["value"] for p in m["content"] if p["type"] == "text")
                for m in self.emu.messages(result.conversation_id or "")
                if m["role"] == "assistant"
            ]
            return "\n\n".join(t for t in texts if t)
        assert isinstance(self.client, ResponsesClient)
        texts = []
        response_id = result.run_id
        while response_id:
            response = await self.client.retrieve(response_id)
            texts[:0] = [m.text for m in response.messages if m.text]
            response_id = response.previous_response_id
        return "\n\n".join(texts)


def _orchestrator(
    protocol: Protocol,
    client: AssistantsClient | ResponsesClient,
    registry: ToolRegistry,
    policy: RunPolicy,
) -> Orchestrator | ResponsesOrchestrator:
    if protocol == "assistants":
        assert isinstance(client, AssistantsClient)
        return Orchestrator(client, registry, policy=policy)
    assert isinstance(client, ResponsesClient)
    return ResponsesOrchestrator(client, registry, policy=policy)


OpenDriver = Callable[..., Awaitable[Driver]]


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    runtime.retry.set_testing(True)
    try:
        yield
    finally:
        runtime.retry.set_testing(False)


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> Protocol:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def open_driver(
    protocol: Protocol, registry: ToolRegistry, serve: Callable[[web.Application], Awaitable[str]]
) -> AsyncIterator[OpenDriver]:
    """``await open_driver(emulator={...}, client={...}, policy=..., proxy=False)``."""
    async with AsyncExitStack() as stack:

        async def open_(
            *,
            emulator: Mapping[str, Any] | None = None,
            client: Mapping[str, Any] | None = None,
            policy: RunPolicy = FAST,
            proxy: bool = False,
        ) -> Driver:
            emu = await stack.enter_async_context(Emulator(**{**FAST_EMULATOR, **(emulator or {})}))
            front: Proxy | None = None
            base_url = emu.base_url
            if proxy:
                front = Proxy(emu.url)
                front.session = await stack.enter_async_context(aiohttp.ClientSession())
                base_url = await serve(front.app()) + "/v1"
            kind = AssistantsClient if protocol == "assistants" else ResponsesClient
            api = await stack.enter_async_context(
                kind(base_url=base_url, api_key=API_KEY, **(client or {}))
            )
            orch = _orchestrator(protocol, api, registry, policy)
            stack.push_async_callback(orch.aclose)
            assistant_id = None
            if isinstance(api, AssistantsClient):
                assistant = await api.create_assistant(model="gpt-4o")
                assistant_id = assistant.id
            return Driver(protocol, emu, api, orch, assistant_id, front)

        yield open_


@pytest.fixture
async def driver(open_driver: OpenDriver) -> Driver:
    return await open_driver()
