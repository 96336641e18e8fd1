"""The Responses API (responses chained by ``previous_response_id`` or a conversation)
behind the engine seam.

::

    async with ResponsesClient(base_url=..., api_key=...) as rc:
        orch = ResponsesOrchestrator(rc, registry, policy=RunPolicy())
        result = await orch.run("What is the weather in Paris?", model="gpt-4o")
"""

from runtime.responses.backend import ResponsesBackend
from runtime.responses.client import ResponsesClient
from runtime.responses.handler import ResponsesEventHandler
from runtime.responses.models import FunctionCallItem, OutputMessage, Response, ResponseUsage
from runtime.responses.orchestrator import ResponsesOrchestrator
from runtime.responses.stream import ResponseStream

__all__ = [
    "FunctionCallItem",
    "OutputMessage",
    "Response",
    "ResponseStream",
    "ResponseUsage",
    "ResponsesBackend",
    "ResponsesClient",
    "ResponsesEventHandler",
    "ResponsesOrchestrator",
]
