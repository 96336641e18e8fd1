"""Pagination of lists and the Azure-style routes."""

from __future__ import annotations

import warnings
from typing import Any

import aiohttp
import pytest

from runtime.emulator import Emulator


async def test_list_pagination_limit_order_after_before(api: Any) -> None:
    """limit/order/after/before page through messages with first_id/last_id/has_more."""
    thread = await api.thread(*[f"m{i}" for i in range(5)])
    url = f"/threads/{thread['id']}/messages"
    everything = await api.get(url, order="asc")
    ids = [m["id"] for m in everything["data"]]
    assert [m["content"][0]["text"]["value"] for m in everything["data"]] == [
        f"m{i}" for i in range(5)
    ]
    first = await api.get(url, order="asc", limit=2)
    assert [m["id"] for m in first["data"]] == ids[:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[0], ids[1], True)
    second = await api.get(url, order="asc", limit=2, after=first["last_id"])
    assert [m["id"] for m in second["data"]] == ids[2:4] and second["has_more"] is True
    last = await api.get(url, order="asc", limit=2, after=second["last_id"])
    assert [m["id"] for m in last["data"]] == ids[4:] and last["has_more"] is False
    desc = await api.get(url)
    assert [m["id"] for m in desc["data"]] == ids[::-1]
    before = await api.get(url, order="asc", limit=2, before=ids[4])
    assert [m["id"] for m in before["data"]] == ids[2:4] and before["has_more"] is True
    await api.get(url, limit=0, status=400)
    await api.get(url, limit=101, status=400)
    await api.get(url, order="up", status=400)


async def test_runs_steps_and_assistants_lists(api: Any) -> None:
    """Runs, steps and assistants lists are list objects; messages filter by run_id."""
    assistant = await api.assistant()
    thread = await api.thread("hi")
    runs = []
    for _ in range(3):
        run = await api.post(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
        await api.wait_run(thread["id"], run["id"], {"completed"})
        runs.append(run["id"])
    listed = await api.get(f"/threads/{thread['id']}/runs", limit=2)
    assert [r["id"] for r in listed["data"]] == runs[::-1][:2] and listed["has_more"]
    steps = await api.get(f"/threads/{thread['id']}/runs/{runs[0]}/steps")
    assert steps["object"] == "list" and steps["data"][0]["type"] == "message_creation"
    step = await api.get(f"/threads/{thread['id']}/runs/{runs[0]}/steps/{steps['first_id']}")
    assert step["id"] == steps["first_id"]
    by_run = await api.get(f"/threads/{thread['id']}/messages", run_id=runs[1])
    assert [m["role"] for m in by_run["data"]] == ["assistant"]
    assistants = await api.get("/assistants")
    assert assistants["data"][0]["id"] == assistant["id"]


async def test_crud_of_assistants_threads_messages(api: Any) -> None:
    """Update and delete endpoints answer the service's objects."""
    assistant = await api.assistant(name="a")
    updated = await api.post(f"/assistants/{assistant['id']}", {"name": "b"})
    assert updated["name"] == "b" and updated["object"] == "assistant"
    thread = await api.thread("x")
    message = (await api.get(f"/threads/{thread['id']}/messages"))["data"][0]
    changed = await api.post(
        f"/threads/{thread['id']}/messages/{message['id']}", {"metadata": {"k": "v"}}
    )
    assert changed["metadata"] == {"k": "v"}
    gone = await api.request("DELETE", f"/threads/{thread['id']}/messages/{message['id']}")
    assert gone == {"id": message["id"], "object": "thread.message.deleted", "deleted": True}
    gone = await api.request("DELETE", f"/threads/{thread['id']}")
    assert gone["object"] == "thread.deleted"
    await api.get(f"/threads/{thread['id']}", status=404)
    gone = await api.request("DELETE", f"/assistants/{assistant['id']}")
    assert gone["deleted"] is True


async def test_azure_routes_need_api_version_and_accept_api_key(emu: Emulator) -> None:
    """/openai/... works with ?api-version and api-key; without api-version it is a 404."""
    headers = {"api-key": "azure-key"}
    async with aiohttp.ClientSession(headers=headers) as session:
        base = emu.azure_endpoint + "/openai"
        params = {"api-version": "2024-08-01-preview"}
        async with session.post(base + "/assistants", json={"model": "gpt-4o"}, params=params) as r:
            assert r.status == 200
            assistant = await r.json()
        async with session.post(base + "/threads", json={}) as r:
            assert r.status == 404 and "api-version" in (await r.json())["error"]["message"]
        body = {
            "assistant_id": assistant["id"],
            "thread": {"messages": [{"role": "user", "content": "hi"}]},
            "stream": True,
        }
        async with session.post(base + "/threads/runs", json=body, params=params) as r:
            text = await r.text()
            assert text.startswith("event: thread.created\n")
            assert text.endswith("event: done\ndata: [DONE]\n\n")


async def test_azure_sdk_client_runs_to_completion(emu: Emulator) -> None:
    """The official AsyncAzureOpenAI client drives create_and_poll on the /openai routes."""
    openai = pytest.importorskip("openai")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=emu.azure_endpoint,
            api_key="azure-key",
            api_version="2024-08-01-preview",
            max_retries=0,
        )
        async with client:
            assistant = await client.beta.assistants.create(model="gpt-4o")
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": "yo"}])
            run = await client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=10
            )
            assert run.status == "completed"
            messages = await client.beta.threads.messages.list(thread_id=thread.id)
            assert messages.data[0].content[0].text.value == "You said: yo"
    assert any(r["path"].startswith("/openai/threads") for r in emu.requests)
