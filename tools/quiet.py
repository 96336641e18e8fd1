"""Library logging defaults: silent unless the application configures logging.

As the standard library recommends for libraries, the ``runtime`` and ``tools`` loggers get a
:class:`logging.NullHandler`, and structlog (when nobody has configured it yet) hands every
event to those standard-library loggers instead of printing it. An application that calls
``logging.basicConfig(level="INFO")`` sees the events; one that configures nothing sees
nothing. ``runtime.logging.configure_logging`` (the CLI and the worker call it) replaces these
defaults with its own handler.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from structlog.typing import Processor

LIBRARY_LOGGERS = ("runtime", "tools")


class LeveledBoundLogger(structlog.stdlib.BoundLogger):
    """structlog's stdlib logger, with the level checked before any work.

    When the processor chain begins with ``filter_by_level`` (the chains this package and
    ``runtime.logging`` configure), a ``debug`` / ``info`` / ``warning`` call below the
    standard library logger's level is dropped before the event dict and the chain are built:
    the same decision, taken earlier. Any other chain (``structlog.testing.capture_logs``, an
    application's own) sees every call, as with structlog's own class.
    """

    def __init__(self, logger: Any, processors: Iterable[Processor], context: Any) -> None:
        super().__init__(logger, processors, context)
        first = processors[0] if isinstance(processors, list | tuple) and processors else None
        self._level_first = first is structlog.stdlib.filter_by_level

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at DEBUG (dropped at once below the logger's level)."""
        if self._level_first and not self._logger.isEnabledFor(logging.DEBUG):
            return None
        return self._proxy_to_logger("debug", event, *args, **kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at INFO (dropped at once below the logger's level)."""
        if self._level_first and not self._logger.isEnabledFor(logging.INFO):
            return None
        return self._proxy_to_logger("info", event, *args, **kw)

    def warning(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at WARNING (dropped at once below the logger's level)."""
        if self._level_first and not self._logger.isEnabledFor(logging.WARNING):
            return None
        return self._proxy_to_logger("warning", event, *args, **kw)


def install_library_defaults(extra: Sequence[Processor] = ()) -> None:
    """Route structlog to the standard library, silently, unless structlog is configured.

    Args:
        extra: processors to run before rendering (``runtime`` adds its redaction).
    """
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            # First: a call below the logger's level builds nothing more.
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            *extra,
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=LeveledBoundLogger,
        cache_logger_on_first_use=False,
    )
