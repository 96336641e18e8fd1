"""The values that cross the engine seam: frozen, protocol-neutral (see
:mod:`runtime.core.backend`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from tools import ToolCall

TurnStatus = Literal[
    "active",
    "cancelling",
    "requires_tools",
    "completed",
    "incomplete",
    "failed",
    "cancelled",
    "expired",
]
TERMINAL: frozenset[str] = frozenset({"completed", "incomplete", "failed", "cancelled", "expired"})

RawT = TypeVar("RawT")


@dataclass(frozen=True)
class TurnRef:
    """Where a turn lives.

    Attributes:
        id: the run id (Assistants) or the response id (Responses).
        conversation: the thread id (Assistants) or the conversation id (Responses), if any.
    """

    id: str
    conversation: str | None = None


@dataclass(frozen=True)
class Usage:
    """Token usage, the same on both protocols.

    Attributes:
        input_tokens: prompt tokens (Assistants ``prompt_tokens``).
        output_tokens: completion tokens (Assistants ``completion_tokens``).
        total_tokens: their sum as the server reports it.
        cached_tokens: input tokens served from the prompt cache, when reported.
        reasoning_tokens: output tokens spent on reasoning, when reported.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=_add_optional(self.cached_tokens, other.cached_tokens),
            reasoning_tokens=_add_optional(self.reasoning_tokens, other.reasoning_tokens),
        )


def _add_optional(a: int | None, b: int | None) -> int | None:
    if a is None and b is None:
        return None
    return (a or 0) + (b or 0)


@dataclass(frozen=True)
class TurnError:
    """The server's error for a failed turn.

    Attributes:
        code: machine-readable code (``server_error``, ``rate_limit_exceeded``, ...).
        message: readable message.
    """

    code: str | None
    message: str


@dataclass(frozen=True)
class TextPart:
    """One assistant message's text, as far as it is known.

    Attributes:
        id: the message (or output item) id.
        text: its text.
    """

    id: str
    text: str


@dataclass(frozen=True)
class Turn(Generic[RawT]):
    """Where a turn stands: a frozen value the loop matches on.

    Attributes:
        ref: where it lives.
        status: ``active`` (queued or in progress), ``cancelling``, ``requires_tools`` or a
            terminal status.
        tool_calls: the calls to answer when ``requires_tools``.
        texts: the assistant texts of this turn, in order.
        usage: token usage of this turn (cumulative for the run on Assistants).
        error: the server's error when failed.
        incomplete_reason: why it ended ``incomplete``.
        deadline: when the server expires the turn (epoch seconds on the server's clock),
            Assistants ``expires_at``; None on Responses.
        poll_after_s: the server's polling hint.
        last_sequence: the last stream sequence number seen (the point to resume after).
        raw: the protocol object (a ``Run`` or a ``Response``).
        model: the model the server ran the turn with, when it says.
    """

    ref: TurnRef
    status: TurnStatus
    tool_calls: tuple[ToolCall, ...] = ()
    texts: tuple[TextPart, ...] = ()
    usage: Usage | None = None
    error: TurnError | None = None
    incomplete_reason: str | None = None
    deadline: float | None = None
    poll_after_s: float | None = None
    last_sequence: int | None = None
    raw: RawT | None = None
    model: str | None = None

    def __init__(  # the dict written directly, as tools.ToolCall's (one Turn a stream)
        self,
        ref: TurnRef,
        status: TurnStatus,
        tool_calls: tuple[ToolCall, ...] = (),
        texts: tuple[TextPart, ...] = (),
        usage: Usage | None = None,
        error: TurnError | None = None,
        incomplete_reason: str | None = None,
        deadline: float | None = None,
        poll_after_s: float | None = None,
        last_sequence: int | None = None,
        raw: RawT | None = None,
        model: str | None = None,
    ) -> None:
        fields = self.__dict__
        fields["ref"] = ref
        fields["status"] = status
        fields["tool_calls"] = tool_calls
        fields["texts"] = texts
        fields["usage"] = usage
        fields["error"] = error
        fields["incomplete_reason"] = incomplete_reason
        fields["deadline"] = deadline
        fields["poll_after_s"] = poll_after_s
        fields["last_sequence"] = last_sequence
        fields["raw"] = raw
        fields["model"] = model

    @property
    def is_terminal(self) -> bool:
        """True for completed, incomplete, failed, cancelled and expired."""
        return self.status in TERMINAL


@dataclass(frozen=True)
class OutputSchema:
    """The JSON schema the model's answer must follow (structured output).

    Attributes:
        name: the schema's name (letters, digits, ``_`` and ``-``).
        schema: the JSON schema.
        strict: ask the server to enforce it exactly.
    """

    name: str
    schema: Mapping[str, object]
    strict: bool = True


@dataclass(frozen=True)
class StartRequest:
    """What to run, in neutral words.

    Attributes:
        input: new input: a user message's text, or message dicts (``{"role", "content"}``)
            and protocol input items.
        conversation: a thread (Assistants) or conversation (Responses) to continue.
        previous: a response to continue from (Responses ``previous_response_id``).
        agent: the assistant id (Assistants).
        model: the model (Responses; an override on Assistants).
        instructions: system instructions.
        tools: tool definitions (Chat/Assistants shape); None: the registry's.
        metadata: string metadata stored on the server object.
        params: other protocol fields, passed through as given.
        output: the schema the final answer must follow, if any.
    """

    input: str | tuple[Mapping[str, object], ...] = ()
    conversation: str | None = None
    previous: str | None = None
    agent: str | None = None
    model: str | None = None
    instructions: str | None = None
    tools: tuple[Mapping[str, object], ...] | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, object] = field(default_factory=dict)
    output: OutputSchema | None = None
