"""Rules of the real service: one active run, submit validation, expiry, cancel, validation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runtime.emulator import Emulator


async def _requires_action(api: Any, content: str = '/call get_weather {"location": "X"}') -> Any:
    assistant = await api.assistant()
    thread = await api.thread(content)
    events = await api.stream(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    return assistant, thread, events[-2][1]


async def test_second_run_and_new_message_are_refused_while_a_run_is_active(api: Any) -> None:
    """400 with the service's wording for creating a run or adding a message on a busy thread."""
    assistant, thread, run = await _requires_action(api)
    error = await api.post(
        f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]}, status=400
    )
    assert error["error"]["message"] == (
        f"Thread {thread['id']} already has an active run {run['id']}."
    )
    assert error["error"]["type"] == "invalid_request_error"
    error = await api.post(
        f"/threads/{thread['id']}/messages", {"role": "user", "content": "more"}, status=400
    )
    assert error["error"]["message"] == (
        f"Can't add messages to {thread['id']} while a run {run['id']} is active."
    )


async def test_submit_must_cover_exactly_the_required_calls(api: Any) -> None:
    """Partial, extra or unknown tool_call_ids give 400; the exact set is accepted once."""
    _, thread, run = await _requires_action(
        api, '/call get_weather {"location": "A"}\n/call get_weather {"location": "B"}'
    )
    ids = [c["id"] for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]]
    url = f"/threads/{thread['id']}/runs/{run['id']}/submit_tool_outputs"
    partial = await api.post(
        url, {"tool_outputs": [{"tool_call_id": ids[0], "output": "x"}]}, status=400
    )
    assert "Expected tool outputs for call_ids" in partial["error"]["message"]
    assert partial["error"]["param"] == "tool_outputs"
    extra = [{"tool_call_id": i, "output": "x"} for i in [*ids, "call_unknown"]]
    await api.post(url, {"tool_outputs": extra}, status=400)
    not_str = [{"tool_call_id": i, "output": 5} for i in ids]
    await api.post(url, {"tool_outputs": not_str}, status=400)
    await api.post(url, {}, status=400)
    good = [{"tool_call_id": i, "output": "x"} for i in ids]
    accepted = await api.post(url, {"tool_outputs": good})
    assert accepted["status"] == "queued" and accepted["required_action"] is None
    again = await api.post(url, {"tool_outputs": good}, status=400)
    assert "do not accept tool outputs" in again["error"]["message"]


async def test_unanswered_requires_action_expires_at_ttl(make_api: Any) -> None:
    """With a short run TTL an unanswered run becomes expired and frees the thread."""
    async with Emulator(run_ttl_s=0.3) as emu:
        api = make_api(emu)
        _, thread, run = await _requires_action(api)
        assert run["expires_at"] <= int(time.time() + 1)
        expired = await api.wait_run(thread["id"], run["id"], {"expired"}, timeout=3)
        assert expired["required_action"] is None
        steps = await api.get(f"/threads/{thread['id']}/runs/{run['id']}/steps")
        assert steps["data"][0]["status"] == "expired"
        late = [{"tool_call_id": "call_x", "output": "late"}]
        await api.post(
            f"/threads/{thread['id']}/runs/{run['id']}/submit_tool_outputs",
            {"tool_outputs": late},
            status=400,
        )
        await api.post(f"/threads/{thread['id']}/messages", {"role": "user", "content": "ok"})
        assert emu.stats["runs_expired"] == 1


async def test_cancel_goes_through_cancelling_to_cancelled(api: Any) -> None:
    """Cancel answers cancelling, the run soon reads cancelled, cancelling again is a 400."""
    _, thread, run = await _requires_action(api)
    cancelling = await api.post(f"/threads/{thread['id']}/runs/{run['id']}/cancel")
    assert cancelling["status"] == "cancelling"
    cancelled = await api.wait_run(thread["id"], run["id"], {"cancelled"})
    assert cancelled["cancelled_at"] is not None
    error = await api.post(f"/threads/{thread['id']}/runs/{run['id']}/cancel", status=400)
    assert error["error"]["message"] == "Cannot cancel run with status 'cancelled'."


async def test_cancel_during_a_slow_stream_ends_the_stream_cancelled(make_api: Any) -> None:
    """A stream in progress emits cancelling/cancelled and done once the run is cancelled."""
    async with Emulator(delta_delay_s=0.02) as emu:
        api = make_api(emu)
        assistant = await api.assistant()
        thread = await api.thread(" ".join(["word"] * 40))
        task = asyncio.create_task(
            api.stream(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
        )
        while not emu.runs(thread["id"]) or emu.runs(thread["id"])[0]["status"] != "in_progress":
            await asyncio.sleep(0.01)
        run_id = emu.runs(thread["id"])[0]["id"]
        await api.post(f"/threads/{thread['id']}/runs/{run_id}/cancel")
        events = await task
        names = [e for e, _ in events]
        assert names[-4:] == [
            "thread.run.step.cancelled",
            "thread.message.incomplete",
            "thread.run.cancelled",
            "done",
        ]
        assert "thread.run.cancelling" in names
        assert emu.get_run(run_id)["status"] == "cancelled"


async def test_metadata_limits_give_openai_shaped_400(api: Any) -> None:
    """17 keys, a 65-char key or a 513-char value are refused with param and code."""
    too_many = {f"k{i}": "v" for i in range(17)}
    error = await api.post("/threads", {"metadata": too_many}, status=400)
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["param"] == "metadata"
    error = await api.post("/threads", {"metadata": {"k" * 65: "v"}}, status=400)
    assert error["error"]["code"] == "string_above_max_length"
    error = await api.post("/threads", {"metadata": {"k": "v" * 513}}, status=400)
    assert error["error"]["param"] == "metadata.k"
    ok = await api.post("/threads", {"metadata": {f"k{i}": "v" * 512 for i in range(16)}})
    assert len(ok["metadata"]) == 16


async def test_validation_errors(api: Any) -> None:
    """Missing assistant_id, bad role, bad tool_choice and unknown ids are rejected properly."""
    thread = await api.thread("hi")
    error = await api.post(f"/threads/{thread['id']}/runs", {}, status=400)
    assert error["error"]["code"] == "missing_required_parameter"
    await api.post(
        f"/threads/{thread['id']}/messages", {"role": "system", "content": "x"}, status=400
    )
    assistant = await api.assistant()
    bad = {"assistant_id": assistant["id"], "tool_choice": "sometimes"}
    await api.post(f"/threads/{thread['id']}/runs", bad, status=400)
    error = await api.post(
        f"/threads/{thread['id']}/runs", {"assistant_id": "asst_nope"}, status=404
    )
    assert error["error"]["message"] == "No assistant found with id 'asst_nope'."
    await api.get("/threads/thread_nope", status=404)
    await api.get(f"/threads/{thread['id']}/runs/run_nope", status=404)
    await api.get("/no/such/route", status=404)


async def test_auth_and_bad_json(emu: Emulator, session: Any) -> None:
    """Missing key is 401, invalid JSON is 400; both carry x-request-id and an error body."""
    async with session.post(
        emu.base_url + "/threads", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 400 and "x-request-id" in resp.headers
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    import aiohttp

    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(emu.base_url + "/assistants") as resp,
    ):
        assert resp.status == 401
        assert "x-request-id" in resp.headers


async def test_configured_api_key_must_match(session: Any) -> None:
    """With api_key set, another key is 401 invalid_api_key and the key is not echoed."""
    async with Emulator(api_key="sk-right") as emu:
        async with session.get(emu.base_url + "/assistants") as resp:
            body = await resp.json()
            assert resp.status == 401 and body["error"]["code"] == "invalid_api_key"
            assert "sk-test" not in str(body)
        async with session.get(
            emu.base_url + "/assistants", headers={"Authorization": "Bearer sk-right"}
        ) as resp:
            assert resp.status == 200


async def test_run_echoes_options_and_stores_additional_messages(api: Any) -> None:
    """instructions, additional_instructions, metadata, truncation and response_format echo."""
    assistant = await api.assistant(instructions="Base.", temperature=0.5)
    thread = await api.thread("first")
    body = {
        "assistant_id": assistant["id"],
        "additional_instructions": "Be brief.",
        "additional_messages": [{"role": "user", "content": "second"}],
        "metadata": {"job": "42"},
        "truncation_strategy": {"type": "last_messages", "last_messages": 1},
        "response_format": {"type": "json_object"},
        "max_prompt_tokens": 500,
        "parallel_tool_calls": False,
    }
    run = await api.post(f"/threads/{thread['id']}/runs", body)
    assert run["instructions"] == "Base.\nBe brief."
    assert run["metadata"] == {"job": "42"}
    assert run["truncation_strategy"] == {"type": "last_messages", "last_messages": 1}
    assert run["response_format"] == {"type": "json_object"}
    assert run["temperature"] == 0.5 and run["parallel_tool_calls"] is False
    assert run["max_prompt_tokens"] == 500
    await api.wait_run(thread["id"], run["id"], {"completed"})
    messages = await api.get(f"/threads/{thread['id']}/messages", order="asc")
    assert [m["role"] for m in messages["data"]] == ["user", "user", "assistant"]
    assert messages["data"][1]["run_id"] == run["id"]
    reply = messages["data"][2]["content"][0]["text"]["value"]
    assert reply == '{"reply": "You said: second"}'  # json mode, last message only


async def test_update_run_metadata(api: Any) -> None:
    """POST /runs/{id} updates metadata (validated)."""
    assistant = await api.assistant()
    thread = await api.thread("hi")
    run = await api.post(f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    url = f"/threads/{thread['id']}/runs/{run['id']}"
    updated = await api.post(url, {"metadata": {"a": "b"}})
    assert updated["metadata"] == {"a": "b"}
    await api.post(url, {"metadata": {"a": 1}}, status=400)
    assert (await api.get(url))["metadata"] == {"a": "b"}
