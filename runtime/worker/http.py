"""``/healthz``, ``/readyz`` and ``/metrics`` of a worker, served on loopback by aiohttp.

* ``/healthz``: 200 while the process's event loop answers (liveness).
* ``/readyz``: 200 when the queue answers a ping within 2 s, the worker is not draining and
  no tool server (``[[mcp]]``) has failed and the model API answered one of the last
  connection attempts (``upstream_unreachable`` after 3 refused or timed-out connects in a
  row), else 503 with the reason (readiness: a load balancer or orchestrator stops routing);
  the body lists each tool server's state.
* ``/metrics``: Prometheus text format; queue gauges are refreshed on each scrape.
* ``POST /jobs/{job}/calls/{call}/approve`` and ``.../reject``: a decision on a call of a job
  paused for approval (JSON body ``{"reason": "...", "by": "..."}``, the reason required to
  reject). 200 ``{"outcome": "recorded" | "queued" | "unchanged"}``; 409 with the error for a
  decision the job cannot take; 401 without ``Authorization: Bearer <token>`` when
  ``http.approval_token`` is set. Every decision is recorded with who and when.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from runtime.logging import ModuleLogger
from runtime.worker.approvals import DecisionError, decide
from runtime.worker.models import DecisionRecord
from runtime.worker.queue import QueueError
from runtime.worker.service import Worker
from runtime.worker.upstream import UpstreamTracker

__all__ = ["HealthServer", "HttpBindError"]

log = ModuleLogger("runtime.worker")

_PING_TIMEOUT_S = 2.0


class HttpBindError(RuntimeError):
    """The health/metrics port cannot be bound (another worker on this node uses it, ...).

    Attributes:
        host: the bind address.
        port: the port asked for.
    """

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(
            f"cannot serve /healthz and /metrics on {host}:{port} ({reason}); give each worker "
            "on a node its own http.port (env RUNTIME_WORKER_HTTP__PORT; 0 picks a free one) "
            "or set http.enabled = false"
        )
        self.host = host
        self.port = port


class HealthServer:
    """The worker's HTTP endpoints.

    Args:
        worker: the worker to report on.
        host: bind address (loopback by default).
        port: port; 0 picks a free one (see :attr:`port` after :meth:`start`).
        tool_sources: the tool servers' states by name (``connected``, ``restarting``,
            ``failed``, ...), read on each request.
        upstream: the model API client's transport tracker (None: not reported).
        approval_token: the bearer token the decision endpoints require (None: none).
    """

    def __init__(
        self,
        worker: Worker,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tool_sources: Callable[[], Mapping[str, str]] | None = None,
        upstream: UpstreamTracker | None = None,
        approval_token: str | None = None,
    ) -> None:
        self._worker = worker
        self._token = approval_token or None
        self._upstream = upstream
        self._tool_sources = tool_sources or dict
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self._host}:{self._port}"

    def app(self) -> web.Application:
        """The aiohttp application (routes only)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/jobs/{job}/calls/{call}/{verb:approve|reject}", self._decide)
        return app

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            HttpBindError: the address cannot be bound (port in use, address not local).
        """
        # Binding the socket ourselves tells us the port when 0 asked for any free one.
        sock = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise HttpBindError(self._host, self._port, exc.strerror or str(exc)) from None
        self._port = int(sock.getsockname()[1])
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        log.info("worker.http_started", host=self._host, port=self._port)

    async def aclose(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "in_flight": self._worker.in_flight})

    async def _readyz(self, _request: web.Request) -> web.Response:
        sources = dict(self._tool_sources())
        if self._worker.draining:
            return web.json_response({"status": "draining", "mcp": sources}, status=503)
        try:
            await asyncio.wait_for(self._worker.queue.ping(), timeout=_PING_TIMEOUT_S)
        except (QueueError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            body = {"status": "queue_unreachable", "error": reason, "mcp": sources}
            return web.json_response(body, status=503)
        upstream = self._upstream
        if upstream is not None and upstream.unreachable:
            unreachable: dict[str, object] = {
                "status": "upstream_unreachable",
                "error": upstream.last_error,
                "failures": upstream.failures,
                "mcp": sources,
            }
            return web.json_response(unreachable, status=503)
        failed = sorted(name for name, status in sources.items() if status == "failed")
        if failed:
            body = {"status": "tool_source_failed", "failed": failed, "mcp": sources}
            return web.json_response(body, status=503)
        return web.json_response({"status": "ready", "mcp": sources})

    async def _decide(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "a valid bearer token is required"}, status=401)
        body = await _json_body(request)
        if body is None:
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        approved = request.match_info["verb"] == "approve"
        reason, by = body.get("reason"), body.get("by")
        if not (reason is None or isinstance(reason, str)) or not (
            by is None or isinstance(by, str)
        ):
            return web.json_response({"error": "reason and by must be strings"}, status=400)
        decision = DecisionRecord(approved=approved, reason=reason, by=by or "http")
        job_id, call_id = request.match_info["job"], request.match_info["call"]
        try:
            outcome = await decide(self._worker.queue, job_id, call_id, decision)
        except DecisionError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        except (QueueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=503)
        log.info(
            "worker.decision_recorded",
            job_id=job_id,
            tool_call_id=call_id,
            approved=approved,
            by=decision.by,
            outcome=outcome,
        )
        return web.json_response({"outcome": outcome})

    def _authorised(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        header = request.headers.get("Authorization", "")
        expected = f"Bearer {self._token}"
        return hmac.compare_digest(header.encode(), expected.encode())

    async def _metrics(self, _request: web.Request) -> web.Response:
        metrics = self._worker.metrics
        metrics.observe_tool_sources(self._tool_sources())
        try:
            stats = await asyncio.wait_for(self._worker.queue.stats(), timeout=_PING_TIMEOUT_S)
            metrics.observe_queue(stats)
        except (QueueError, TimeoutError) as exc:
            log.warning("worker.metrics_queue_stats_failed", error=str(exc))
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
