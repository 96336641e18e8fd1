"""The Responses API backend: client, typed stream, and the conversation loop with tools.

The public API is exactly ``__all__``::

    async with ResponsesClient(base_url=..., api_key=...) as rc:
        orch = ResponsesOrchestrator(rc, registry, policy=RunPolicy())
        result = await orch.run("What is the weather in Paris?", model="gpt-4o")
"""

from runtime.responses.client import ResponsesClient
from runtime.responses.models import FunctionCallItem, OutputMessage, Response, ResponseUsage
from runtime.responses.orchestrator import ResponsesOrchestrator
from runtime.responses.stream import FunctionCallSnapshot, OutputMessageSnapshot, ResponseStream

__all__ = [
    "FunctionCallItem",
    "FunctionCallSnapshot",
    "OutputMessage",
    "OutputMessageSnapshot",
    "Response",
    "ResponseStream",
    "ResponseUsage",
    "ResponsesClient",
    "ResponsesOrchestrator",
]
