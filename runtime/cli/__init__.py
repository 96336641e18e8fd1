"""The terminal commands: ``demo`` and ``run`` (:mod:`runtime.cli.commands`), their views
(:mod:`runtime.cli.views`, :mod:`runtime.cli.format`) and tool loading
(:mod:`runtime.cli.tools`). The worker's commands live in :mod:`runtime.worker.cli`.
"""

from runtime.cli.commands import Conversation, demo_main, run_main
from runtime.cli.format import call_signature, one_line, status_summary, usage_fields
from runtime.cli.tools import load_tool_registry
from runtime.cli.views import ConsoleView, LiveView, PlainView, make_view

__all__ = [
    "ConsoleView",
    "Conversation",
    "LiveView",
    "PlainView",
    "call_signature",
    "demo_main",
    "load_tool_registry",
    "make_view",
    "one_line",
    "run_main",
    "status_summary",
    "usage_fields",
]
