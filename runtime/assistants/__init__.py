"""The Assistants API (threads, runs, ``requires_action``) behind the engine seam.

::

    async with AssistantsClient(base_url=..., api_key=...) as client:
        orch = Orchestrator(client, registry, policy=RunPolicy())
        result = await orch.create_thread_and_run(assistant_id, messages=[...])
"""

from runtime.assistants.backend import AssistantsBackend
from runtime.assistants.client import AssistantsClient
from runtime.assistants.handler import AssistantsEventHandler
from runtime.assistants.orchestrator import Orchestrator
from runtime.assistants.stream import RunStream

__all__ = [
    "AssistantsBackend",
    "AssistantsClient",
    "AssistantsEventHandler",
    "Orchestrator",
    "RunStream",
]
