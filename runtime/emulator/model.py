"""The scripted, deterministic model behind the emulator, independent of any wire protocol.

A front end (the Assistants API here; a Responses API front end can reuse it) turns its request
into a :class:`ModelInput` and asks :meth:`ScriptedModel.decide` for the next :class:`Turn`:
text, tool calls, a failure or an incomplete answer, with deterministic token usage.

Default rules (when no scenario turn applies):

1. lines ``/call NAME {json}`` in the last message, if it is a user message, become tool calls
   (all in one turn, or one per turn when parallel tool calls are off);
2. otherwise a forced ``tool_choice`` (a named function, or ``"required"``) calls that function
   with arguments built from its JSON schema (once per Assistants run; in every response of
   the Responses API, follow-ups included, as the service forces it per request);
3. once the calls of this run have outputs, the reply quotes every output verbatim
   (``NAME returned: OUTPUT`` per call);
4. otherwise a deterministic text reply (``You said: ...``).

In JSON mode a reply is ``{"reply": TEXT}``; with a JSON schema (structured outputs) it is a
value built deterministically from the schema (:mod:`runtime.emulator.schema_values`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Literal, TypeVar

from runtime.emulator.schema_values import object_for, value_for

TurnKind = Literal["text", "tool_calls", "fail", "incomplete"]

_CALL_LINE = re.compile(r"^\s*/call\s+([A-Za-z0-9_.-]+)\s*(.*?)\s*$")
_TEXT_PIECE = re.compile(r"\s*\S+|\s+$")
_ARG_PIECE = re.compile(r"\w+|\W+")

_Frozen = TypeVar("_Frozen")
_new_instance = object.__new__
_set_attribute = object.__setattr__


def frozen_instance(cls: type[_Frozen], values: dict[str, Any]) -> _Frozen:
    """An instance of the frozen dataclass ``cls`` from the values of all of its fields.

    Equal to ``cls(**values)``, without the generated ``__init__``'s ``object.__setattr__``
    call a field (the emulator builds a ``ModelInput`` and a ``Turn`` a turn); ``values``
    must name every field and becomes the instance's ``__dict__``.
    """
    instance = _new_instance(cls)
    _set_attribute(instance, "__dict__", values)
    return instance


@dataclass(frozen=True)
class ChatMessage:
    """One message of the conversation as the model sees it.

    Attributes:
        role: ``user`` or ``assistant``.
        text: the text parts of the message joined by newlines.
    """

    role: str
    text: str


@dataclass(frozen=True)
class FunctionSpec:
    """A function tool offered to the model.

    Attributes:
        name: function name.
        parameters: its JSON schema (may be empty).
    """

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolExchange:
    """A tool call made earlier in this run, with the output the client returned.

    Attributes:
        call_id: the tool call id.
        name: function name.
        arguments: the JSON arguments string the model produced.
        output: the output string the client submitted.
    """

    call_id: str
    name: str
    arguments: str
    output: str


@dataclass(frozen=True)
class ModelInput:
    """Everything the model may look at to decide its next turn.

    Attributes:
        messages: the conversation, oldest first (already truncated).
        instructions: system instructions, if any.
        tools: function tools offered.
        tool_choice: ``"auto"``, ``"none"``, ``"required"`` or ``{"type": "function", ...}``.
        parallel_tool_calls: whether several calls may be made in one turn.
        exchanges: tool calls of this run that already have outputs, in order.
        json_mode: the reply must be a JSON object (``response_format`` json_object/json_schema).
        json_schema: the schema the reply must follow (structured outputs), if any.
        forced_each_turn: a forced ``tool_choice`` forces a call in this turn even after
            earlier calls were answered (the Responses API forces it per request).
    """

    messages: Sequence[ChatMessage]
    instructions: str | None = None
    tools: Sequence[FunctionSpec] = ()
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    exchanges: Sequence[ToolExchange] = ()
    json_mode: bool = False
    json_schema: Mapping[str, Any] | None = None
    forced_each_turn: bool = False


@dataclass(frozen=True)
class PlannedCall:
    """A tool call the model wants to make.

    Attributes:
        name: function name.
        arguments: JSON arguments string (passed through as written, even if not valid JSON).
    """

    name: str
    arguments: str


@dataclass(frozen=True)
class Turn:
    """The model's decision for one step.

    Attributes:
        kind: ``text``, ``tool_calls``, ``fail`` or ``incomplete``.
        text: reply text (``text`` and ``incomplete``).
        calls: tool calls (``tool_calls``).
        delay_s: "thinking" time before the turn starts streaming.
        delta_delay_s: pause between streamed pieces (overrides the server knob when set).
        error_code: ``last_error.code`` for ``fail``.
        error_message: ``last_error.message`` for ``fail``.
        incomplete_reason: ``incomplete_details.reason`` for ``incomplete``.
        prompt_tokens: deterministic prompt size (words of everything the model read).
    """

    kind: TurnKind
    text: str = ""
    calls: tuple[PlannedCall, ...] = ()
    delay_s: float = 0.0
    delta_delay_s: float | None = None
    error_code: str = "server_error"
    error_message: str = "Sorry, something went wrong."
    incomplete_reason: str = "max_completion_tokens"
    prompt_tokens: int = 0

    def text_pieces(self) -> list[str]:
        """Return the text as word-sized deltas whose concatenation is exactly the text."""
        return text_pieces(self.text)

    @property
    def completion_tokens(self) -> int:
        """Deterministic completion size: one token per text piece or argument piece."""
        if self.kind == "tool_calls":
            return sum(1 + len(argument_pieces(c.arguments)) for c in self.calls)
        return len(self.text_pieces())


def text_pieces(text: str) -> list[str]:
    """Split text into word-sized pieces (leading whitespace kept) that join back exactly."""
    return _TEXT_PIECE.findall(text)


def argument_pieces(arguments: str) -> list[str]:
    """Split a JSON arguments string into fragments as the service streams them."""
    return _ARG_PIECE.findall(arguments)


def count_words(text: str | None) -> int:
    """The emulator's token count: whitespace-separated words."""
    return len(text.split()) if text else 0


def prompt_tokens(inp: ModelInput) -> int:
    """Count the words of everything the model reads for a turn."""
    total = count_words(inp.instructions)
    # Loops, not sum() over generators: a generator costs more to make than a turn's few items.
    for message in inp.messages:
        total += count_words(message.text)
    for exchange in inp.exchanges:
        total += count_words(exchange.arguments) + count_words(exchange.output)
    return total


def parse_call_lines(text: str) -> list[PlannedCall]:
    """Find ``/call NAME {json}`` lines; valid JSON is compacted, anything else passed through."""
    calls: list[PlannedCall] = []
    if "/call" not in text:  # every call line holds it: most messages need no line split
        return calls
    for line in text.splitlines():
        match = _CALL_LINE.match(line)
        if match is None:
            continue
        name, raw = match.group(1), match.group(2)
        arguments = _normalise_arguments(raw)
        calls.append(frozen_instance(PlannedCall, {"name": name, "arguments": arguments}))
    return calls


def _normalise_arguments(raw: str) -> str:
    if not raw:
        return "{}"
    try:
        return json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return raw  # invalid JSON reaches the client as is, so its error handling can be tested


def quote_outputs(exchanges: Sequence[ToolExchange]) -> str:
    """The reply after tool outputs: one ``NAME returned: OUTPUT`` line per call, verbatim."""
    return "\n".join(f"{e.name} returned: {e.output}" for e in exchanges)


def example_arguments(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Build arguments satisfying a JSON schema's required properties (deterministically;
    every property when the schema lists none as required)."""
    return object_for(schema, all_if_none=True)


def example_value(schema: Mapping[str, Any]) -> Any:
    """A deterministic value for one JSON schema node."""
    return value_for(schema)


def last_user_text(messages: Sequence[ChatMessage]) -> str | None:
    """Text of the last message if it is a user message (an unanswered request), else None."""
    if messages and messages[-1].role == "user":
        return messages[-1].text
    return None


def forced_function(inp: ModelInput) -> str | None:
    """Name of the function a ``tool_choice`` forces, if any."""
    choice = inp.tool_choice
    if type(choice) is str:  # mostly "auto": spared the (slower) abstract Mapping check
        return inp.tools[0].name if choice == "required" and inp.tools else None
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function") or {}
        name = function.get("name") if isinstance(function, Mapping) else None
        return str(name) if name else None
    if choice == "required" and inp.tools:
        return inp.tools[0].name
    return None


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


MODEL_INPUT_DEFAULTS = _defaults(ModelInput)
"""The default values of ``ModelInput``'s fields, for :func:`frozen_instance`."""
TURN_DEFAULTS = _defaults(Turn)
"""The default values of ``Turn``'s fields, for :func:`frozen_instance`."""


class ScriptedModel:
    """Deterministic model: scenario turns first, then the default rules of the module doc."""

    def __init__(self, scenario: Any = None) -> None:
        """Create the model.

        Args:
            scenario: a :class:`runtime.emulator.scenario.Scenario` (or None for default rules).
        """
        self.scenario = scenario

    def decide(self, inp: ModelInput) -> Turn:
        """Return the next turn for this input (scenario first, then default rules)."""
        tokens = prompt_tokens(inp)
        if self.scenario is not None:
            scripted = self.scenario.next_turn(inp)
            if scripted is not None:
                return _with_prompt_tokens(scripted, tokens)
        return self.default_turn(inp, prompt_tokens=tokens)

    def default_turn(self, inp: ModelInput, *, prompt_tokens: int = 0) -> Turn:
        """The default rules, without scenario (the turn carries ``prompt_tokens``)."""
        planned = self._planned_calls(inp)
        remaining = planned[len(inp.exchanges) :]
        if not remaining and inp.forced_each_turn:
            remaining = self._forced_calls(inp)
        if remaining and inp.tool_choice != "none":
            calls = remaining if inp.parallel_tool_calls else remaining[:1]
            return _turn("tool_calls", "", tuple(calls), prompt_tokens)
        if inp.exchanges:
            text = quote_outputs(inp.exchanges)
        else:
            user_text = last_user_text(inp.messages)
            text = (
                "Hello! How can I assist you today?"
                if user_text is None
                else f"You said: {user_text}"
            )
        return _turn("text", self._shape(inp, text), (), prompt_tokens)

    def _planned_calls(self, inp: ModelInput) -> list[PlannedCall]:
        user_text = last_user_text(inp.messages)
        calls = parse_call_lines(user_text) if user_text is not None else []
        return calls or self._forced_calls(inp)

    @staticmethod
    def _forced_calls(inp: ModelInput) -> list[PlannedCall]:
        forced = forced_function(inp)
        if forced is None:
            return []
        spec = next((t for t in inp.tools if t.name == forced), FunctionSpec(name=forced))
        arguments = json.dumps(example_arguments(spec.parameters), separators=(",", ":"))
        return [PlannedCall(name=forced, arguments=arguments)]

    @staticmethod
    def _shape(inp: ModelInput, text: str) -> str:
        if inp.json_schema is not None:
            return json.dumps(value_for(inp.json_schema), ensure_ascii=False)
        if inp.json_mode:
            return json.dumps({"reply": text}, ensure_ascii=False)
        return text


def _turn(kind: TurnKind, text: str, calls: tuple[PlannedCall, ...], tokens: int) -> Turn:
    return frozen_instance(
        Turn,
        {**TURN_DEFAULTS, "kind": kind, "text": text, "calls": calls, "prompt_tokens": tokens},
    )


def _with_prompt_tokens(turn: Turn, tokens: int) -> Turn:
    return replace(turn, prompt_tokens=tokens)
