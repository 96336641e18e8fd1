"""structlog setup: console for humans, JSON lines for workers, secrets always masked.

:func:`configure_logging` routes structlog *and* the standard library's ``logging`` (aiohttp,
asyncio, redis ...) through one root ``logging`` handler whose
:class:`structlog.stdlib.ProcessorFormatter` renders both alike: ISO UTC timestamp, level,
logger name, merged ``structlog.contextvars``, formatted exceptions. :func:`redact_event`
runs after exceptions are formatted to text, so it covers messages, fields, nested fields and
tracebacks: structlog events are redacted before they are handed to ``logging`` (so any
handler gets clean events), stdlib records in our handler's formatter (attach
:class:`RedactingFilter` to handlers of your own).

What is masked (replaced by ``***``):

* values registered with :func:`register_secret` (the client registers its API key);
* ``sk-...`` keys and ``Bearer <token>``;
* ``api_key=...`` / ``"password": "..."``-style pairs inside text;
* the whole value of any mapping key named like ``api_key``, ``api-key``, ``authorization``,
  ``password``, ``secret``, ``token`` (case-insensitive; ``max_tokens`` is not a secret).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from runtime.jsontext import acyclic_encoder
from tools.quiet import LeveledBoundLogger, install_library_defaults

__all__ = [
    "ModuleLogger",
    "RedactingFilter",
    "configure_logging",
    "get_logger",
    "redact",
    "redact_event",
    "register_secret",
    "reset_logging",
]

MASK = "***"
_MIN_SECRET_LEN = 8

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# Rebuilt on every register_secret(); readers take the current tuple without locking.
_secrets_longest_first: tuple[str, ...] = ()

# Names whose values are secrets, in text ("api-key: x", "client_secret=y") and as keys.
_SECRET_WORDS = (
    r"api[_-]?key|access[_-]?key|private[_-]?key|secret(?:[_-]?key)?|password|passwd|token"
)

# (substring triggers, pattern): both apply to the lower-cased text, so no pattern needs
# re.IGNORECASE (5x slower), and a pattern runs only when one of its triggers occurs, which
# keeps ordinary log lines at str.find() cost. Group 1 is kept, the rest of a match masked.
_MASK_PATTERNS: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (("sk-",), re.compile(r"\b()sk-[a-z0-9_-]{8,}")),
    (("bearer",), re.compile(r"\b(bearer\s+)(?!\*\*\*)\S+")),
    # key=value / "key": "value" / api-key: value inside free text (headers, URLs, reprs);
    # the name must end right before the separator, so "max_tokens=5" stays.
    (
        ("key", "secret", "pass", "token"),
        re.compile(
            rf"""(?x)
            ((?:{_SECRET_WORDS})["']?\s*[:=]\s*["']?)
            (?!\*\*\*|bearer\b)[^\s"',;&}}\])]+
            """
        ),
    ),
    # Credentials in URLs: scheme://user:password@host, also without a user
    # (redis://:password@host, the usual Redis form).
    (("@",), re.compile(r"(://[^/\s:@]*:)[^/\s@]+(?=@)")),
)

_TRIGGERS = tuple(dict.fromkeys(t for triggers, _ in _MASK_PATTERNS for t in triggers))
_ANY_TRIGGER = re.compile(
    "|".join(re.escape(trigger) for triggers, _ in _MASK_PATTERNS for trigger in triggers)
)

# Mapping keys whose values are secrets: the name ends in one of these words.
_SENSITIVE_KEY = re.compile(rf"(?:^|[_-])(?:{_SECRET_WORDS}|apikey|authorization)$", re.IGNORECASE)

_HANDLER_MARK = "_runtime_logging_handler"
_configured_as: tuple[str, str, int] | None = None


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears in log output from now on.

    Args:
        value: a secret such as an API key; values shorter than 8 characters are ignored
            (masking them would garble ordinary text).
    """
    global _secrets_longest_first
    if not isinstance(value, str) or len(value) < _MIN_SECRET_LEN:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first so a secret containing another is masked whole.
        _secrets_longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    """Mask registered secrets and known key patterns in ``text``.

    Args:
        text: any string (message, error text, repr, traceback).

    Returns:
        ``text`` with every secret replaced by ``***``.
    """
    for secret in _secrets_longest_first:
        if secret in text:
            text = text.replace(secret, MASK)
    lowered = text.lower()
    if _ANY_TRIGGER.search(lowered) is None:  # the common case: nothing looks like a secret
        return text
    if len(lowered) != len(text):  # a character lower-cases to two: positions would shift
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    spans = [
        (match.end(1), match.end())
        for triggers, pattern in _MASK_PATTERNS
        if any(trigger in lowered for trigger in triggers)
        for match in pattern.finditer(lowered)
    ]
    return _mask_spans(text, spans) if spans else text


def _mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace each (merged) span of ``text`` by the mask."""
    parts: list[str] = []
    position = 0
    for start, end in sorted(spans):
        if end <= position:
            continue  # inside a span already masked
        if start > position:
            parts.append(text[position:start])
            parts.append(MASK)
        elif not parts or parts[-1] != MASK:
            parts.append(MASK)
        position = end
    parts.append(text[position:])
    return "".join(parts)


@functools.lru_cache(maxsize=1024)
def _is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and _SENSITIVE_KEY.search(key) is not None


def _redact_value(value: Any) -> Any:
    """Recursively redact strings in dicts, lists and tuples; other objects by their repr."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {
            k: (MASK if _is_sensitive_key(k) and v is not None else _redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        if all(type(item) is str for item in value) and not _may_hold_secret("\n".join(value)):
            return value if isinstance(value, list | tuple) else tuple(value)  # names, ids
        items = [_redact_value(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    # Renderers fall back to repr(); replace the object only if that repr would leak.
    text = repr(value)
    masked = redact(text)
    return value if masked == text else masked


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets in every value of the event dict.

    Runs after exceptions have been formatted to text, so tracebacks are covered too.
    """
    return _redact_fields(event_dict, frozenset())


def _redact_stamped(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """:func:`redact_event` after our own processors set level, logger and timestamp (they
    overwrite whatever a caller passed under those names, so nothing secret is there)."""
    return _redact_fields(event_dict, _OURS)


def _redact_fields(event_dict: EventDict, skip: frozenset[str]) -> EventDict:
    kinds = _key_kinds(skip)
    texts: list[str] = []  # the keys of plain string values
    for key, value in event_dict.items():
        if value is None:  # never rewritten, whatever the key
            continue
        kind = kinds.get(key)
        if kind is None:
            kind = _key_kind(key, skip, kinds)
        if kind is _KEEP:  # processor metadata, fields we set
            continue
        if kind is _MASKED:
            event_dict[key] = MASK
        elif type(value) is str:
            texts.append(key)
        elif type(value) not in _PLAIN:
            event_dict[key] = _redact_value(value)
    # One look at all the strings together: any secret or trigger in one of them is in the
    # joined text too, and most events have none (then no field is rewritten).
    if texts and _may_hold_secret("\n".join([event_dict[key] for key in texts])):
        for key in texts:
            event_dict[key] = redact(event_dict[key])
    return event_dict


# What _redact_fields does with a key, cached per set of skipped keys: field names come from
# code, so the caches stay small (and stop growing at _MAX_KINDS keys if they do not).
_KEEP, _MASKED, _CHECKED = "keep", "masked", "checked"
_MAX_KINDS = 4096
_kinds_by_skip: dict[frozenset[str], dict[str, str]] = {}


def _key_kinds(skip: frozenset[str]) -> dict[str, str]:
    kinds = _kinds_by_skip.get(skip)
    if kinds is None:
        kinds = _kinds_by_skip.setdefault(skip, {})
    return kinds


def _key_kind(key: str, skip: frozenset[str], kinds: dict[str, str]) -> str:
    if isinstance(key, str) and (key.startswith("_") or key in skip):
        kind = _KEEP
    elif _is_sensitive_key(key):
        kind = _MASKED
    else:
        kind = _CHECKED
    if len(kinds) < _MAX_KINDS:
        kinds[key] = kind
    return kind


def _plain_and_flat(event_dict: EventDict) -> bool:
    """Whether no key of ``event_dict`` is redacted by its name (or skipped) and every value
    is a string, number, boolean or None, or a list or tuple of strings (names, ids): the
    common event, which only a secret inside one of its strings could change (see
    :func:`_clean_json_line`)."""
    keys = tuple(event_dict)
    plain_keys = _plain_key_sets.get(keys)
    if plain_keys is None:
        plain_keys = _plain_keys(keys)
    if not plain_keys:
        return False
    values = event_dict.values()
    if _FLAT.issuperset(map(type, values)):
        return True
    return all(type(v) in _FLAT or _strings(v) for v in values)


def _strings(value: object) -> bool:
    """A list or tuple of strings: redaction leaves one unchanged unless a string holds a
    secret, and each string is in the JSON line as it is, like a plain string value."""
    if type(value) is not list and type(value) is not tuple:
        return False
    return all(type(item) is str for item in value)


def _clean_json_line(line: str) -> bool:
    """True when no string value of a plain and flat event holds a secret, for sure, judged
    from ``line``, its JSON rendering; False means "maybe" (redact, render again).

    Without a backslash in the line, JSON escaped no character (quotes, control characters,
    anything beyond printable ASCII), so every string value is in the line verbatim: one
    look at the line finds any secret or trigger in any of them. The keys and numbers in
    the line can only add needless "maybe"s.
    """
    return "\\" not in line and not _may_hold_secret(line)


# Sets of event keys seen, and whether none of them is redacted by name or skipped.
_plain_key_sets: dict[tuple[str, ...], bool] = {}


def _plain_keys(keys: tuple[str, ...]) -> bool:
    kinds = _key_kinds(_OURS)
    plain = all(
        key in _OURS or (kinds.get(key) or _key_kind(key, _OURS, kinds)) is _CHECKED for key in keys
    )
    if len(_plain_key_sets) < _MAX_KINDS:
        _plain_key_sets[keys] = plain
    return plain


def _may_hold_secret(text: str) -> bool:
    """False when :func:`redact` would return ``text`` unchanged for sure."""
    for secret in _secrets_longest_first:  # a loop, not any(): no generator per event
        if secret in text:
            return True
    lowered = text.lower()
    # A few substring searches beat the regular expression; a loop beats any() here.
    for trigger in _TRIGGERS:  # noqa: SIM110
        if trigger in lowered:
            return True
    return False


_PLAIN = frozenset({int, float, bool})
_FLAT = frozenset({str, int, float, bool, type(None)})
_OURS = frozenset({"level", "logger", "timestamp"})


class RedactingFilter(logging.Filter):
    """Masks secrets in plain stdlib records, for handlers other than ours.

    Our own handler needs no filter (its formatter redacts); attach this to handlers that
    an application installs itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message and exception text in place; never drop it."""
        if isinstance(record.msg, str):
            record.msg = redact(record.getMessage())
            record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _shared_processors() -> list[Processor]:
    """Steps both structlog and stdlib records take before redaction and rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamp,
    ]


# (the second last formatted, its ISO text up to the fraction): one tuple, replaced whole,
# so a thread never pairs one second with another second's text.
_second: tuple[int, str] = (-1, "")


def _timestamp(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """ISO 8601 UTC time with microseconds (``2026-01-31T12:00:00.123456Z``); the date and
    time of day are formatted once per second (a third of the cost of ``TimeStamper``)."""
    global _second
    second, micros = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
    event_dict["timestamp"] = f"{cached[1]}{micros:06d}Z"
    return event_dict


_POSITIONAL = structlog.stdlib.PositionalArgumentsFormatter()
_STACK = structlog.processors.StackInfoRenderer(additional_ignores=[__name__])  # not _extras


def _extras(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Positional arguments, ``stack_info`` and ``exc_info``, each only when the event has it
    (the three processors in one step: most events have none of them)."""
    if "positional_args" in event_dict:
        event_dict = _POSITIONAL(logger, method, event_dict)
    if "stack_info" in event_dict:
        event_dict = _STACK(logger, method, event_dict)
    if "exc_info" in event_dict:
        event_dict = structlog.processors.format_exc_info(logger, method, event_dict)
    return event_dict


def _foreign_stack(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """A stdlib record's ``stack_info`` is already text: show it like structlog's ``stack``."""
    stack = event_dict.pop("stack_info", None)
    if isinstance(stack, str):
        event_dict["stack"] = stack
    return event_dict


def _redact_foreign(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Redact stdlib records; structlog events were redacted before they left structlog."""
    if event_dict.get("_from_structlog"):
        return event_dict
    return redact_event(logger, method, event_dict)


def _renderer(fmt: str, stream: IO[str]) -> Processor:
    is_tty = _isatty(stream)
    if fmt == "auto":
        fmt = "console" if is_tty else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(
            colors=is_tty, exception_formatter=structlog.dev.plain_traceback
        )
    if fmt == "json":
        return _JSONRenderer()
    raise ValueError(f"log format must be 'auto', 'console' or 'json', not {fmt!r}")


class _JSONRenderer:
    """structlog's ``JSONRenderer()`` output (``json.dumps`` defaults, ``repr`` of other
    objects), from one C encoder made once instead of one encoder (and, inside it, one C
    encoder) per line. Without a circular-reference check: an event reaches the renderer
    flat, or through the redaction, whose containers (copies, or lists of strings) cannot be
    circular."""

    def __init__(self) -> None:
        self._encode = acyclic_encoder(json.JSONEncoder(default=_json_fallback))

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
        return self._encode(event_dict)


def _json_fallback(value: Any) -> Any:
    structlog_view = getattr(value, "__structlog__", None)
    return structlog_view() if callable(structlog_view) else repr(value)


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or minimal file-like objects
        return False


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class DirectHandOver:
    """The last structlog processor: writes an event straight to our handler's stream when
    that handler is the only one the standard library would hand it to, else hands it over.

    The standard library's route costs two ``LogRecord`` objects, a caller lookup and the
    formatter's copy per event (about two thirds of an INFO line's cost); the line written is
    the same, since our formatter renders a structlog event with this same renderer and
    nothing else. Any other handler on the way (an application's, pytest's ``caplog``), a
    filter, a disabled logger or an exception event takes the standard route.

    :meth:`emit` runs the whole chain this processor ends in one step, for the loggers of
    :func:`configure_logging`'s own configuration (:class:`_OwnChainLogger`).
    """

    def __init__(self, handler: logging.StreamHandler[IO[str]], render: Processor) -> None:
        self.handler = handler
        self.render = render
        self.chain: list[Processor] = []  # set by configure_logging: the chain ending here

    def __call__(
        self, logger: WrappedLogger, method: str, event_dict: EventDict
    ) -> tuple[tuple[EventDict], dict[str, dict[str, Any]]]:
        level = _LEVELS.get(method)
        if level is not None and isinstance(logger, logging.Logger) and self._alone(logger, level):
            # A copy: the console renderer pops fields, and a failed write hands the event on.
            line = self.render(logger, method, dict(event_dict))
            if isinstance(line, str) and self._write(line):
                raise structlog.DropEvent
        return structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, method, event_dict)

    def emit(
        self,
        logger: logging.Logger,
        method: str,
        level: int,
        event: str | None,
        context: Mapping[str, Any],
        fields: dict[str, Any],
    ) -> bool:
        """What ``chain`` does with a ``method`` call (debug, info, warning) that passed the
        level check, without structlog's generic plumbing (argument repacking, the processor
        loop, ``DropEvent``): the same steps, in the same order, on the same event dict.

        Args:
            fields: the call's keyword arguments, a dict of its own: used as the event dict.

        Returns:
            True when the event was taken care of: written, or handed to the standard
            library as the chain hands it when the write fails; False (nothing done,
            ``fields`` untouched) when the event must take the chain: another handler on the
            way.
        """
        if not self._alone(logger, level):
            return False
        event_dict: EventDict = {**context, **fields} if context else fields
        if event is not None:
            event_dict["event"] = event
        structlog.contextvars.merge_contextvars(logger, method, event_dict)
        event_dict["level"] = method  # add_log_level: these three names are their own
        event_dict["logger"] = logger.name
        _timestamp(logger, method, event_dict)
        event_dict = _extras(logger, method, event_dict)
        render = self.render
        line: str | None
        if isinstance(render, _JSONRenderer) and _plain_and_flat(event_dict):
            line = render(logger, method, event_dict)  # render first, then look at the line
            if not _clean_json_line(line):
                line = render(logger, method, _redact_fields(event_dict, _OURS))
        else:  # a copy: the console renderer pops fields, and a failed write hands it on
            event_dict = _redact_fields(event_dict, _OURS)
            rendered = render(logger, method, dict(event_dict))
            line = rendered if isinstance(rendered, str) else None
        if line is None or not self._write(line):
            args, kwargs = structlog.stdlib.ProcessorFormatter.wrap_for_formatter(
                logger, method, event_dict
            )
            getattr(logger, method)(*args, **kwargs)
        return True

    def _write(self, line: str) -> bool:
        """Write one line as StreamHandler.emit does (one write and a flush under the
        handler's lock); False when the stream failed (the standard route then reports the
        failure its own way: a log call never raises)."""
        handler = self.handler
        lock = handler.lock
        if lock is None:  # StreamHandler always has one; be safe with odd subclasses
            return False
        with lock:
            try:
                stream = handler.stream
                stream.write(line + handler.terminator)
                stream.flush()
            except Exception:
                return False
        return True

    def _alone(self, logger: logging.Logger, level: int) -> bool:
        """Whether our handler is the only handler (besides NullHandlers) that would run."""
        if logger.disabled or logger.filters or logger.manager.disable >= level:
            return False
        ours = self.handler
        found = False
        current: logging.Logger | None = logger
        while current is not None:
            for handler in current.handlers:
                if handler is ours:
                    found = handler.level <= level and not handler.filters
                elif type(handler) is not logging.NullHandler:
                    return False
            if not current.propagate:
                break
            current = current.parent
        return found


class _OwnChainLogger(LeveledBoundLogger):
    """:func:`configure_logging`'s logger class: a ``debug`` / ``info`` / ``warning`` call
    on a logger made with that function's own chain runs the chain in one step
    (:meth:`DirectHandOver.emit`); every other call, or a chain changed since, goes through
    structlog as usual."""

    def _direct(self) -> DirectHandOver | None:
        """The chain's hand-over when the chain is still the one it ends (looked up at each
        call that passes the level check: filtered calls never pay for it, and a chain
        changed in place, as ``structlog.testing.capture_logs`` does, is seen at once).
        Not a ``cached_property``: a logger is made per call, and that property's lock
        cost more than the look-up."""
        processors = self._processors
        if not self._level_first or type(processors) is not list:
            return None
        last = processors[-1]  # the chain begins with filter_by_level: not empty
        if type(last) is DirectHandOver and processors == last.chain:
            return last if isinstance(self._logger, logging.Logger) else None
        return None

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at DEBUG (dropped at once below the logger's level)."""
        if self._level_first and not self._logger.isEnabledFor(logging.DEBUG):
            return None
        return self._emit("debug", logging.DEBUG, event, args, kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at INFO (dropped at once below the logger's level)."""
        if self._level_first and not self._logger.isEnabledFor(logging.INFO):
            return None
        return self._emit("info", logging.INFO, event, args, kw)

    def warning(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at WARNING (dropped at once below the logger's level)."""
        if self._level_first and not self._logger.isEnabledFor(logging.WARNING):
            return None
        return self._emit("warning", logging.WARNING, event, args, kw)

    def _emit(
        self, method: str, level: int, event: str | None, args: tuple[Any, ...], kw: Any
    ) -> Any:
        direct = self._direct()
        if (
            direct is not None
            and not args
            and direct.emit(self._logger, method, level, event, self._context, kw)
        ):
            return None
        return self._proxy_to_logger(method, event, *args, **kw)


class _StdlibLoggers(structlog.stdlib.LoggerFactory):
    """structlog's standard-library logger factory, each named logger looked up once (the
    standard library's look-up takes its module lock at every call, and a lazy logger asks
    the factory at every log call); a logger replaced in the standard library's registry
    since is looked up again."""

    def __init__(self) -> None:
        super().__init__()
        self._by_name: dict[str, logging.Logger] = {}

    def __call__(self, *args: Any) -> logging.Logger:
        if not args or type(args[0]) is not str:
            return super().__call__(*args)  # the caller's module name, guessed
        name = args[0]
        logger = self._by_name.get(name)
        if logger is None or logging.Logger.manager.loggerDict.get(name) is not logger:
            logger = self._by_name[name] = logging.getLogger(name)
        return logger


def _config_now() -> tuple[Any, ...]:
    """What a bound logger is made of: wrapper class, context class, logger factory, the
    processor list (last: compared by contents)."""
    config = _STRUCTLOG_CONFIG
    if config is None:
        public = structlog.get_config()
        return (
            public["wrapper_class"],
            public["context_class"],
            public["logger_factory"],
            public["processors"],
        )
    return (
        config.default_wrapper_class,
        config.default_context_class,
        config.logger_factory,
        config.default_processors,
    )


# structlog's configuration object, read directly (``get_config()`` builds a dict per call,
# most of a cached logger's cost); the public call when a structlog version lacks it.
_STRUCTLOG_CONFIG: Any = getattr(structlog._config, "_CONFIG", None)
if _STRUCTLOG_CONFIG is not None and not all(
    hasattr(_STRUCTLOG_CONFIG, name)
    for name in (
        "default_wrapper_class",
        "default_context_class",
        "logger_factory",
        "default_processors",
    )
):
    _STRUCTLOG_CONFIG = None


class ModuleLogger:
    """A module's logger: ``log = ModuleLogger("runtime.worker")``, then ``log.info(...)``.

    ``structlog.get_logger`` returns a lazy proxy that assembles a new bound logger at every
    call: most of a filtered DEBUG call's cost and a third of an INFO line's. This one keeps
    the logger it assembled for as long as structlog's configuration is the one it was made
    with: the same processor list holding the same processors (``capture_logs`` of
    ``structlog.testing`` swaps the list's contents in place), wrapper class, context class
    and logger factory. Any change, and the next call assembles a new one, so it follows
    :func:`configure_logging`, :func:`reset_logging` and test captures like the proxy does.
    """

    __slots__ = ("_kept", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        # (what it was made with, the processor list itself, the bound logger): one tuple,
        # replaced whole, so another thread never pairs one configuration with another's
        # logger (the queue's thread logs too).
        self._kept: tuple[tuple[Any, ...], object, Any] = ((), None, None)

    def _bound(self) -> Any:
        made_with = _config_now()
        kept_with, processors, bound = self._kept
        # The classes and the factory by identity, the processors by identity and contents.
        if made_with == kept_with and made_with[-1] is processors:
            return bound
        bound = structlog.get_logger(self._name).bind()
        self._kept = ((*made_with[:-1], list(made_with[-1])), made_with[-1], bound)
        return bound

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at DEBUG."""
        return self._bound().debug(event, *args, **kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at INFO."""
        return self._bound().info(event, *args, **kw)

    def warning(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at WARNING."""
        return self._bound().warning(event, *args, **kw)

    def error(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at ERROR."""
        return self._bound().error(event, *args, **kw)

    def exception(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at ERROR with the exception being handled."""
        return self._bound().exception(event, *args, **kw)


def configure_logging(
    level: str = "INFO", fmt: str = "auto", stream: IO[str] | None = None
) -> None:
    """Configure structlog and stdlib logging to write redacted records to ``stream``.

    Idempotent: calling it again replaces only the handler it installed before (other
    root handlers are left alone), and a call with the same arguments does nothing.

    Args:
        level: minimum level name (``DEBUG`` ... ``CRITICAL``), case-insensitive.
        fmt: ``auto`` (console renderer on a TTY, JSON lines otherwise), ``console``
            or ``json``.
        stream: text stream to write to; ``sys.stderr`` by default.
    """
    global _configured_as
    out = stream if stream is not None else sys.stderr
    level_no = logging.getLevelNamesMapping().get(level.upper())
    if level_no is None:
        raise ValueError(f"unknown log level {level!r}")
    key = (level.upper(), fmt, id(out))
    root = logging.getLogger()
    if _configured_as == key and structlog.is_configured() and _our_handler(root) is not None:
        return

    renderer = _renderer(fmt, out)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            _foreign_stack,
            structlog.processors.format_exc_info,
            _redact_foreign,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    _remove_our_handler(root)
    root.addHandler(handler)
    root.setLevel(level_no)
    hand_over = DirectHandOver(handler, renderer)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            _extras,
            # Before the hand-over, so every stdlib handler (not only ours) gets clean events.
            _redact_stamped,
            hand_over,
        ],
        logger_factory=_StdlibLoggers(),
        wrapper_class=_OwnChainLogger,
        # No caching: loggers made at import time must follow a later reconfiguration.
        cache_logger_on_first_use=False,
    )
    # A copy: an application that changes the configured list in place (get_config()
    # returns it) makes the two differ, and its loggers then take structlog's route.
    hand_over.chain = list(structlog.get_config()["processors"])
    _configured_as = key


def reset_logging() -> None:
    """Undo :func:`configure_logging`: remove our handler; the library is silent again."""
    global _configured_as
    _remove_our_handler(logging.getLogger())
    structlog.reset_defaults()
    install_library_defaults([redact_event])
    _configured_as = None


def _our_handler(root: logging.Logger) -> logging.Handler | None:
    return next((h for h in root.handlers if getattr(h, _HANDLER_MARK, False)), None)


def _remove_our_handler(root: logging.Logger) -> None:
    while (handler := _our_handler(root)) is not None:
        root.removeHandler(handler)


def get_logger(name: str | None = None, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger, lazily bound to the configuration current at each call.

    Args:
        name: stdlib logger name (use ``__name__``); guessed from the caller if omitted.
        **bound: context fields added to every event of this logger.

    Returns:
        A logger: ``log.info("tool.finished", name="clock", seconds=0.01)``.
    """
    args = (name,) if name is not None else ()
    return structlog.stdlib.get_logger(*args, **bound)


# Importing the runtime prints nothing: events go to the standard library's "runtime.*" and
# "tools.*" loggers (NullHandler) until the application or configure_logging() decides.
install_library_defaults([redact_event])
