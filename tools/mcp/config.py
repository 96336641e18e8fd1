"""``MCPServer``: how to reach one MCP server and which of its tools to expose."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from tools.registry import validate_name

Transport = Literal["stdio", "http"]

DEFAULT_PREFIX = "{name}__"


class MCPConfigError(ValueError):
    """An MCP server configuration is invalid."""


@dataclass(frozen=True)
class MCPServer:
    """One MCP server used as a tool source.

    ``env`` values and ``headers`` never appear in the repr or the logs (they often hold
    tokens); neither do ``args`` (command lines can carry them too).

    Attributes:
        name: short identifier, used in logs, error outputs and the default tool prefix.
        transport: ``"stdio"`` (start ``command`` and talk over its stdin/stdout) or
            ``"http"`` (streamable HTTP at ``url``).
        command: executable to start (stdio).
        args: its arguments (stdio).
        env: extra environment variables for the process (stdio), merged over a minimal
            inherited set (HOME, PATH, ...).
        cwd: working directory of the process (stdio).
        url: endpoint of the server (http), e.g. ``http://127.0.0.1:8000/mcp``.
        headers: HTTP headers sent with every request (http), e.g. ``Authorization``.
        prefix: prepended to each tool name (``{name}`` is replaced by the server's name);
            ``""`` for none. Default ``"{name}__"``: ``files__read``.
        allow: only these tool names (the server's names, without prefix); None for all.
        deny: never these tool names (applied after ``allow``).
        timeout_s: per-call timeout of every tool of this server (None: the dispatcher's).
        tool_timeouts: per-call timeout of single tools, by the server's tool name.
        strict: ask for strict-mode schemas where a tool's input schema allows it.
        protocol: ``"auto"`` negotiates the newest MCP revision both sides speak (servers of
            2025 get the initialize handshake); ``"legacy"`` always uses the handshake.
    """

    name: str
    transport: Transport = "stdio"
    command: str | None = None
    args: tuple[str, ...] = field(default=(), repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    prefix: str = DEFAULT_PREFIX
    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()
    timeout_s: float | None = None
    tool_timeouts: Mapping[str, float] = field(default_factory=dict)
    strict: bool = True
    protocol: Literal["auto", "legacy"] = "auto"

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise MCPConfigError(
                f"invalid MCP server name {self.name!r}: use letters, digits, '_' and '-'"
            )
        if self.transport == "stdio":
            if not self.command:
                raise MCPConfigError(f"MCP server {self.name!r}: stdio needs a command")
        elif self.transport == "http":
            if not self.url or urlsplit(self.url).scheme not in ("http", "https"):
                raise MCPConfigError(f"MCP server {self.name!r}: http needs an http(s):// url")
        else:
            raise MCPConfigError(
                f"MCP server {self.name!r}: transport must be 'stdio' or 'http', "
                f"got {self.transport!r}"
            )
        if self.protocol not in ("auto", "legacy"):
            raise MCPConfigError(
                f"MCP server {self.name!r}: protocol must be 'auto' or 'legacy', "
                f"got {self.protocol!r}"
            )
        for timeout in (self.timeout_s, *self.tool_timeouts.values()):
            if timeout is not None and (math.isnan(timeout) or timeout <= 0):
                raise MCPConfigError(f"MCP server {self.name!r}: timeouts must be > 0")
        # Coerce list inputs (TOML arrays, CLI lists) so the config stays hashable-ish.
        object.__setattr__(self, "args", tuple(self.args))
        if self.allow is not None:
            object.__setattr__(self, "allow", frozenset(self.allow))
        object.__setattr__(self, "deny", frozenset(self.deny))
        if self.prefix:
            validate_prefix = self.tool_prefix + "x"
            try:
                validate_name(validate_prefix)
            except ValueError:
                raise MCPConfigError(
                    f"MCP server {self.name!r}: prefix {self.tool_prefix!r} may only hold "
                    "a-z, A-Z, 0-9, '_' and '-'"
                ) from None

    @property
    def tool_prefix(self) -> str:
        """The prefix with ``{name}`` filled in."""
        return self.prefix.replace("{name}", self.name)

    def exposes(self, tool_name: str) -> bool:
        """Whether the server's tool named tool_name passes ``allow`` and ``deny``."""
        if self.allow is not None and tool_name not in self.allow:
            return False
        return tool_name not in self.deny

    def timeout_for(self, tool_name: str) -> float | None:
        """The per-call timeout of the server's tool named tool_name."""
        return self.tool_timeouts.get(tool_name, self.timeout_s)

    def describe(self) -> str:
        """Where the server is, without secrets: the executable, or the url sans query."""
        if self.transport == "stdio":
            return str(self.command)
        parts = urlsplit(str(self.url))
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    @classmethod
    def from_spec(cls, spec: str, **options: Any) -> MCPServer:
        """Parse the command-line form ``NAME=COMMAND ARG ...`` or ``NAME=http(s)://URL``.

        Example:
            >>> MCPServer.from_spec("files=python -m files_server --root .").command
            'python'

        Raises:
            MCPConfigError: no ``=``, an empty command, or an invalid name.
        """
        name, sep, rest = spec.partition("=")
        if not sep or not rest.strip():
            raise MCPConfigError(f"expected NAME=COMMAND [ARG ...] or NAME=URL, got {spec!r}")
        rest = rest.strip()
        if rest.startswith(("http://", "https://")):
            return cls(name=name.strip(), transport="http", url=rest, **options)
        try:
            words = shlex.split(rest)
        except ValueError as exc:
            raise MCPConfigError(f"MCP server {name!r}: cannot parse the command: {exc}") from None
        return cls(name=name.strip(), command=words[0], args=tuple(words[1:]), **options)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MCPServer:
        """Build from a config table (``[[mcp]]`` in TOML): the attribute names as keys.

        Raises:
            MCPConfigError: unknown keys or invalid values.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise MCPConfigError(f"unknown MCP server option(s): {', '.join(unknown)}")
        values = dict(data)
        for key in ("allow", "deny"):
            if values.get(key) is not None:
                values[key] = frozenset(_strings(values[key], key))
        if "args" in values:
            values["args"] = tuple(_strings(values["args"], "args"))
        try:
            return cls(**values)
        except TypeError as exc:
            raise MCPConfigError(f"invalid MCP server options: {exc}") from None


def _strings(value: Any, key: str) -> Sequence[str]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise MCPConfigError(f"MCP server option {key!r} must be a list of strings")
    return list(value)
