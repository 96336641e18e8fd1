"""Typed structured output on both protocols: output_type -> a strict schema on the wire ->
``result.output`` validated; a bad answer gets one retry with the error; never a crash."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from .conftest import Driver, fast, scenario


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Ticket(BaseModel):
    title: str
    priority: Priority
    tags: list[str]
    estimate: int = Field(ge=1, le=10)


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Label(TypedDict):
    name: str
    weight: int


def creates(driver: Driver) -> list[dict[str, Any]]:
    """Requests that started a run (a run on a thread, or a response)."""
    return [r for r in driver.requests("POST", driver.create_path) if r["json"] is not None]


def structured_settings(driver: Driver) -> list[dict[str, Any]]:
    """The structured-output setting of every create request, in the protocol's shape."""
    key = "response_format" if driver.is_assistants else "text"
    return [r["json"][key] for r in creates(driver) if key in r["json"]]


async def test_a_pydantic_model_answer_is_validated_into_an_instance(driver: Driver) -> None:
    """The model's JSON answer becomes a Ticket; the schema went out strict, runtime-decided."""
    result = await driver.run("file a ticket", output_type=Ticket)
    assert result.ok and result.output_error is None
    ticket = result.output
    assert isinstance(ticket, Ticket)
    assert isinstance(ticket.priority, Priority) and 1 <= ticket.estimate <= 10
    (setting,) = structured_settings(driver)
    if driver.is_assistants:
        assert setting["type"] == "json_schema"
        schema = setting["json_schema"]
    else:
        schema = setting["format"]
        assert schema["type"] == "json_schema"
    assert schema["name"] == "Ticket" and schema["strict"] is True
    assert schema["schema"]["additionalProperties"] is False
    assert schema["schema"]["required"] == ["title", "priority", "tags", "estimate"]


async def test_dataclass_and_typeddict_outputs(driver: Driver) -> None:
    """Dataclasses and TypedDicts are output types too."""
    point = await driver.run("a point", output_type=Point)
    assert point.ok and isinstance(point.output, Point)
    label = await driver.run("a label", output_type=Label)
    assert label.ok and isinstance(label.output, dict)
    assert set(label.output) == {"name", "weight"} and isinstance(label.output["weight"], int)


async def test_an_invalid_answer_gets_one_retry_that_names_the_error(driver: Driver) -> None:
    """A scripted bad answer: the model is told what was wrong in the same conversation and
    the second answer validates; both runs' usage and rounds are counted once each."""
    driver.emu.set_scenario(scenario({"type": "text", "text": '{"x": "not a number"}'}))
    result = await driver.run("a point", output_type=Point)
    assert result.ok and isinstance(result.output, Point), result.output_error
    assert len(creates(driver)) == 2
    # Assistants: the feedback is a message on the thread; Responses: the retry's input.
    sent = driver.requests("POST", r"/messages$") if driver.is_assistants else creates(driver)[1:]
    feedback = str([r["json"] for r in sent])
    assert "does not match the required JSON schema" in feedback and "x:" in feedback


async def test_an_answer_that_never_validates_is_a_typed_result(driver: Driver) -> None:
    """Past output_retries the result says why (output_error), with output None: no crash."""
    bad = {"type": "text", "text": "not json at all"}
    driver.emu.set_scenario(scenario(bad, bad, bad))
    driver.orch.runner.policy = fast(output_retries=1)
    result = await driver.run("a point", output_type=Point)
    assert result.status == "completed" and result.output is None
    assert result.output_error and "JSON" in result.output_error
    assert len(creates(driver)) == 2  # the first answer and one retry
