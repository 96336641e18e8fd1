"""``/healthz``, ``/readyz`` and ``/metrics`` of a worker, served on loopback by aiohttp.

* ``/healthz``: 200 while the process's event loop answers (liveness).
* ``/readyz``: 200 when the queue answers a ping within 2 s, the worker is not draining and
  no tool server (``[[mcp]]``) has failed and the model API answered one of the last
  connection attempts (``upstream_unreachable`` after 3 refused or timed-out connects in a
  row), else 503 with the reason (readiness: a load balancer or orchestrator stops routing);
  the body lists each tool server's state.
* ``/metrics``: Prometheus text format; queue gauges are refreshed on each scrape.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from runtime.worker.queue import QueueError
from runtime.worker.service import Worker
from runtime.worker.upstream import UpstreamTracker

__all__ = ["HealthServer", "HttpBindError"]

log = structlog.get_logger("runtime.worker")

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
    """

    def __init__(
        self,
        worker: Worker,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tool_sources: Callable[[], Mapping[str, str]] | None = None,
        upstream: UpstreamTracker | None = None,
    ) -> None:
        self._worker = worker
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

    async def _metrics(self, _request: web.Request) -> web.Response:
        metrics = self._worker.metrics
        metrics.observe_tool_sources(self._tool_sources())
        try:
            stats = await asyncio.wait_for(self._worker.queue.stats(), timeout=_PING_TIMEOUT_S)
            metrics.observe_queue(stats)
        except (QueueError, TimeoutError) as exc:
            log.warning("worker.metrics_queue_stats_failed", error=str(exc))
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
