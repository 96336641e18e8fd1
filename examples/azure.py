"""Azure OpenAI configuration: the same runtime, Azure-style URLs and auth.

``AssistantsClient(azure_endpoint=..., api_version=..., api_key=...)`` sends requests to
``{endpoint}/openai/threads/...?api-version=V`` with an ``api-key`` header instead of
``{base}/v1/...`` with ``Authorization: Bearer``. From the environment
(``AZURE_OPENAI_ENDPOINT``, ``AZURE_OPENAI_API_KEY``, ``OPENAI_API_VERSION``) use
``AssistantsClient.from_settings(load_settings())``. This script runs against the embedded
emulator's Azure routes; on Azure, the assistant's ``model`` is your deployment name.
"""

from __future__ import annotations

import asyncio

from runtime import AssistantsClient, Orchestrator
from runtime.emulator import Emulator
from runtime.logging import configure_logging
from tools import ToolRegistry
from tools.builtin import register_builtins

API_VERSION = "2024-08-01-preview"


async def main() -> None:
    registry = ToolRegistry()
    register_builtins(registry)
    async with Emulator() as emu:
        client = AssistantsClient(
            azure_endpoint=emu.azure_endpoint,  # e.g. "https://RESOURCE.openai.azure.com"
            api_version=API_VERSION,
            api_key="azure-key-from-your-resource",
        )
        async with client:
            assistant = await client.create_assistant(
                model="my-gpt-4o-deployment", tools=registry.definitions()
            )
            result = await Orchestrator(client, registry).create_thread_and_run(
                assistant.id,
                messages=[{"role": "user", "content": '/call calculate {"expression": "2**10"}'}],
            )
        print(f"client base URL: {client.base_url} (api-version={client.api_version})")
        paths = sorted({f"{r['method']} {r['path']}" for r in emu.requests})
        print("requests the server saw:", *paths, sep="\n  ")
        print(f"{result.status} | {result.text}")


if __name__ == "__main__":
    configure_logging("WARNING")
    asyncio.run(main())
