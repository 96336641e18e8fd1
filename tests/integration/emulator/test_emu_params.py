"""Unknown body parameters are a 400 ``unknown_parameter`` naming them, on both protocols,
while every parameter the official SDK sends is accepted."""

from __future__ import annotations

from typing import Any

import openai
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def assert_unknown(caught: pytest.ExceptionInfo[openai.BadRequestError], name: str) -> None:
    assert caught.value.status_code == 400
    assert caught.value.code == "unknown_parameter"
    assert caught.value.param == name and f"'{name}'" in caught.value.message


async def test_responses_create_refuses_an_unknown_parameter(client: Any) -> None:
    """responses.create with a misspelt parameter names it in param and message."""
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="gpt-4o", input="hi", extra_body={"temprature": 1})
    assert_unknown(caught, "temprature")


async def test_responses_create_accepts_every_sdk_parameter(client: Any) -> None:
    """The parameters the SDK and the runtime send (stream_options, include, reasoning, ...)
    are all accepted."""
    stream = await client.responses.create(
        model="gpt-4o",
        input="hi",
        instructions="Be brief.",
        include=["message.output_text.logprobs"],
        metadata={"k": "v"},
        parallel_tool_calls=True,
        truncation="auto",
        store=True,
        text={"format": {"type": "text"}},
        reasoning={"effort": "low"},
        prompt_cache_key="cache",
        safety_identifier="user-1",
        service_tier="auto",
        top_logprobs=0,
        user="u",
        temperature=0.5,
        top_p=1.0,
        max_output_tokens=64,
        max_tool_calls=3,
        tool_choice="auto",
        tools=[],
        stream=True,
        stream_options={"include_obfuscation": False},
    )
    events = [event async for event in stream]
    assert events[-1].type == "response.completed"


async def test_conversations_refuse_unknown_parameters(client: Any) -> None:
    """conversations.create/update and items.create name an unknown parameter."""
    with pytest.raises(openai.BadRequestError) as caught:
        await client.conversations.create(extra_body={"title": "x"})
    assert_unknown(caught, "title")
    conv = await client.conversations.create()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.conversations.update(conv.id, metadata={}, extra_body={"name": "x"})
    assert_unknown(caught, "name")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.conversations.items.create(conv.id, items=[], extra_body={"item": {}})
    assert_unknown(caught, "item")


async def test_assistants_endpoints_refuse_unknown_parameters(client: Any) -> None:
    """Create assistant, thread, message, run, thread-and-run and submit outputs each refuse
    a parameter the API does not have."""
    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.assistants.create(model="gpt-4o", extra_body={"colour": "red"})
    assert_unknown(caught, "colour")
    assistant = await client.beta.assistants.create(model="gpt-4o", tools=[])
    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.create(extra_body={"title": "t"})
    assert_unknown(caught, "title")
    thread = await client.beta.threads.create()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.messages.create(
            thread.id, role="user", content="hi", extra_body={"name": "me"}
        )
    assert_unknown(caught, "name")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.runs.create(
            thread.id, assistant_id=assistant.id, extra_body={"max_tokens": 5}
        )
    assert_unknown(caught, "max_tokens")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.create_and_run(
            assistant_id=assistant.id, thread={"messages": [], "title": "x"}
        )
    assert_unknown(caught, "thread.title")
    await client.beta.threads.messages.create(thread.id, role="user", content="/call f {}")
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        tools=[{"type": "function", "function": {"name": "f"}}],
    )
    assert run.status == "requires_action"
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.runs.submit_tool_outputs(
            run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": call_id, "output": "1"}],
            extra_body={"outputs": []},
        )
    assert_unknown(caught, "outputs")


async def test_assistants_runs_accept_every_sdk_parameter(client: Any) -> None:
    """runs.create with every SDK parameter is accepted (include travels in the query)."""
    assistant = await client.beta.assistants.create(model="gpt-4o", instructions="x", name="n")
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        additional_instructions="more",
        additional_messages=[{"role": "user", "content": "again"}],
        include=["step_details.tool_calls[*].file_search.results[*].content"],
        instructions="inst",
        max_completion_tokens=100,
        max_prompt_tokens=1000,
        metadata={"a": "b"},
        model="gpt-4o",
        parallel_tool_calls=True,
        reasoning_effort="low",
        response_format="auto",
        temperature=1.0,
        tool_choice="auto",
        tools=[],
        top_p=1.0,
        truncation_strategy={"type": "auto"},
    )
    assert run.status == "completed"
