"""The scripted model: /call rules, forced tool_choice, parallelism, token limits, scenarios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.emulator import Emulator, Scenario, ScenarioError
from runtime.emulator.model import (
    ChatMessage,
    FunctionSpec,
    ModelInput,
    ScriptedModel,
    ToolExchange,
    Turn,
    example_arguments,
    frozen_instance,
    parse_call_lines,
    text_pieces,
)

SCENARIOS = Path(__file__).resolve().parents[3] / "config" / "scenarios"


def test_call_lines_parse_and_invalid_json_passes_through() -> None:
    """/call lines give compact JSON; broken JSON is kept verbatim for the client to handle."""
    calls = parse_call_lines('intro\n/call a {"x": 1}\n  /call b\n/call c {broken')
    assert [(c.name, c.arguments) for c in calls] == [
        ("a", '{"x":1}'),
        ("b", "{}"),
        ("c", "{broken"),
    ]


def test_text_pieces_rebuild_the_text_exactly() -> None:
    """Word pieces keep their leading whitespace, so joining them gives the text back."""
    text = "Hello!  How can\nI help?  "
    assert "".join(text_pieces(text)) == text


def test_frozen_instance_equals_the_constructed_one_and_stays_frozen() -> None:
    """An instance built without ``__init__`` equals, hashes and repr()s as the constructed one."""
    fields = {"role": "user", "text": "hi"}
    built, made = frozen_instance(ChatMessage, dict(fields)), ChatMessage(**fields)
    assert built == made and hash(built) == hash(made) and repr(built) == repr(made)
    with pytest.raises(AttributeError):
        built.text = "changed"  # type: ignore[misc]


def test_default_turns_equal_the_constructed_turns() -> None:
    """The model's text and tool-call turns (built without ``__init__``) equal ``Turn(...)``."""
    model = ScriptedModel()
    text = model.decide(ModelInput(messages=[ChatMessage("user", "three little words")]))
    assert text == Turn(kind="text", text="You said: three little words", prompt_tokens=3)
    assert repr(text) == repr(Turn(kind="text", text=text.text, prompt_tokens=3))
    calls = model.decide(ModelInput(messages=[ChatMessage("user", '/call echo {"x": 1}')]))
    assert calls == Turn(kind="tool_calls", calls=calls.calls, prompt_tokens=4)
    assert calls.calls and calls.calls[0].name == "echo"


def test_default_model_is_deterministic_and_counts_words() -> None:
    """Same input gives the same turn; usage counts words of instructions and messages."""
    inp = ModelInput(messages=[ChatMessage("user", "three little words")], instructions="Be nice.")
    first, second = ScriptedModel().decide(inp), ScriptedModel().decide(inp)
    assert first == second
    assert first.text == "You said: three little words"
    assert first.prompt_tokens == 5 and first.completion_tokens == 5


def test_reply_after_outputs_quotes_them() -> None:
    """Once the planned calls have outputs, the reply quotes every one of them."""
    inp = ModelInput(
        messages=[ChatMessage("user", "/call f {}\n/call g {}")],
        exchanges=[
            ToolExchange("call_1", "f", "{}", "one"),
            ToolExchange("call_2", "g", "{}", "two"),
        ],
    )
    turn = ScriptedModel().decide(inp)
    assert turn.kind == "text" and turn.text == "f returned: one\ng returned: two"


def test_example_arguments_follow_the_schema() -> None:
    """Forced calls get values for required properties: enum first, typed defaults."""
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "days": {"type": "integer"},
            "opt": {"type": "boolean"},
        },
        "required": ["city", "unit", "days"],
    }
    assert example_arguments(schema) == {"city": "example", "unit": "c", "days": 1}


async def test_forced_tool_choice_calls_that_function(api: Any) -> None:
    """tool_choice naming a function makes a call with schema-built arguments."""
    assistant = await api.assistant()
    thread = await api.thread("what is the weather")
    body = {
        "assistant_id": assistant["id"],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    events = await api.stream(f"/threads/{thread['id']}/runs", body)
    (call,) = events[-2][1]["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "example"}


async def test_parallel_tool_calls_false_gives_one_call_per_step(api: Any) -> None:
    """Three /call lines with parallel_tool_calls=false take three requires_action rounds."""
    assistant = await api.assistant()
    thread = await api.thread(
        '/call get_weather {"location": "A"}\n/call get_weather {"location": "B"}\n/call get_weather {"location": "C"}'
    )
    events = await api.stream(
        f"/threads/{thread['id']}/runs",
        {"assistant_id": assistant["id"], "parallel_tool_calls": False},
    )
    seen = []
    for _ in range(3):
        run = events[-2][1]
        (call,) = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        seen.append(json.loads(call["function"]["arguments"])["location"])
        events = await api.stream(
            f"/threads/{thread['id']}/runs/{run['id']}/submit_tool_outputs",
            {"tool_outputs": [{"tool_call_id": call["id"], "output": seen[-1].lower()}]},
        )
    assert seen == ["A", "B", "C"]
    text = dict(events)["thread.message.completed"]["content"][0]["text"]["value"]
    assert text.splitlines() == [f"get_weather returned: {x}" for x in "abc"]
    steps = await api.get(f"/threads/{thread['id']}/runs/{run['id']}/steps", order="asc")
    assert [s["type"] for s in steps["data"]] == ["tool_calls"] * 3 + ["message_creation"]


async def test_max_completion_tokens_ends_incomplete(api: Any) -> None:
    """The reply stops after max_completion_tokens words; message and run are incomplete."""
    assistant = await api.assistant()
    thread = await api.thread("one two three four five six")
    events = await api.stream(
        f"/threads/{thread['id']}/runs",
        {"assistant_id": assistant["id"], "max_completion_tokens": 3},
    )
    assert [e for e, _ in events[-4:]] == [
        "thread.message.incomplete",
        "thread.run.step.completed",
        "thread.run.incomplete",
        "done",
    ]
    run = events[-2][1]
    assert run["incomplete_details"] == {"reason": "max_completion_tokens"}
    assert run["usage"]["completion_tokens"] == 3
    message = dict(events)["thread.message.incomplete"]
    assert message["content"][0]["text"]["value"] == "You said: one"
    assert message["incomplete_details"] == {"reason": "max_tokens"}


async def test_max_prompt_tokens_ends_incomplete(api: Any) -> None:
    """A prompt longer than max_prompt_tokens ends the run incomplete before any step."""
    assistant = await api.assistant()
    thread = await api.thread(" ".join(["w"] * 50))
    events = await api.stream(
        f"/threads/{thread['id']}/runs",
        {"assistant_id": assistant["id"], "max_prompt_tokens": 10},
    )
    assert events[-2][0] == "thread.run.incomplete"
    assert events[-2][1]["incomplete_details"] == {"reason": "max_prompt_tokens"}
    assert "thread.run.step.created" not in dict(events)


async def test_weather_scenario_file(make_api: Any) -> None:
    """config/scenarios/weather.toml: two parallel calls, then a text quoting both outputs."""
    async with Emulator(scenario=SCENARIOS / "weather.toml") as emu:
        api = make_api(emu)
        assistant = await api.assistant()
        thread = await api.thread("anything")
        events = await api.stream(
            f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]}
        )
        run = events[-2][1]
        calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        assert [json.loads(c["function"]["arguments"])["location"] for c in calls] == [
            "Paris",
            "Tokyo",
        ]
        outputs = [{"tool_call_id": c["id"], "output": f"{i}C"} for i, c in enumerate(calls)]
        events = await api.stream(
            f"/threads/{thread['id']}/runs/{run['id']}/submit_tool_outputs",
            {"tool_outputs": outputs},
        )
        text = dict(events)["thread.message.completed"]["content"][0]["text"]["value"]
        assert text == "Here is the weather. get_weather returned: 0C\nget_weather returned: 1C"


async def test_flaky_scenario_fails_then_incomplete_then_default(make_api: Any) -> None:
    """config/scenarios/flaky-model.toml: failed with last_error, then incomplete, then text."""
    async with Emulator(scenario=SCENARIOS / "flaky-model.toml") as emu:
        api = make_api(emu)
        assistant = await api.assistant()
        thread = await api.thread("hello")
        url, body = f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]}
        failed = (await api.stream(url, body))[-2][1]
        assert failed["status"] == "failed" and failed["failed_at"] is not None
        assert failed["last_error"] == {
            "code": "server_error",
            "message": "The model crashed while thinking.",
        }
        incomplete = (await api.stream(url, body))[-2][1]
        assert incomplete["status"] == "incomplete"
        assert incomplete["incomplete_details"] == {"reason": "max_completion_tokens"}
        completed = (await api.stream(url, body))[-2][1]
        assert completed["status"] == "completed"


def test_scenario_errors_are_reported() -> None:
    """Unknown turn types and tool_calls without calls are rejected when loading."""
    with pytest.raises(ScenarioError):
        Scenario.from_dict({"turns": [{"type": "dance"}]})
    with pytest.raises(ScenarioError):
        Scenario.from_dict({"turns": [{"type": "tool_calls"}]})
    with pytest.raises(ScenarioError):
        Scenario.from_dict({"then": "stop", "turns": []})


def test_scenario_match_only_consumes_fitting_turns() -> None:
    """A turn with match is skipped (default rules) until a message fits."""
    scenario = Scenario.from_dict({"turns": [{"match": "report", "text": "R: {user}"}]})
    model = ScriptedModel(scenario)
    other = model.decide(ModelInput(messages=[ChatMessage("user", "hello")]))
    assert other.text == "You said: hello"
    fitting = model.decide(ModelInput(messages=[ChatMessage("user", "the report")]))
    assert fitting.text == "R: the report"
    assert FunctionSpec("x").parameters == {}


def test_public_names_are_exactly_the_front_door() -> None:
    """runtime.emulator exports exactly its documented public API."""
    import runtime.emulator as package

    assert sorted(package.__all__) == package.__all__
    assert set(package.__all__) == {
        "Emulator",
        "EmulatorError",
        "Fault",
        "FaultSpec",
        "FaultSpecError",
        "ModelInput",
        "Scenario",
        "ScenarioError",
        "ScriptedModel",
        "Turn",
    }
    assert all(hasattr(package, name) for name in package.__all__)
