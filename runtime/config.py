"""Runtime settings: ``config/runtime.toml`` + environment, validated by pydantic-settings.

Precedence, highest first:

1. keyword overrides passed to :func:`load_settings`;
2. ``RUNTIME_*`` environment variables; nested keys use a double underscore,
   ``RUNTIME_<SECTION>__<KEY>`` (``RUNTIME_POLICY__MAX_TOOL_ROUNDS=4``);
3. the vendor variables ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``AZURE_OPENAI_ENDPOINT``,
   ``AZURE_OPENAI_API_KEY`` and ``OPENAI_API_VERSION`` (section ``api``);
4. the TOML file (``path`` argument, else ``$RUNTIME_CONFIG``, else the repository's
   ``config/runtime.toml`` when it exists);
5. the defaults declared below (they equal the shipped TOML file).

Invalid values raise :class:`ConfigError` naming every bad key; API keys are
:class:`pydantic.SecretStr` and never appear in reprs or error messages.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from runtime.logging import redact, register_secret

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "ApiSettings",
    "ConfigError",
    "DemoSettings",
    "LogSettings",
    "PacingSettings",
    "PolicySettings",
    "RateLimitSettings",
    "RetrySettings",
    "Settings",
    "TracingSettings",
    "enable_tracing",
    "load_settings",
    "read_config_file",
]

CONFIG_ENV_VAR = "RUNTIME_CONFIG"
"""Environment variable naming the TOML file :func:`load_settings` reads by default."""

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "config" / "runtime.toml"
"""The repository's config file; absent when installed from a wheel (defaults apply then)."""

# Vendor variable -> field of the ``api`` section.
_VENDOR_ENV: dict[str, str] = {
    "OPENAI_API_KEY": "api_key",
    "OPENAI_BASE_URL": "base_url",
    "AZURE_OPENAI_ENDPOINT": "azure_endpoint",
    "AZURE_OPENAI_API_KEY": "azure_api_key",
    "OPENAI_API_VERSION": "api_version",
}

# Field names whose input must never be echoed in an error message.
_SECRET_FIELDS = frozenset({"api_key", "azure_api_key"})

# The parsed TOML file of the current load_settings() call; a ContextVar so that concurrent
# loads (threads, tasks) cannot see each other's file.
_toml_data: ContextVar[dict[str, Any] | None] = ContextVar("runtime_config_toml", default=None)

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class ConfigError(ValueError):
    """Invalid configuration: a bad value, an unreadable file or malformed TOML.

    Attributes:
        issues: one ``"dotted.key: message (got value)"`` line per problem; values of
            secret fields are never included.
        source: the TOML file that was read, if any.
    """

    def __init__(self, issues: list[str], source: Path | None = None) -> None:
        self.issues = tuple(issues)
        self.source = source
        origin = f" (file {source})" if source else ""
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"invalid runtime configuration{origin}:\n{lines}")


class _Section(BaseModel):
    """Base of every settings section: unknown keys are typos, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _optional_url(value: Any) -> Any:
    """Blank means unset; a URL must be http(s) and loses its trailing slash."""
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")
    return value


def _blank_to_none(value: Any) -> Any:
    """An empty string (e.g. ``OPENAI_API_KEY=``) means the setting is unset."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


OptionalUrl = Annotated[str | None, BeforeValidator(_optional_url)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_blank_to_none)]
OptionalStr = Annotated[str | None, BeforeValidator(_blank_to_none)]


class ApiSettings(_Section):
    """Where the server is and how to talk to it."""

    base_url: OptionalUrl = None
    """OpenAI-style base URL including ``/v1`` (env ``OPENAI_BASE_URL``)."""
    api_key: OptionalSecret = None
    """Bearer key for OpenAI-style servers (env ``OPENAI_API_KEY``)."""
    azure_endpoint: OptionalUrl = None
    """Azure resource endpoint, e.g. ``https://RES.openai.azure.com`` (env ``AZURE_OPENAI_ENDPOINT``)."""
    azure_api_key: OptionalSecret = None
    """``api-key`` header value for Azure (env ``AZURE_OPENAI_API_KEY``)."""
    api_version: str = Field(default="2024-08-01-preview", min_length=1)
    """Azure ``api-version`` query parameter (env ``OPENAI_API_VERSION``)."""
    organization: OptionalStr = None
    """``OpenAI-Organization`` header."""
    project: OptionalStr = None
    """``OpenAI-Project`` header."""
    connect_timeout_s: PositiveFloat = 10.0
    """TCP + TLS connect timeout."""
    read_timeout_s: PositiveFloat = 60.0
    """Whole-request timeout of non-stream requests."""
    stream_idle_timeout_s: PositiveFloat = 60.0
    """Maximum seconds between two stream events before the stream counts as lost."""
    max_connections: PositiveInt = 100
    """Connection pool size of the HTTP session."""
    max_event_bytes: Annotated[int, Field(ge=1024)] = 8_388_608
    """Largest accepted SSE event; larger ones are a protocol error."""


class RetrySettings(_Section):
    """Retries of API requests (connection errors, timeouts, 408, 409, 429, 5xx)."""

    max_attempts: PositiveInt = 5
    """Attempts per request including the first one."""
    initial_wait_s: NonNegativeFloat = 0.5
    """First backoff wait; doubles per attempt."""
    max_wait_s: NonNegativeFloat = 20.0
    """Cap of one backoff wait."""
    jitter_s: NonNegativeFloat = 0.5
    """Random extra wait in ``[0, jitter_s]`` added to each backoff."""
    respect_retry_after: bool = True
    """Wait what ``retry-after`` / ``retry-after-ms`` ask for (capped below)."""
    max_retry_after_s: NonNegativeFloat = 60.0
    """Cap of a server-requested wait."""

    @model_validator(mode="after")
    def _wait_order(self) -> RetrySettings:
        if self.max_wait_s < self.initial_wait_s:
            raise ValueError("max_wait_s must be >= initial_wait_s")
        return self


class UsageLimitsSettings(_Section):
    """``[policy.usage_limits]``: most a run may use (unset: no limit); see
    :class:`runtime.core.limits.UsageLimits`."""

    max_requests: PositiveInt | None = None
    """Requests that create or continue a turn (starts, tool-output submissions, reruns)."""
    max_input_tokens: PositiveInt | None = None
    """Input tokens over the run."""
    max_output_tokens: PositiveInt | None = None
    """Output tokens over the run."""
    max_total_tokens: PositiveInt | None = None
    """Total tokens over the run."""
    max_tool_calls: NonNegativeInt | None = None
    """Tool calls executed over the run."""
    max_cost: PositiveFloat | None = None
    """Cost in USD, from ``[prices]`` (a model without a price stops the run)."""

    def any(self) -> bool:
        """True when some limit is set."""
        return any(v is not None for v in self.model_dump().values())


class PriceSettings(_Section):
    """``[prices."<model>"]``: what a model costs, in USD per million tokens."""

    input_per_million: NonNegativeFloat
    """Input tokens not served from the prompt cache."""
    output_per_million: NonNegativeFloat
    """Output tokens."""
    cached_input_per_million: NonNegativeFloat | None = None
    """Cached input tokens (unset: the input price)."""


class PolicySettings(_Section):
    """The run policy: tool limits, expiry, busy threads, polling, reruns."""

    expiry_margin_s: NonNegativeFloat = 10.0
    """Tool batches must be submitted this long before the run's ``expires_at``."""
    max_tool_rounds: PositiveInt = 16
    """``requires_action`` rounds per run; one more cancels the run."""
    max_tool_calls: PositiveInt = 128
    """Tool calls per run over all rounds."""
    tool_timeout_s: PositiveFloat = 60.0
    """Timeout of one tool call."""
    max_tool_concurrency: PositiveInt = 32
    """Tool calls executing at once within one run."""
    max_output_chars: PositiveInt = 32_768
    """Tool outputs longer than this are truncated."""
    busy_thread: Literal["wait", "cancel", "fail"] = "wait"
    """When the thread already has an active run: wait for it, cancel it, or fail."""
    busy_wait_s: NonNegativeFloat = 120.0
    """How long ``busy_thread = "wait"`` waits for the active run to end."""
    cancel_wait_s: NonNegativeFloat = 10.0
    """How long a cancellation waits for the server to report ``cancelled``."""
    poll_interval_s: PositiveFloat = 1.0
    """First interval of polling after a lost stream."""
    max_poll_interval_s: PositiveFloat = 5.0
    """Cap of the polling interval."""
    rerun_on_server_error: bool = False
    """Start a new run when a run fails with ``server_error``."""
    max_reruns: NonNegativeInt = 1
    """Bound of those reruns."""
    total_deadline_s: PositiveFloat | None = None
    """Whole-run deadline (Responses protocol; Assistants runs have ``expires_at``)."""
    log_tool_payloads: bool = False
    """Log tool arguments and outputs (they may hold user data)."""
    approval_timeout: Literal["reject", "expire"] = "reject"
    """A pause for approval that reaches ``expires_at - expiry_margin_s``: reject or expire."""
    max_repeated_calls: PositiveInt | None = 3
    """The same tool with the same arguments requested this often in one run stops it."""
    usage_limits: UsageLimitsSettings = UsageLimitsSettings()
    """Most a run may use; a run that reached a limit is cancelled before its next request."""

    @model_validator(mode="after")
    def _poll_order(self) -> PolicySettings:
        if self.max_poll_interval_s < self.poll_interval_s:
            raise ValueError("max_poll_interval_s must be >= poll_interval_s")
        return self


class LogSettings(_Section):
    """Logging (see :func:`runtime.logging.configure_logging`)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Minimum level, case-insensitive."""
    format: Literal["auto", "console", "json"] = "auto"
    """``auto``: console renderer on a TTY, JSON lines otherwise."""

    @field_validator("level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("format", mode="before")
    @classmethod
    def _lower_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class RateLimitSettings(_Section):
    """``[rate_limits."<model>"]``: the provider's limits of one model (or ``default``), for
    ``[pacing]``."""

    requests_per_minute: PositiveFloat | None = None
    """Requests a minute (None: not limited, or learned from the service's headers)."""
    tokens_per_minute: PositiveFloat | None = None
    """Tokens a minute (a request's tokens are estimated from its size)."""


class PacingSettings(_Section):
    """Rate pacing: a token bucket per model and API key (see :mod:`runtime.pacing`)."""

    enabled: bool = False
    """Pace the requests that make the model work (create, submit, response)."""
    store: Literal["memory", "redis"] = "memory"
    """``memory``: the buckets of this process; ``redis``: the worker fleet's, in the
    Redis of ``[queue.redis]`` (worker only)."""
    burst_s: PositiveFloat = 1.0
    """A bucket holds what refills in this many seconds (at least one request)."""
    max_wait_s: PositiveFloat = 60.0
    """Longest wait of one request for its bucket; past it the request fails, unsent
    (``PacingTimeout``). A run's own deadline bounds the wait too."""
    learn_from_headers: bool = True
    """Take the limits a model has no ``[rate_limits]`` table for from the service's
    ``x-ratelimit-limit-*`` headers."""


class TracingSettings(_Section):
    """OpenTelemetry traces and metrics of runs (see :mod:`runtime.otel`; needs the ``otel``
    extra). Spans go to the globally configured SDK (e.g. ``opentelemetry-instrument``, or
    ``OTEL_*`` environment variables read by the SDK)."""

    enabled: bool = False
    """Trace every run: ``invoke_agent``, ``chat`` and ``execute_tool`` spans."""
    record_payloads: bool = False
    """Put inputs, outputs and tool arguments on spans (redacted; they hold personal data)."""
    console: bool = False
    """Write every finished span to stderr as one JSON line instead of to the global SDK
    (needs ``opentelemetry-sdk``): a look at traces without a collector."""


class DemoSettings(_Section):
    """``python -m runtime demo``."""

    delta_delay_s: NonNegativeFloat = 0.01
    """Pause between two streamed text deltas of the embedded emulator."""


class _VendorEnvSource(PydanticBaseSettingsSource):
    """Reads the vendor variables (``OPENAI_API_KEY`` ...) into the ``api`` section."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ builds the whole dict

    def __call__(self) -> dict[str, Any]:
        api = {key: os.environ[env] for env, key in _VENDOR_ENV.items() if env in os.environ}
        return {"api": api} if api else {}


class _TomlDataSource(InitSettingsSource):
    """The TOML file, parsed by :func:`read_config_file` (typed errors) rather than by
    ``TomlConfigSettingsSource``, which does the same with the data once it has read it."""


class Settings(BaseSettings):
    """All runtime settings, by section.

    ``Settings()`` reads defaults + environment only; :func:`load_settings` adds the TOML
    file and turns validation errors into :class:`ConfigError`.
    """

    model_config = SettingsConfigDict(
        env_prefix="RUNTIME_",
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    protocol: Literal["assistants", "responses"] = "assistants"
    """Wire protocol: the Assistants API (threads and runs) or the Responses API."""
    conversations: bool = False
    """Responses: run each new run in a new Conversation (the Threads successor), so it can be
    continued by the conversation's id; off: responses chained by previous_response_id."""
    api: ApiSettings = ApiSettings()
    retry: RetrySettings = RetrySettings()
    policy: PolicySettings = PolicySettings()
    log: LogSettings = LogSettings()
    tracing: TracingSettings = TracingSettings()
    pacing: PacingSettings = PacingSettings()
    demo: DemoSettings = DemoSettings()
    prices: dict[str, PriceSettings] = {}
    """``[prices."<model>"]``: USD per million tokens, for a run's cost and ``max_cost``."""
    rate_limits: dict[str, RateLimitSettings] = {}
    """``[rate_limits."<model>"]``: the provider's limits by model for ``[pacing]``;
    ``default`` for other models and requests naming none."""

    @field_validator("protocol", mode="before")
    @classmethod
    def _lower_protocol(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def uses_azure(self) -> bool:
        """True when an Azure endpoint is configured (it wins over ``base_url``)."""
        return self.api.azure_endpoint is not None

    @property
    def effective_api_key(self) -> SecretStr | None:
        """The key for the chosen style: Azure prefers ``azure_api_key`` over ``api_key``."""
        if self.uses_azure and self.api.azure_api_key is not None:
            return self.api.azure_api_key
        return self.api.api_key

    @property
    def has_remote_server(self) -> bool:
        """True when a key and a server address (base URL or Azure endpoint) are configured."""
        has_address = self.api.base_url is not None or self.uses_azure
        return has_address and self.effective_api_key is not None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Overrides > RUNTIME_* env > vendor env > TOML file > defaults (no .env files)."""
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            _VendorEnvSource(settings_cls),
        ]
        toml_data = _toml_data.get()
        if toml_data is not None:
            sources.append(_TomlDataSource(settings_cls, toml_data))
        return tuple(sources)


_SECTIONS = frozenset(
    name
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from a TOML file, the environment and keyword overrides.

    Args:
        path: TOML file. ``None`` means ``$RUNTIME_CONFIG`` if set, else the repository's
            ``config/runtime.toml`` if it exists, else defaults only. An explicit path (or
            ``$RUNTIME_CONFIG``) that does not exist is an error.
        **overrides: highest-priority values; a section takes a dict
            (``policy={"max_tool_rounds": 4}``) merged into the other sources, and
            ``section__key=value`` is accepted as a shortcut (``policy__max_tool_rounds=4``).

    Returns:
        The validated, frozen settings. Configured API keys are registered with
        :func:`runtime.logging.register_secret` so logs mask them.

    Raises:
        ConfigError: a value is invalid, the file is missing, unreadable, not UTF-8 or not
            valid TOML, or a value is nested too deeply.
    """
    toml_file = _resolve_path(path)
    token = _toml_data.set(None if toml_file is None else read_config_file(toml_file))
    try:
        settings = Settings(**_nest_overrides(overrides))
    except ValidationError as exc:
        raise ConfigError(_describe(exc), toml_file) from None  # the cause may echo secrets
    except SettingsError as exc:
        raise ConfigError([redact(str(exc))], toml_file) from None
    except RecursionError:  # e.g. a JSON value of a RUNTIME_* variable
        raise ConfigError(["a value is nested too deeply"], toml_file) from None
    finally:
        _toml_data.reset(token)
    for key in (settings.api.api_key, settings.api.azure_api_key):
        if key is not None:
            register_secret(key.get_secret_value())
    return settings


def read_config_file(path: Path) -> dict[str, Any]:
    """Read and parse a TOML config file.

    Args:
        path: the file.

    Returns:
        The parsed document.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8, is not valid TOML, or nests
            arrays or tables too deeply to parse; ``source`` is the file.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([f"cannot read the config file: {reason}"], path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [f"not UTF-8 text: byte 0x{raw[exc.start]:02x} on line {line} cannot be decoded"],
            path,
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {redact(str(exc))}"], path) from None
    except RecursionError:
        raise ConfigError(["not valid TOML: arrays or tables nested too deeply"], path) from None


def _resolve_path(path: str | Path | None) -> Path | None:
    """Pick the TOML file to read; only the implicit repository default may be absent."""
    if path is None:
        env_path = os.environ.get(CONFIG_ENV_VAR, "").strip()
        if not env_path:
            return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None
        path = env_path
    try:
        resolved = Path(path).expanduser()
    except RuntimeError as exc:  # "~user/..." for an unknown user
        raise ConfigError([f"config path {str(path)!r}: {exc}"], None) from None
    if not resolved.is_file():
        raise ConfigError([f"config file not found: {resolved}"], None)
    return resolved


def _nest_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Turn ``policy__max_tool_rounds=4`` into ``{"policy": {"max_tool_rounds": 4}}``."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        section, sep, field = key.partition("__")
        if not sep:
            nested[key] = value
            continue
        target = nested.setdefault(section, {})
        if isinstance(target, BaseModel):
            target = nested[section] = target.model_dump()
        if isinstance(target, dict):
            target[field] = value
        else:  # a non-dict section value: let validation report it
            nested[key] = value
    return nested


def _describe(exc: ValidationError) -> list[str]:
    """One safe line per validation error: dotted key, message, and the value if harmless."""
    issues = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc) or "(root)"
        message = error["msg"].removeprefix("Value error, ")
        shown = _safe_input(loc, error.get("input"))
        issues.append(f"{key}: {message}" + (f" (got {shown})" if shown is not None else ""))
    return issues


def _safe_input(loc: list[str], value: Any) -> str | None:
    """Repr of a scalar input, or None for secrets and containers (which may hold secrets)."""
    if _SECRET_FIELDS.intersection(loc) or (len(loc) == 1 and loc[0] in _SECTIONS):
        return None  # a scalar where a section belongs could be a misplaced key
    if not isinstance(value, str | int | float | bool):
        return None
    # Unquoted so "(got -1)" reads the same from TOML and from an environment variable.
    text = value if isinstance(value, str) and value.strip() else repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return redact(text)


def enable_tracing(settings: Any) -> bool:
    """Trace runs when the settings' ``[tracing]`` section says ``enabled`` (with the
    OpenTelemetry globals: see :func:`runtime.otel.instrument`); answers whether it did.

    Raises:
        runtime.config.ConfigError: tracing is enabled but the ``otel`` extra is missing.
    """
    section = getattr(settings, "tracing", None)
    if section is None or not section.enabled:
        return False
    try:
        from runtime.otel import console_provider, instrument
    except ImportError as exc:
        raise ConfigError(
            ["tracing.enabled: needs OpenTelemetry: pip install 'agent-runtime[otel]'"]
        ) from exc
    provider = None
    if section.console:
        try:
            provider = console_provider()
        except ImportError as exc:
            raise ConfigError(
                ["tracing.console: needs the OpenTelemetry SDK: pip install opentelemetry-sdk"]
            ) from exc
    instrument(provider, record_payloads=section.record_payloads)
    return True
