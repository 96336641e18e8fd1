"""agent-runtime: run OpenAI-style assistant runs with concurrent local Python tools.

The public API is exactly ``__all__``; everything else is internal.
"""

from runtime.client import AssistantsClient
from runtime.handler import EventHandler
from runtime.retry import RetryPolicy
from runtime.stream import RunStream

__all__ = ["AssistantsClient", "EventHandler", "RetryPolicy", "RunStream"]
