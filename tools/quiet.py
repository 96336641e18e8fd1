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
from collections.abc import Sequence

import structlog
from structlog.typing import Processor

LIBRARY_LOGGERS = ("runtime", "tools")


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
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
