"""The :class:`Emulator`: an in-process aiohttp server speaking the Assistants API (threads,
runs) and its successors, the Responses and Conversations APIs.

Retention: the emulator keeps at most ``max_retained`` (default 1000) objects of each kind —
assistants, threads, runs, responses, conversations — evicting the least recently used
(created, retrieved or updated) first; an active run or a running response is never evicted.
``max_retained=None`` (CLI ``--max-retained 0``) keeps everything, as a test that needs every
object of a very long session may want. The request log keeps the newest 20,000 entries.

Control endpoints (``/_emulator/stats``, ``/_emulator/requests``, ``/_emulator/faults``,
``/_emulator/inject``) demand the API key when the emulator runs with one
(:attr:`Emulator.control_headers` gives the headers to send).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from runtime.emulator.api import AssistantsApi
from runtime.emulator.engine import RunEngine, Store
from runtime.emulator.faults import FaultInjector, FaultSpec, make_rule
from runtime.emulator.http import ServerContext, build_app, stats_snapshot
from runtime.emulator.ids import IdFactory
from runtime.emulator.model import ScriptedModel
from runtime.emulator.objects import Obj
from runtime.emulator.ratelimit import RequestLimiter
from runtime.emulator.retention import DEFAULT_RETAINED
from runtime.emulator.scenario import Scenario


class EmulatorError(RuntimeError):
    """The emulator was misused (not started, bound to a remote host without consent, ...)."""


def is_loopback(host: str) -> bool:
    """Whether a host name or address is a loopback one."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Emulator:
    """A local, protocol-faithful Assistants, Responses and Conversations API server with a
    scripted model, faults and bounded retention (see the module doc).

    Use as ``async with Emulator() as emu:`` (or ``await emu.start()`` / ``await emu.aclose()``).
    A closed emulator cannot be started again.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        scenario: str | Path | Scenario | None = None,
        faults: FaultSpec | str | None = None,
        seed: int = 0,
        run_ttl_s: float = 600.0,
        api_key: str | None = None,
        delta_delay_s: float = 0.0,
        cancel_delay_s: float = 0.05,
        poll_after_ms: int = 100,
        allow_remote: bool = False,
        max_retained: int | None = DEFAULT_RETAINED,
        rate_limit_rpm: float | None = None,
        rate_limit_burst: float | None = None,
    ) -> None:
        """Configure the emulator (nothing is bound until :meth:`start`).

        Args:
            host: address to bind; only loopback unless ``allow_remote``.
            port: port to bind (0: an ephemeral one).
            scenario: a scenario TOML path (or a loaded :class:`Scenario`).
            faults: random fault spec (see :class:`FaultSpec`).
            seed: seed of ids and faults (when the spec sets none).
            run_ttl_s: seconds from run creation to ``expires_at``.
            api_key: the only key accepted (None: any non-empty key).
            delta_delay_s: pause between streamed deltas.
            cancel_delay_s: time spent in ``cancelling`` before ``cancelled``.
            poll_after_ms: value of ``openai-poll-after-ms`` on run retrieval.
            allow_remote: permit a non-loopback ``host``.
            max_retained: the most objects of each kind kept, least recently used evicted
                first (None: unbounded).
            rate_limit_rpm: model requests (create run, submit, create response) a minute
                per API key, answered 429 past it, with the service's ``x-ratelimit-*``
                headers (None: unlimited); see :mod:`runtime.emulator.ratelimit`.
            rate_limit_burst: most requests the limit lets through at once (default: one
                second's worth, at least one).
        """
        if not allow_remote and not is_loopback(host):
            raise EmulatorError(f"refusing to bind non-loopback host {host!r} without allow_remote")
        self.host = host
        self._port = port
        if isinstance(scenario, str | Path):
            scenario = Scenario.load(scenario)
        spec = FaultSpec.parse(faults) if isinstance(faults, str) else faults
        if spec is not None and spec.seed == 0 and seed:
            spec = dataclasses.replace(spec, seed=seed)
        self.seed = seed
        ids = IdFactory(seed)
        stats: Counter[str] = Counter()
        if max_retained is not None and max_retained < 1:
            raise EmulatorError("max_retained must be at least 1 (or None: unbounded)")
        engine = RunEngine(
            Store(max_retained),
            ScriptedModel(scenario),
            ids,
            stats,
            run_ttl_s=run_ttl_s,
            delta_delay_s=delta_delay_s,
            cancel_delay_s=cancel_delay_s,
        )
        self._ctx = ServerContext(
            api=AssistantsApi(engine, poll_after_ms=poll_after_ms),
            engine=engine,
            faults=FaultInjector(spec),
            ids=ids,
            stats=stats,
            api_key=api_key,
            retained=max_retained,
            limiter=None
            if rate_limit_rpm is None
            else RequestLimiter(rate_limit_rpm, rate_limit_burst),
        )
        self._runner: web.AppRunner | None = None
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> Emulator:
        """Bind and serve; returns self."""
        if self._closed:
            raise EmulatorError("this emulator was closed; create a new one")
        if self._runner is not None:
            return self
        runner = web.AppRunner(
            build_app(self._ctx), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port, backlog=2048)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if runner.addresses:
            self._port = int(runner.addresses[0][1])
        return self

    async def aclose(self) -> None:
        """Stop serving and reap every background task (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._ctx.closing.set()
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                await asyncio.shield(runner.cleanup())
        finally:
            await self._ctx.engine.aclose()

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._runner is None:
            raise EmulatorError("the emulator is not running")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL ``http://HOST:PORT/v1``."""
        return self.url + "/v1"

    @property
    def azure_endpoint(self) -> str:
        """Azure-style endpoint (``{endpoint}/openai/...?api-version=V``, header ``api-key``)."""
        return self.url

    @property
    def control_headers(self) -> dict[str, str]:
        """Headers for the ``/_emulator/...`` control endpoints (the key, when one is set)."""
        key = self._ctx.api_key
        return {} if key is None else {"Authorization": f"Bearer {key}"}

    # -- knobs and inspection ---------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request log: method, path, status, fault, request_id, json body, time."""
        return self._ctx.requests

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: requests, streams, runs_created, runs_<status>, tool_output_submissions,
        faults by kind, ..."""
        return stats_snapshot(self._ctx)

    @property
    def faults(self) -> FaultSpec:
        """The random fault spec in force (assign a FaultSpec, a spec string or None)."""
        return self._ctx.faults.spec

    @faults.setter
    def faults(self, spec: FaultSpec | str | None) -> None:
        if isinstance(spec, str):
            spec = FaultSpec.parse(spec)
        self._ctx.faults.spec = spec or FaultSpec()

    def inject(
        self,
        kind: str,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        **params: Any,
    ) -> None:
        """Give the next ``times`` matching API requests a fault.

        Args:
            kind: ``429``, ``500``, ``503``, ``reset``, ``reset_after``, ``500_after``, ``cut``,
                ``stall`` or ``slow``.
            method: HTTP method to match (None: any).
            path: regular expression searched in the path, e.g. ``r"/runs$"`` (None: any).
            times: number of requests to hit.
            **params: ``retry_after``/``retry_after_ms`` (429, 503), ``after`` (cut, stall),
                ``ms`` (slow).
        """
        self._ctx.faults.add_rule(make_rule(kind, method=method, path=path, times=times, **params))

    def clear_injected(self) -> None:
        """Drop injected faults that did not fire yet."""
        self._ctx.faults.clear_rules()

    def runs(self, thread_id: str) -> list[Obj]:
        """The runs of a thread, oldest first (live objects: do not modify)."""
        thread = self._ctx.engine.store.threads.get(thread_id)
        return [] if thread is None else [r.obj for r in thread.runs.values()]

    def get_run(self, run_id: str) -> Obj:
        """A run object by id (KeyError if unknown)."""
        return self._ctx.engine.store.runs[run_id].obj

    def messages(self, thread_id: str) -> list[Obj]:
        """The messages of a thread, oldest first."""
        thread = self._ctx.engine.store.threads.get(thread_id)
        return [] if thread is None else list(thread.messages.values())

    def steps(self, run_id: str) -> list[Obj]:
        """The steps of a run, oldest first."""
        return list(self._ctx.engine.store.runs[run_id].steps.values())

    def responses(self) -> list[Obj]:
        """The stored responses, least recently used first (live objects: do not modify)."""
        api = self._ctx.responses
        return [] if api is None else [state.obj for state in api.responses.values()]

    def conversation_items(self, conversation_id: str) -> list[Obj]:
        """The items of a conversation, oldest first (KeyError if unknown)."""
        api = self._ctx.responses
        state = None if api is None else api.conversations.conversations.peek(conversation_id)
        if state is None:
            raise KeyError(conversation_id)
        return list(state.items.values())

    def set_scenario(self, scenario: str | Path | Scenario | None) -> None:
        """Replace the scenario (its cursor starts at the first turn)."""
        if isinstance(scenario, str | Path):
            scenario = Scenario.load(scenario)
        self._ctx.engine.model.scenario = scenario

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._runner else "new")
        return f"<Emulator {self.host}:{self._port} {state}>"
