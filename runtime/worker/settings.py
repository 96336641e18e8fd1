"""Worker settings: ``config/worker.toml`` + environment, validated by pydantic-settings.

Precedence, highest first: keyword overrides of :func:`load_worker_settings`, then
``RUNTIME_WORKER_*`` environment variables (nested keys with a double underscore:
``RUNTIME_WORKER_QUEUE__BACKEND=redis``, ``RUNTIME_WORKER_API__API_KEY=sk-...``), then
``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` for the ``api`` section, then the TOML file, then the
defaults below (they equal the shipped ``config/worker.toml``). The ``api``, ``retry``,
``policy`` and ``log`` sections are the runtime's own (:mod:`runtime.config`).

A relative path written in the TOML file (``queue.sqlite.path``) is relative to the directory
of that file, so every command reading the file finds the same queue whatever its working
directory; a relative path from the environment, an override or the default is relative to
the working directory.
"""

from __future__ import annotations

import importlib
import os
import socket
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from runtime.config import (
    ApiSettings,
    ConfigError,
    LogSettings,
    PacingSettings,
    PolicySettings,
    PriceSettings,
    RateLimitSettings,
    RetrySettings,
    Settings,
    TracingSettings,
    read_config_file,
)
from runtime.logging import redact, register_secret
from tools import ToolRegistry
from tools.mcp import MCPConfigError, MCPServer

__all__ = [
    "DEFAULT_WORKER_CONFIG",
    "HttpSettings",
    "McpServerSettings",
    "QueueSettings",
    "RedisSettings",
    "SqliteSettings",
    "WorkerSection",
    "WorkerSettings",
    "build_registry",
    "load_worker_settings",
]

DEFAULT_WORKER_CONFIG = Path(__file__).resolve().parents[2] / "config" / "worker.toml"

_toml_file: ContextVar[Path | None] = ContextVar("_worker_toml_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, use_attribute_docstrings=True
    )


class WorkerSection(_Section):
    """The worker process."""

    name: str = ""
    """Consumer name in the queue; empty means ``<hostname>-<pid>``."""
    concurrency: int = Field(default=4, ge=1)
    """Jobs processed at once by this process."""
    grace_period_s: float = Field(default=30.0, ge=0)
    """On SIGTERM/SIGINT: how long in-flight jobs may finish before their runs are cancelled."""
    claim_wait_s: float = Field(default=1.0, gt=0)
    """Longest wait of one claim for new jobs (how fast a drain or burst end is noticed)."""
    retry_delay_s: float = Field(default=2.0, ge=0)
    """A job whose attempt failed with an error is offered again after this delay."""
    burst: bool = False
    """Exit once the queue has no unfinished job (also ``--burst``)."""
    tune_collector: bool = True
    """At start-up, freeze what start-up allocated and make the garbage collector's full
    passes rare (:func:`runtime.fairness.tune_collector`): no pass of a tenth of a second on
    the loop of hundreds of jobs in flight. Off if your tools make many reference cycles."""
    job_deadline_s: float = Field(default=3600.0, gt=0)
    """The longest a job's run may take (its total deadline, unless [policy] total_deadline_s
    is shorter); past it the run is cancelled and the result is ``expired``."""
    model: str = "gpt-4o"
    """Responses protocol: the model of a job whose ``run_options`` name none (Assistants jobs
    use their assistant's model)."""
    tools: list[str] = Field(default_factory=lambda: ["tools.builtin:register_builtins"])
    """Tool sources, ``module:attribute``: a ToolRegistry whose tools are added, or a callable
    taking the worker's registry (like ``tools.builtin:register_builtins``)."""
    approval_expiry_s: float = Field(default=86_400.0, gt=0)
    """How long a job paused for approval waits for decisions; then its undecided calls are
    rejected ("approval timed out") and the run goes on. Never past an Assistants run's
    ``expires_at`` minus ``[policy] expiry_margin_s``."""


class SqliteSettings(_Section):
    """The ``sqlite`` backend."""

    path: str = "var/worker.db"
    """Database file; shared by workers on this node. Relative to the config file's directory
    when written in a config file, else to the working directory."""


class RedisSettings(_Section):
    """The ``redis`` backend."""

    url: str = "redis://127.0.0.1:6379/0"
    """Server URL, ``redis://[[user]:password@]host:port/db`` (env
    ``RUNTIME_WORKER_QUEUE__REDIS__URL``); the password is masked in reprs and logs."""
    prefix: str = "agent-runtime"
    """Key prefix; workers with the same prefix and group share one queue."""
    group: str = "workers"
    """Consumer group of the job stream."""
    maxlen: int = Field(default=100_000, ge=1)
    """Approximate cap of the job stream (XADD MAXLEN ~). Keep it above the largest backlog:
    trimming drops the oldest entries whether or not they were processed."""
    dead_maxlen: int = Field(default=10_000, ge=1)
    """Approximate cap of the dead-letter stream."""
    result_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)
    """Finished job records expire after this long (0: keep). Also the idempotency window."""

    def __repr_args__(self) -> Any:
        # The URL may carry a password: never show it in a repr (or a log of the settings).
        for name, value in super().__repr_args__():
            yield name, (redact(value) if name == "url" and isinstance(value, str) else value)

    @property
    def password(self) -> str | None:
        """The password of :attr:`url`, if any."""
        return urlsplit(self.url).password


class QueueSettings(_Section):
    """The job queue, common to all backends."""

    backend: Literal["memory", "sqlite", "redis"] = "sqlite"
    """``memory`` (in-process), ``sqlite`` (durable, one node) or ``redis`` (many nodes)."""
    lease_s: float = Field(default=30.0, gt=0)
    """A job whose worker has not heartbeated for this long is reclaimed by another worker."""
    heartbeat_s: float = Field(default=10.0, gt=0)
    """Interval of lease heartbeats; must be below ``lease_s`` (keep it well below)."""
    max_deliveries: int = Field(default=5, ge=1)
    """Deliveries after which a job without a result goes to the dead-letter store."""
    sqlite: SqliteSettings = SqliteSettings()
    redis: RedisSettings = RedisSettings()

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> QueueSettings:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError(
                f"queue.heartbeat_s ({self.heartbeat_s:g}) must be less than queue.lease_s "
                f"({self.lease_s:g}), or every lease lapses between two heartbeats"
            )
        return self


class McpServerSettings(_Section):
    """One ``[[mcp]]`` table: an MCP server whose tools join the worker's registry."""

    name: str
    """Short name: logs, error outputs and the default tool prefix (``NAME__tool``)."""
    transport: Literal["stdio", "http"] = "stdio"
    """``stdio`` starts ``command``; ``http`` connects to ``url`` (streamable HTTP)."""
    command: str | None = None
    """Executable of a stdio server."""
    args: list[str] = Field(default_factory=list, repr=False)
    """Its arguments."""
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    """Extra environment of the process (values are masked in logs)."""
    cwd: str | None = None
    """Working directory of the process."""
    url: str | None = None
    """Endpoint of an http server, e.g. ``http://127.0.0.1:8000/mcp``."""
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    """HTTP headers, e.g. ``Authorization`` (values are masked in logs)."""
    prefix: str = "{name}__"
    """Prepended to each tool name; ``""`` for none."""
    allow: list[str] | None = None
    """Only these tools (the server's names); unset for all."""
    deny: list[str] = Field(default_factory=list)
    """Never these tools."""
    timeout_s: float | None = Field(default=None, gt=0)
    """Per-call timeout of this server's tools (unset: ``policy.tool_timeout_s``)."""
    tool_timeouts: dict[str, float] = Field(default_factory=dict)
    """Per-call timeouts of single tools, by the server's tool name."""
    strict: bool = True
    """Strict-mode schemas where a tool's input schema allows them."""
    protocol: Literal["auto", "legacy"] = "auto"
    """``auto`` negotiates the newest MCP revision; ``legacy`` forces the 2025 handshake."""

    def to_server(self) -> MCPServer:
        """The :class:`tools.mcp.MCPServer` this table describes.

        Raises:
            ConfigError: the values do not make a usable server.
        """
        try:
            return MCPServer.from_mapping(self.model_dump())
        except MCPConfigError as exc:
            raise ConfigError([f"mcp: {exc}"]) from None


class HttpSettings(_Section):
    """Health and metrics endpoints."""

    enabled: bool = True
    """Serve ``/healthz``, ``/readyz`` and ``/metrics``."""
    host: str = "127.0.0.1"
    """Bind address; loopback by default (put a proxy in front to expose it)."""
    port: int = Field(default=9464, ge=0, le=65535)
    """Port; 0 picks a free one (logged as ``worker.http_started``)."""
    approval_token: str = ""
    """When set, ``POST /jobs/{job}/calls/{call}/approve|reject`` needs the header
    ``Authorization: Bearer <token>`` (env ``RUNTIME_WORKER_HTTP__APPROVAL_TOKEN``); empty:
    no token. Masked in reprs and logs."""

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, ("***" if name == "approval_token" and value else value)


class _WorkerToml(TomlConfigSettingsSource):
    """The TOML file, with relative paths in it resolved against the file's directory."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        # runtime.config's reader: unreadable, non-UTF-8, invalid or absurdly nested TOML
        # is a ConfigError naming the file, never a traceback.
        data = read_config_file(Path(file_path))
        sqlite = (
            data.get("queue", {}).get("sqlite") if isinstance(data.get("queue"), dict) else None
        )
        if isinstance(sqlite, dict) and isinstance(sqlite.get("path"), str):
            path = Path(sqlite["path"]).expanduser()
            if not path.is_absolute():
                sqlite["path"] = str(Path(file_path).resolve().parent / path)
        return data


class _VendorEnv(PydanticBaseSettingsSource):
    """``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` fill the ``api`` section."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        api = {
            key: os.environ[env]
            for key, env in (("api_key", "OPENAI_API_KEY"), ("base_url", "OPENAI_BASE_URL"))
            if os.environ.get(env, "").strip()
        }
        return {"api": api} if api else {}


class WorkerSettings(BaseSettings):
    """All settings of ``python -m runtime worker|submit|jobs``."""

    model_config = SettingsConfigDict(
        env_prefix="RUNTIME_WORKER_",
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    protocol: Literal["assistants", "responses"] = Field(
        default="assistants",
        description="Wire protocol of the jobs: the Assistants API (threads and runs) or the "
        "Responses API (env RUNTIME_WORKER_PROTOCOL).",
    )
    conversations: bool = Field(
        default=False,
        description="Responses: run each new job in a new Conversation, stored as the job's "
        "conversation_id (env RUNTIME_WORKER_CONVERSATIONS).",
    )
    worker: WorkerSection = WorkerSection()
    queue: QueueSettings = QueueSettings()
    http: HttpSettings = HttpSettings()
    api: ApiSettings = ApiSettings()
    retry: RetrySettings = RetrySettings()
    policy: PolicySettings = PolicySettings()
    log: LogSettings = LogSettings(format="json")
    tracing: TracingSettings = TracingSettings()
    pacing: PacingSettings = PacingSettings()
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    """``[prices."<model>"]``: USD per million tokens, for a job's cost and
    ``[policy.usage_limits] max_cost``."""
    rate_limits: dict[str, RateLimitSettings] = Field(default_factory=dict)
    """``[rate_limits."<model>"]``: the provider's limits by model, for ``[pacing]``."""
    mcp: list[McpServerSettings] = Field(default_factory=list)
    """``[[mcp]]`` tables: MCP servers whose tools join the registry (needs the ``mcp``
    extra)."""

    @field_validator("protocol", mode="before")
    @classmethod
    def _lower_protocol(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fleet_pacing_needs_redis(self) -> WorkerSettings:
        if self.pacing.enabled and self.pacing.store == "redis" and self.queue.backend != "redis":
            raise ValueError("pacing.store = 'redis' needs queue.backend = 'redis'")
        return self

    def runtime_settings(self) -> Settings:
        """The runtime's own :class:`~runtime.config.Settings` with this file's shared sections.

        Built without re-reading files or environment (this object already did), for
        :func:`runtime.backends.create_backend` and ``RunPolicy.from_settings``.
        """
        deadline = self.policy.total_deadline_s
        job_deadline = self.worker.job_deadline_s
        policy = self.policy.model_copy(
            update={
                "total_deadline_s": job_deadline
                if deadline is None
                else min(deadline, job_deadline)
            }
        )
        return Settings.model_construct(
            protocol=self.protocol,
            conversations=self.conversations,
            api=self.api,
            retry=self.retry,
            policy=policy,
            log=self.log,
            tracing=self.tracing,
            pacing=self.pacing,
            prices=self.prices,
            rate_limits=self.rate_limits,
        )

    @property
    def consumer_name(self) -> str:
        """The configured worker name or ``<hostname>-<pid>``."""
        return self.worker.name or f"{socket.gethostname()}-{os.getpid()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Overrides > RUNTIME_WORKER_* env > OPENAI_* env > TOML file > defaults."""
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            _VendorEnv(settings_cls),
        ]
        toml_file = _toml_file.get()
        if toml_file is not None:
            sources.append(_WorkerToml(settings_cls, toml_file=toml_file))
        return tuple(sources)


def load_worker_settings(path: str | Path | None = None, **overrides: Any) -> WorkerSettings:
    """Load worker settings.

    Args:
        path: the TOML file; ``None`` reads ``$RUNTIME_WORKER_CONFIG`` if set, else the
            repository's ``config/worker.toml`` if it exists, else defaults only.
        **overrides: top-level sections as dicts, e.g. ``queue={"backend": "memory"}``.

    Returns:
        The validated, frozen settings; the API key, the Redis password and the ``[[mcp]]``
        env and header values are registered for log redaction.

    Raises:
        ConfigError: a value is invalid, the file is missing or not valid TOML.
    """
    toml_file = _resolve(path)
    token = _toml_file.set(toml_file)
    try:
        settings = WorkerSettings(**overrides)
    except ValidationError as exc:
        issues = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(issues, toml_file) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], toml_file) from None
    finally:
        _toml_file.reset(token)
    for key in (settings.api.api_key, settings.api.azure_api_key):
        if key is not None:
            register_secret(key.get_secret_value())
    if settings.queue.redis.password:
        register_secret(settings.queue.redis.password)
    if settings.http.approval_token:
        register_secret(settings.http.approval_token)
    for server in settings.mcp:
        # A header's scheme is public ("Bearer ..."): its last word is the token itself.
        tokens = [value.split()[-1] for value in server.headers.values() if value.split()]
        for secret in (*server.env.values(), *server.headers.values(), *tokens):
            register_secret(secret)
    return settings


def _resolve(path: str | Path | None) -> Path | None:
    if path is None:
        env_path = os.environ.get("RUNTIME_WORKER_CONFIG", "").strip()
        if not env_path:
            return DEFAULT_WORKER_CONFIG if DEFAULT_WORKER_CONFIG.is_file() else None
        path = env_path
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ConfigError([f"config file not found: {resolved}"], None)
    return resolved


def build_registry(sources: list[str]) -> ToolRegistry:
    """Build the worker's tool registry from ``module:attribute`` sources.

    Args:
        sources: each names a ToolRegistry (its tools are added) or a callable that takes
            the registry and registers tools on it.

    Returns:
        The registry.

    Raises:
        ConfigError: a source cannot be imported or is neither kind.
    """
    registry = ToolRegistry()
    for source in sources:
        module_name, _, attr = source.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attr or "registry")
        except (ImportError, AttributeError) as exc:
            raise ConfigError([f"worker.tools: cannot load {source!r}: {exc}"]) from exc
        if isinstance(target, ToolRegistry):
            for tool in target:
                registry.add(tool)
        elif callable(target):
            target(registry)
        else:
            raise ConfigError([f"worker.tools: {source!r} is not a ToolRegistry or callable"])
    return registry
