"""HTTP plumbing of the emulator: routes, auth, fault injection, request log, SSE rendering."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiohttp import web

from runtime.emulator.api import AssistantsApi, Call, JsonReply, Reply, StreamReply
from runtime.emulator.engine import (
    EVENT_HEADS,
    NullSink,
    RunEngine,
    encode_json,
    event_head,
    sse_event,
)
from runtime.emulator.errors import ApiError, invalid, overloaded, rate_limited, server_error
from runtime.emulator.faults import Fault, FaultInjector, FaultSpec, FaultSpecError, make_rule
from runtime.emulator.ids import IdFactory
from runtime.emulator.model import frozen_instance
from runtime.emulator.objects import Obj
from runtime.emulator.ratelimit import RequestLimiter
from runtime.emulator.responses_api import ResponsesApi
from runtime.emulator.retention import DEFAULT_RETAINED
from runtime.logging import ModuleLogger

Handler = Callable[[Call], Awaitable[Reply]]
API_PREFIXES = ("/v1", "/openai")
# Azure's v1 paths (``{endpoint}/openai/v1/responses``, no api-version) serve the Responses and
# Conversations routes.
AZURE_V1_PREFIX = "/openai/v1"
MAX_LOGGED_REQUESTS = 20_000
MAX_JSON_DEPTH = 128
_DONE = b"event: done\ndata: [DONE]\n\n"
log = ModuleLogger("runtime.emulator")


@dataclass
class ServerContext:
    """What the HTTP layer shares with the :class:`~runtime.emulator.Emulator`."""

    api: AssistantsApi
    engine: RunEngine
    faults: FaultInjector
    ids: IdFactory
    stats: Counter[str]
    api_key: str | None = None
    retained: int | None = DEFAULT_RETAINED
    responses: ResponsesApi | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    max_stall_s: float = 300.0
    limiter: RequestLimiter | None = None

    def log(self, entry: dict[str, Any]) -> None:
        """Append to the request log, dropping the oldest entries past the cap."""
        self.requests.append(entry)
        if len(self.requests) > MAX_LOGGED_REQUESTS:
            del self.requests[: len(self.requests) - MAX_LOGGED_REQUESTS]


Route = tuple[str, str, Handler]


def build_app(ctx: ServerContext, extra_routes: Sequence[Route] = ()) -> web.Application:
    """The aiohttp application: API routes under /v1 and /openai, control under /_emulator.

    Args:
        ctx: shared state.
        extra_routes: more ``(method, path, handler)`` API routes (path without prefix), e.g. a
            Responses API front end (``("POST", "/responses", handler)``) reusing the model,
            faults, auth, request log and SSE rendering.
    """
    # No middleware: each handler answers its own errors (a middleware costs every request).
    app = web.Application(client_max_size=16 * 1024 * 1024)
    api = ctx.api
    routes: list[Route] = [
        ("POST", "/assistants", api.create_assistant),
        ("GET", "/assistants", api.list_assistants),
        ("GET", "/assistants/{assistant_id}", api.get_assistant),
        ("POST", "/assistants/{assistant_id}", api.update_assistant),
        ("DELETE", "/assistants/{assistant_id}", api.delete_assistant),
        ("POST", "/threads", api.create_thread),
        ("POST", "/threads/runs", api.create_thread_and_run),
        ("GET", "/threads/{thread_id}", api.get_thread),
        ("POST", "/threads/{thread_id}", api.update_thread),
        ("DELETE", "/threads/{thread_id}", api.delete_thread),
        ("POST", "/threads/{thread_id}/messages", api.create_message),
        ("GET", "/threads/{thread_id}/messages", api.list_messages),
        ("GET", "/threads/{thread_id}/messages/{message_id}", api.get_message),
        ("POST", "/threads/{thread_id}/messages/{message_id}", api.update_message),
        ("DELETE", "/threads/{thread_id}/messages/{message_id}", api.delete_message),
        ("POST", "/threads/{thread_id}/runs", api.create_run),
        ("GET", "/threads/{thread_id}/runs", api.list_runs),
        ("GET", "/threads/{thread_id}/runs/{run_id}", api.get_run),
        ("POST", "/threads/{thread_id}/runs/{run_id}", api.update_run),
        ("POST", "/threads/{thread_id}/runs/{run_id}/cancel", api.cancel_run),
        ("POST", "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", api.submit_tool_outputs),
        ("GET", "/threads/{thread_id}/runs/{run_id}/steps", api.list_steps),
        ("GET", "/threads/{thread_id}/runs/{run_id}/steps/{step_id}", api.get_step),
    ]
    # The Responses front end shares the engine: model, ids, counters, owned tasks.
    responses = ResponsesApi(ctx.engine, poll_after_ms=api.poll_after_ms, retained=ctx.retained)
    ctx.responses = responses
    successor = responses.routes()
    routes += successor
    routes.extend(extra_routes)
    for prefix in API_PREFIXES:
        for method, path, handler in routes:
            app.router.add_route(method, prefix + path, _ApiRoute(ctx, handler, prefix).handle)
    for method, path, handler in successor:
        route = _ApiRoute(ctx, handler, AZURE_V1_PREFIX)
        app.router.add_route(method, AZURE_V1_PREFIX + path, route.handle)
    control = _Control(ctx)
    app.router.add_get("/_emulator/stats", _guarded(control.stats))
    app.router.add_get("/_emulator/requests", _guarded(control.requests))
    app.router.add_post("/_emulator/faults", _guarded(control.set_faults))
    app.router.add_post("/_emulator/inject", _guarded(control.inject))
    app.router.add_route("*", "/{tail:.*}", _ApiRoute(ctx, _unknown_route, "").handle)
    return app


def _guarded(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler whose plumbing errors (413, a bug) answer an OpenAI JSON body."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            return _plumbing_error(request, exc)

    return guarded


def _plumbing_error(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The OpenAI JSON answer to an error the plumbing itself raised (413, a bug); re-raises
    it once a stream started, or when it is not an error (a redirect)."""
    if request.get(_STREAMING):
        raise exc
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        error = ApiError(exc.status, exc.reason or "Request failed.")
        return web.json_response(error.body(), status=exc.status)
    log.exception("emulator.request_failed", method=request.method, path=request.path)
    return web.json_response(server_error().body(), status=500)


# aiohttp >= 3.11 wants typed request keys; older ones take a string.
_STREAMING: Any = getattr(web, "RequestKey", lambda name, _type: name)("emulator_streaming", bool)


async def _unknown_route(call: Call) -> Reply:
    raise ApiError(404, "Invalid URL", code="unknown_url")


class _ApiRoute:
    """Wraps an API handler with request id, log, faults, auth and rendering."""

    def __init__(self, ctx: ServerContext, handler: Handler, prefix: str) -> None:
        self.ctx = ctx
        self.handler = handler
        self.prefix = prefix

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one request; an error of the plumbing itself answers an OpenAI JSON body."""
        try:
            return await self._serve(request)
        except Exception as exc:
            return _plumbing_error(request, exc)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        """Log, fault, auth, handler, fault after, render."""
        entry = self._log_entry(request)
        fault: Fault | None = None
        limits: dict[str, str] = {}
        try:
            body = await _read_json(request)
            entry["json"] = body
            if self.prefix:
                streaming = bool(body.get("stream")) or _query_flag(request, "stream")
                fault = self.ctx.faults.choose(request.method, request.path, streaming)
                entry["fault"] = fault.kind if fault else None
            if fault is not None and await self._fault_before(fault, request):
                return web.Response(status=499)  # never sent: the connection is gone
            limits = self._rate_limit(request)
            reply = await self._process(request, body)
        except ApiError as exc:
            reply = JsonReply(exc.body(), exc.status, exc.headers)
        if limits and isinstance(reply, JsonReply):
            reply = JsonReply(reply.body, reply.status, {**limits, **reply.headers})
        if fault is not None and fault.kind in {"reset_after", "500_after"}:
            if isinstance(reply, StreamReply):
                self.ctx.engine.spawn(reply.drive(NullSink()))  # processed: the run goes on
            if fault.kind == "reset_after":
                _reset(request)
                return web.Response(status=499)
            reply = _error_reply(server_error())
        if isinstance(reply, JsonReply):
            entry["status"] = reply.status
            return _json_response(reply, entry["request_id"])
        entry["status"] = 200
        self.ctx.stats["streams"] += 1
        return await self._stream(request, reply, entry["request_id"], fault, limits)

    def _rate_limit(self, request: web.Request) -> dict[str, str]:
        """Take a request from the key's bucket (``rate_limit_rpm``): its headers, or 429."""
        limiter = self.ctx.limiter
        if limiter is None or not self.prefix or not limiter.applies(request.method, request.path):
            return {}
        key = request_key(request, azure=self.prefix.startswith("/openai")) or ""
        allowed, headers = limiter.take(key)
        if not allowed:
            self.ctx.stats["rate_limited"] += 1
            raise rate_limited(headers)
        return headers

    def _log_entry(self, request: web.Request) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "status": None,
            "fault": None,
            "request_id": self.ctx.ids.request_id(),
            "json": None,
        }
        self.ctx.log(entry)
        self.ctx.stats["requests"] += 1
        return entry

    async def _process(self, request: web.Request, body: dict[str, Any]) -> Reply:
        """Authenticate and run the handler; an emulator bug still answers an OpenAI 500."""
        self._authenticate(request)
        if self.handler is _unknown_route:
            raise ApiError(404, f"Invalid URL ({request.method} {request.path})")
        try:
            # Built without the frozen dataclass's __init__ (an object.__setattr__ a field).
            call = frozen_instance(
                Call, {"body": body, "params": request.match_info, "query": _query(request)}
            )
            return await self.handler(call)
        except ApiError:
            raise
        except Exception:
            log.exception("emulator.handler_failed", method=request.method, path=request.path)
            self.ctx.stats["internal_errors"] += 1
            return _error_reply(server_error())

    async def _fault_before(self, fault: Fault, request: web.Request) -> bool:
        """Apply a fault that acts before processing; True if the connection was reset."""
        if fault.kind == "slow":
            await asyncio.sleep(float(fault.params.get("ms", 500)) / 1000.0)
        elif fault.kind == "reset":
            _reset(request)
            return True
        elif fault.kind == "500":
            raise server_error()
        elif fault.kind in {"429", "503"}:
            headers = _retry_headers(fault)
            raise rate_limited(headers) if fault.kind == "429" else overloaded(headers)
        return False

    def _authenticate(self, request: web.Request) -> None:
        if not self.prefix:
            return
        if self.prefix == "/openai" and not request.query.get("api-version"):
            raise ApiError(
                404, "Resource not found: the 'api-version' query parameter is required."
            )
        key = request_key(request, azure=self.prefix.startswith("/openai"))
        if not key:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if self.ctx.api_key is not None and key != self.ctx.api_key:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    async def _stream(
        self,
        request: web.Request,
        reply: StreamReply,
        request_id: str,
        fault: Fault | None,
        limits: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        response = _SseResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "x-request-id": request_id,
                **(limits or {}),
            },
        )
        request[_STREAMING] = True
        stats = self.ctx.stats
        stats["streams_open"] += 1
        stats["streams_open_peak"] = max(stats["streams_open_peak"], stats["streams_open"])
        try:
            try:
                await response.prepare(request)
            except (ConnectionError, RuntimeError):
                self.ctx.engine.spawn(reply.drive(NullSink()))  # the run goes on without us
                return response
            sink = SseSink(response, request, fault, done=reply.done)
            await reply.drive(sink)
            await sink.finish(self.ctx)
        finally:
            stats["streams_open"] -= 1
        return response


_NO_QUERY: Mapping[str, str] = MappingProxyType({})


def _query(request: web.Request) -> Mapping[str, str]:
    """The query parameters (most requests have none: no multidict is made for them)."""
    return request.query if request.query_string else _NO_QUERY


def _query_flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter (``?stream=true`` resumes a Responses stream)."""
    return request.query.get(name, "").lower() == "true"


def request_key(request: web.Request, *, azure: bool = True) -> str | None:
    """The API key of a request: Azure's ``api-key`` header (when allowed), else the bearer."""
    key = request.headers.get("api-key") if azure else None
    auth = request.headers.get("Authorization", "")
    if key is None and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key or None


def _error_reply(error: ApiError) -> JsonReply:
    return JsonReply(error.body(), error.status, error.headers)


def _json_response(reply: JsonReply, request_id: str) -> web.Response:
    headers = {"x-request-id": request_id, **reply.headers}
    return web.Response(
        body=encode_json(reply.body).encode(),
        status=reply.status,
        content_type="application/json",
        headers=headers,
    )


async def _read_json(request: web.Request) -> dict[str, Any]:
    if not request.body_exists:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = _parse_json(raw)
    except (ValueError, RecursionError):
        raise invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)"
        ) from None
    if not isinstance(body, dict):
        raise invalid("Invalid body: expected a JSON object.")
    # Nesting needs an opening bracket a level: few brackets in all can't nest too deep.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _too_deep(body):
        raise invalid(f"Invalid body: JSON nested more than {MAX_JSON_DEPTH} levels deep.")
    return body


_decoder = json.JSONDecoder()
_decode_json = _decoder.decode
# The scanner ``decode`` itself uses (an instance attribute the type stubs do not declare).
_scan_json: Callable[[str, int], tuple[Any, int]] = vars(_decoder)["scan_once"]
_OPEN_BRACE = ord("{")


def _parse_json(raw: bytes) -> Any:
    """``json.loads(raw)``: a body whose first two bytes are ASCII and not NUL is UTF-8 (what
    ``json.loads`` would find after testing for byte order marks and UTF-16/32), decoded
    here; any other body goes to ``json.loads``.

    An object with nothing around it (what clients send) is scanned straight away, without
    ``decode``'s two whitespace matches; anything else, an error included, is decoded again
    by ``decode``, which skips whitespace and raises as ``json.loads`` does.
    """
    if len(raw) > 1 and 0 < raw[0] < 0x80 and raw[1]:
        text = raw.decode("utf-8", "surrogatepass")
        if raw[0] == _OPEN_BRACE:
            try:
                value, end = _scan_json(text, 0)
            except (StopIteration, ValueError, RecursionError):
                pass
            else:
                if end == len(text):
                    return value
        return _decode_json(text)
    return json.loads(raw)


def _too_deep(value: Any) -> bool:
    """Whether JSON nests deeper than :data:`MAX_JSON_DEPTH` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _retry_headers(fault: Fault) -> dict[str, str]:
    if "retry_after_ms" in fault.params:
        return {"retry-after-ms": str(int(fault.params["retry_after_ms"]))}
    if "retry_after" in fault.params:
        return {"retry-after": f"{float(fault.params['retry_after']):g}"}
    return {}


def _reset(request: web.Request) -> None:
    """Reset the connection (RST, no response)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _SseResponse(web.StreamResponse):
    """A stream whose headers go out with its first events, in one write rather than two (a
    run without delays is written whole at its end); aiohttp before 3.12 sends them at
    ``prepare`` whatever this says."""

    _send_headers_immediately = False


class SseSink:
    """Writes events as SSE, applying ``cut`` (close after N events) and ``stall`` faults.

    Events are buffered until the engine is about to wait (``flush``) or the stream ends, so a
    run without delays costs one socket write instead of one per event. A cut or a stall takes
    effect at once (later events are dropped); what came before it is written at the next
    flush or at the end, then the connection is closed, or kept open and silent.
    """

    def __init__(
        self,
        response: web.StreamResponse,
        request: web.Request,
        fault: Fault | None,
        *,
        done: bool = True,
    ) -> None:
        self.response = response
        self.done = done
        self.request = request
        self.sent = 0
        self.dead = False  # no event is sent any more: cut, or the client went away
        self.stalled = False
        self._cut = False
        self._buffer: list[bytes] = []
        self._opened = False  # headers written (they wait for the first events)
        self._last_data = b"null"
        kind = fault.kind if fault is not None else None
        after = int(fault.params.get("after", 3)) if fault is not None else 0
        self.cut_after = after if kind == "cut" else None
        self.stall_after = after if kind == "stall" else None
        # Without a cut or stall to place, events go straight to the buffer, uncounted.
        self._direct = self.cut_after is None and self.stall_after is None

    def emit(self, event: str, data: Obj) -> None:
        """Serialise and send one event (dropped once the stream is cut, stalled or gone)."""
        if self.dead or self.stalled:
            return
        self._last_data = encoded = encode_json(data).encode()
        if self._direct:
            self._buffer += (EVENT_HEADS.get(event) or event_head(event), encoded, b"\n\n")
        else:
            self._send(sse_event(event, encoded))

    def emit_again(self, event: str) -> None:
        """Send one event with the previous event's data (encoded once)."""
        if self.dead or self.stalled:
            return
        if self._direct:
            self._buffer += (EVENT_HEADS.get(event) or event_head(event), self._last_data, b"\n\n")
        else:
            self._send(sse_event(event, self._last_data))

    def emit_encoded(self, event: str, encode: Callable[[], bytes]) -> None:
        """Send one event whose data ``encode()`` gives already encoded."""
        if self.dead or self.stalled:
            return
        self._last_data = encoded = encode()
        if self._direct:
            self._buffer += (EVENT_HEADS.get(event) or event_head(event), encoded, b"\n\n")
        else:
            self._send(sse_event(event, encoded))

    def emit_raw(self, chunk: bytes) -> None:
        """Send one already encoded event (a replayed log entry)."""
        if self.dead or self.stalled:
            return
        if self._direct:
            self._buffer.append(chunk)
        else:
            self._send(chunk)

    def _send(self, chunk: bytes) -> None:
        """Buffer one event, counting it, unless the cut or the stall comes first."""
        if self.cut_after is not None and self.sent >= self.cut_after:
            self.dead = self._cut = True
            return
        if self.stall_after is not None and self.sent >= self.stall_after:
            self.stalled = True
            return
        self._buffer.append(chunk)
        self.sent += 1

    async def flush(self) -> None:
        """Write the buffered events in one go (the engine calls this before it waits)."""
        if self._buffer or not self._opened:  # the first flush sends the headers, if nothing else
            data = b"".join(self._buffer)
            self._buffer.clear()
            if not self.dead or self._cut:
                try:
                    await self.response.write(data)
                    self._opened = True
                except (ConnectionError, RuntimeError):
                    self.dead = True  # the client went away; the run goes on without it
        if self._cut:
            self._cut = False
            if self.request.transport is not None:
                self.request.transport.close()  # flushes what was sent, then closes mid-stream

    async def finish(self, ctx: ServerContext) -> None:
        """Send ``done`` and end the stream; a stalled stream stays open until the client leaves."""
        if self.done and not (self.dead or self.stalled):
            self.emit_raw(_DONE)
        if self.stalled:
            await self.flush()
            await self._stall(ctx)
            return
        if self.dead:
            await self.flush()  # what came before a cut, then the close
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        try:
            await self.response.write_eof(data)
        except (ConnectionError, RuntimeError):
            self.dead = True

    async def _stall(self, ctx: ServerContext) -> None:
        deadline = asyncio.get_running_loop().time() + ctx.max_stall_s
        while asyncio.get_running_loop().time() < deadline and not ctx.closing.is_set():
            transport = self.request.transport
            if transport is None or transport.is_closing():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.closing.wait(), 0.1)
        self.dead = True
        if self.request.transport is not None:
            self.request.transport.close()


class _Control:
    """The /_emulator control endpoints for tests in another process.

    When the emulator runs with an API key, they demand it too (bearer or ``api-key``).
    """

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def _refuse(self, request: web.Request) -> web.Response | None:
        if self.ctx.api_key is None or request_key(request) == self.ctx.api_key:
            return None
        error = ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        return web.json_response(error.body(), status=401)

    async def stats(self, request: web.Request) -> web.Response:
        """GET /_emulator/stats."""
        refused = self._refuse(request)  # a Response is falsy (an empty mapping): no ``or``
        return refused if refused is not None else web.json_response(stats_snapshot(self.ctx))

    async def requests(self, request: web.Request) -> web.Response:
        """GET /_emulator/requests (``?limit=N`` for the last N)."""
        refused = self._refuse(request)
        if refused is not None:
            return refused
        items = self.ctx.requests
        limit = request.query.get("limit")
        if limit:
            try:
                count = int(limit)
            except ValueError:
                error = invalid(f"Invalid 'limit': expected an integer, got {limit!r}.")
                return web.json_response(error.body(), status=400)
            items = items[-count:] if count > 0 else []
        return web.json_response({"object": "list", "data": items})

    async def set_faults(self, request: web.Request) -> web.Response:
        """POST /_emulator/faults with ``{"spec": "429=0.1,..."}`` (empty spec: no faults)."""
        refused = self._refuse(request)
        if refused is not None:
            return refused
        try:
            body = await _read_json(request)
            spec = body.get("spec", "")
            if not isinstance(spec, str):
                raise FaultSpecError("spec must be a string")
            self.ctx.faults.spec = FaultSpec.parse(spec)
            if body.get("clear_rules"):
                self.ctx.faults.clear_rules()
        except ApiError as exc:
            return web.json_response(exc.body(), status=exc.status)
        except FaultSpecError as exc:
            return web.json_response(invalid(str(exc), param="spec").body(), status=400)
        return web.json_response({"spec": self.ctx.faults.spec.to_string()})

    async def inject(self, request: web.Request) -> web.Response:
        """POST /_emulator/inject with ``{"kind", "method", "path", "times", ...params}``."""
        refused = self._refuse(request)
        if refused is not None:
            return refused
        try:
            body = dict(await _read_json(request))
            kind = body.pop("kind", None)
            if not isinstance(kind, str):
                raise FaultSpecError("kind is required (a string)")
            rule = make_rule(
                kind,
                method=body.pop("method", None),
                path=body.pop("path", None),
                times=body.pop("times", 1),
                **body,
            )
        except ApiError as exc:
            return web.json_response(exc.body(), status=exc.status)
        except FaultSpecError as exc:
            return web.json_response(invalid(str(exc), param="kind").body(), status=400)
        self.ctx.faults.add_rule(rule)
        return web.json_response({"pending": self.ctx.faults.pending_rules})


def stats_snapshot(ctx: ServerContext) -> dict[str, Any]:
    """Counters: requests, runs, submissions, streams and injected faults by kind."""
    snapshot: dict[str, Any] = dict(ctx.stats)
    snapshot["faults"] = dict(ctx.faults.counts)
    snapshot["faults_total"] = sum(ctx.faults.counts.values())
    snapshot["pending_injected_faults"] = ctx.faults.pending_rules
    snapshot["active_runs"] = sum(
        1 for r in ctx.engine.store.runs.values() if r.obj["status"] in _ACTIVE
    )
    return snapshot


_ACTIVE = frozenset({"queued", "in_progress", "requires_action", "cancelling"})
