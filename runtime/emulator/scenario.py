"""Scenario files: TOML scripts of model turns for the emulator.

Example (see ``config/scenarios/``)::

    name = "weather"
    then = "default"          # when the script is used up: "default" rules, or "repeat"

    [[turns]]
    type = "tool_calls"       # text | tool_calls | fail | incomplete
    calls = [{ name = "get_weather", arguments = { location = "Paris" } }]

    [[turns]]
    type = "text"
    text = "Here you are: {outputs}"   # {outputs}: the quoted tool outputs; {user}: last user text
    delay_ms = 50                      # thinking time before the turn
    delta_delay_ms = 5                 # pause between streamed pieces

Each model step of any run takes the next turn whose optional ``match`` (a regular expression
searched in the last user message) fits; a turn that does not fit leaves the step to the
default rules.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runtime.emulator.model import ModelInput, PlannedCall, Turn, quote_outputs

_KINDS = {"text", "tool_calls", "fail", "incomplete"}


class ScenarioError(ValueError):
    """A scenario file is malformed."""


@dataclass(frozen=True)
class ScriptedTurn:
    """One turn of a scenario, before placeholders are filled in.

    Attributes:
        turn: the turn to play.
        match: regular expression the last user message must contain, if any.
    """

    turn: Turn
    match: re.Pattern[str] | None = None


class Scenario:
    """A sequence of scripted turns with a cursor shared by all runs of the emulator."""

    def __init__(self, turns: list[ScriptedTurn], *, name: str = "", then: str = "default"):
        """Create a scenario.

        Args:
            turns: the scripted turns in order.
            name: a label for logs.
            then: ``default`` (fall back to default rules when used up) or ``repeat``.
        """
        if then not in {"default", "repeat"}:
            raise ScenarioError(f"'then' must be 'default' or 'repeat', not {then!r}")
        self.turns = turns
        self.name = name
        self.then = then
        self.cursor = 0

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a scenario TOML file."""
        with Path(path).open("rb") as fh:
            return cls.from_dict(tomllib.load(fh))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """Build a scenario from parsed TOML (or an equivalent dict)."""
        raw_turns = data.get("turns", [])
        if not isinstance(raw_turns, list):
            raise ScenarioError("'turns' must be an array of tables")
        turns = [_parse_turn(i, t) for i, t in enumerate(raw_turns)]
        return cls(turns, name=str(data.get("name", "")), then=str(data.get("then", "default")))

    def next_turn(self, inp: ModelInput) -> Turn | None:
        """Consume and return the next scripted turn, or None to use the default rules."""
        if self.cursor >= len(self.turns):
            if self.then != "repeat" or not self.turns:
                return None
            self.cursor = 0
        scripted = self.turns[self.cursor]
        user = _last_user(inp)
        if scripted.match is not None and not scripted.match.search(user):
            return None
        self.cursor += 1
        return _fill(scripted.turn, inp, user)


def _last_user(inp: ModelInput) -> str:
    for message in reversed(inp.messages):
        if message.role == "user":
            return message.text
    return ""


def _fill(turn: Turn, inp: ModelInput, user: str) -> Turn:
    if "{" not in turn.text:
        return turn
    text = turn.text.replace("{outputs}", quote_outputs(inp.exchanges)).replace("{user}", user)
    return replace(turn, text=text)


def _parse_turn(index: int, raw: Any) -> ScriptedTurn:
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"turn {index}: must be a table")
    kind = raw.get("type", "text")
    if kind not in _KINDS:
        raise ScenarioError(f"turn {index}: unknown type {kind!r} (expected one of {_KINDS})")
    delta_ms = raw.get("delta_delay_ms")
    turn = Turn(
        kind=kind,
        text=str(raw.get("text", "")),
        calls=tuple(_parse_call(index, c) for c in raw.get("calls", [])),
        delay_s=float(raw.get("delay_ms", 0)) / 1000.0,
        delta_delay_s=None if delta_ms is None else float(delta_ms) / 1000.0,
        error_code=str(raw.get("code", "server_error")),
        error_message=str(raw.get("message", "Sorry, something went wrong.")),
        incomplete_reason=str(raw.get("reason", "max_completion_tokens")),
    )
    if kind == "tool_calls" and not turn.calls:
        raise ScenarioError(f"turn {index}: tool_calls needs at least one entry in 'calls'")
    match = raw.get("match")
    return ScriptedTurn(turn=turn, match=re.compile(str(match)) if match else None)


def _parse_call(index: int, raw: Any) -> PlannedCall:
    if not isinstance(raw, Mapping) or "name" not in raw:
        raise ScenarioError(f"turn {index}: each call needs a 'name'")
    arguments = raw.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    return PlannedCall(name=str(raw["name"]), arguments=arguments)
