"""Pydantic models of the Responses API objects, tolerant like :mod:`runtime.assistants.models`.

Unknown fields are kept, almost every field is optional, and output items and content parts
fall back to ``Unknown*`` models for types this version does not know (reasoning, web search,
...), so a new server feature never crashes the runtime.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, Tag

from runtime.assistants.models import IncompleteDetails
from runtime.protocol.objects import BY_TYPE, FIRST_MATCH, APIModel, APIObject

ResponseStatus = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
TERMINAL_RESPONSE_STATUSES: frozenset[str] = frozenset(
    {"completed", "incomplete", "failed", "cancelled"}
)
ACTIVE_RESPONSE_STATUSES: frozenset[str] = frozenset({"queued", "in_progress"})


class ResponseUsage(APIModel):
    """Token usage of a response (``input_tokens`` / ``output_tokens``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: dict[str, Any] | None = None
    output_tokens_details: dict[str, Any] | None = None

    @property
    def prompt_tokens(self) -> int:
        """Alias of ``input_tokens`` (the Assistants name)."""
        return self.input_tokens

    @property
    def completion_tokens(self) -> int:
        """Alias of ``output_tokens`` (the Assistants name)."""
        return self.output_tokens

    def __add__(self, other: ResponseUsage) -> ResponseUsage:
        return ResponseUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class ResponseError(APIModel):
    """Why a response failed (``code`` is e.g. server_error, rate_limit_exceeded)."""

    code: str | None = None
    message: str | None = None


class OutputText(APIModel):
    """An ``output_text`` content part."""

    type: Literal["output_text"]
    text: str = ""
    annotations: list[dict[str, Any]] = Field(default_factory=list)


class OutputRefusal(APIModel):
    """A ``refusal`` content part."""

    type: Literal["refusal"]
    refusal: str = ""


class UnknownPart(APIModel):
    """A content part type this version does not know (kept as is)."""

    type: str


OutputContent = OutputText | OutputRefusal | UnknownPart
#: How a content part is validated: the member its ``type`` names, else the fallback.
OutputContentByType = Annotated[
    Annotated[
        Annotated[OutputText, Tag("output_text")] | Annotated[OutputRefusal, Tag("refusal")],
        BY_TYPE,
    ]
    | UnknownPart,
    FIRST_MATCH,
]


class OutputMessage(APIModel):
    """A ``message`` output item (the assistant's text)."""

    type: Literal["message"]
    id: str = ""
    status: str | None = None
    role: str = "assistant"
    content: list[OutputContentByType] = Field(default_factory=list)

    @property
    def text(self) -> str:
        """All ``output_text`` parts joined."""
        return "".join(p.text for p in self.content if isinstance(p, OutputText))


class FunctionCallItem(APIModel):
    """A ``function_call`` output item: answer it with a ``function_call_output`` input item.

    ``call_id`` is what the output refers to; ``id`` is the item's own id.
    """

    type: Literal["function_call"]
    id: str | None = None
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    status: str | None = None


class UnknownItem(APIModel):
    """An output item type this version does not know (reasoning, web_search_call, ...)."""

    type: str
    id: str | None = None


OutputItem = OutputMessage | FunctionCallItem | UnknownItem
#: How an output item is validated: the member its ``type`` names, else the fallback.
OutputItemByType = Annotated[
    Annotated[
        Annotated[OutputMessage, Tag("message")]
        | Annotated[FunctionCallItem, Tag("function_call")],
        BY_TYPE,
    ]
    | UnknownItem,
    FIRST_MATCH,
]


class Conversation(APIObject):
    """A conversation: the Responses successor of a thread (its items are the history)."""

    id: str
    object: str = "conversation"
    created_at: float | None = None
    metadata: dict[str, Any] | None = None


class ResponseConversation(APIObject):
    """The conversation a response belongs to (``conversation`` of a response)."""

    id: str


class Response(APIObject):
    """A model response: its status, output items and usage."""

    id: str
    object: str = "response"
    created_at: float | None = None
    status: str | None = None
    background: bool | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: Any = None
    max_output_tokens: int | None = None
    model: str | None = None
    output: list[OutputItemByType] = Field(default_factory=list)
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    conversation: ResponseConversation | None = None
    store: bool | None = None
    temperature: float | None = None
    tool_choice: Any = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    top_p: float | None = None
    usage: ResponseUsage | None = None
    metadata: dict[str, Any] | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the response can no longer change."""
        return self.status in TERMINAL_RESPONSE_STATUSES

    @property
    def function_calls(self) -> list[FunctionCallItem]:
        """The function calls the model asked for, in output order."""
        return [item for item in self.output if isinstance(item, FunctionCallItem)]

    @property
    def messages(self) -> list[OutputMessage]:
        """The assistant messages, in output order."""
        return [item for item in self.output if isinstance(item, OutputMessage)]

    @property
    def output_text(self) -> str:
        """The text of every output message, joined (as the SDK's ``output_text``)."""
        return "".join(m.text for m in self.messages)

    @property
    def last_error(self) -> ResponseError | None:
        """Alias of ``error`` (the Assistants name)."""
        return self.error
