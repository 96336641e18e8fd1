"""Pydantic models of the Assistants API objects (v2), tolerant by design.

Every model keeps fields the server adds later (``extra="allow"``) and almost every field is
optional, because a runtime that crashes on a new field is worse than one that ignores it.
Content parts, annotations and tool calls are unions with an ``Unknown*`` fallback for types
this version does not know.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, Tag

from runtime.protocol.objects import BY_TYPE, FIRST_MATCH, APIModel, APIObject

RunStatus = Literal[
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "cancelled",
    "failed",
    "completed",
    "incomplete",
    "expired",
]
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"cancelled", "failed", "completed", "incomplete", "expired"}
)
ACTIVE_STATUSES: frozenset[str] = frozenset(
    {"queued", "in_progress", "requires_action", "cancelling"}
)


class Usage(APIModel):
    """Token usage of a run or step."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class LastError(APIModel):
    """Why a run or step failed (``code`` is e.g. server_error, rate_limit_exceeded)."""

    code: str | None = None
    message: str | None = None


class IncompleteDetails(APIModel):
    """Why a run or message is incomplete (e.g. max_completion_tokens)."""

    reason: str | None = None


class FunctionCall(APIModel):
    """A function the model asked for: its name and JSON-encoded arguments."""

    name: str = ""
    arguments: str = ""


class RequiredToolCall(APIModel):
    """One tool call awaiting an output in ``required_action``."""

    id: str
    type: str = "function"
    function: FunctionCall = Field(default_factory=FunctionCall)


class SubmitToolOutputs(APIModel):
    """The calls whose outputs must be submitted together."""

    tool_calls: list[RequiredToolCall] = Field(default_factory=list)


class RequiredAction(APIModel):
    """What a run in ``requires_action`` needs."""

    type: str = "submit_tool_outputs"
    submit_tool_outputs: SubmitToolOutputs = Field(default_factory=SubmitToolOutputs)


class Assistant(APIObject):
    """An assistant: model, instructions and tools."""

    id: str
    object: str = "assistant"
    created_at: int | None = None
    name: str | None = None
    description: str | None = None
    model: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    response_format: Any = None
    tool_resources: dict[str, Any] | None = None


class Thread(APIObject):
    """A conversation thread."""

    id: str
    object: str = "thread"
    created_at: int | None = None
    metadata: dict[str, Any] | None = None
    tool_resources: dict[str, Any] | None = None


# --- message content -------------------------------------------------------------------------


class FileCitation(APIModel):
    """Where a file citation points."""

    file_id: str | None = None
    quote: str | None = None


class FilePath(APIModel):
    """A file produced by a tool."""

    file_id: str | None = None


class FileCitationAnnotation(APIModel):
    """A citation of a file in message text."""

    type: Literal["file_citation"]
    text: str | None = None
    start_index: int | None = None
    end_index: int | None = None
    file_citation: FileCitation | None = None


class FilePathAnnotation(APIModel):
    """A link to a generated file in message text."""

    type: Literal["file_path"]
    text: str | None = None
    start_index: int | None = None
    end_index: int | None = None
    file_path: FilePath | None = None


class UnknownAnnotation(APIModel):
    """An annotation type this version does not know (kept as is)."""

    type: str


Annotation = FileCitationAnnotation | FilePathAnnotation | UnknownAnnotation
#: How an annotation is validated: the member its ``type`` names, else the fallback.
AnnotationByType = Annotated[
    Annotated[
        Annotated[FileCitationAnnotation, Tag("file_citation")]
        | Annotated[FilePathAnnotation, Tag("file_path")],
        BY_TYPE,
    ]
    | UnknownAnnotation,
    FIRST_MATCH,
]


class Text(APIModel):
    """Text content: the value and its annotations."""

    value: str = ""
    annotations: list[AnnotationByType] = Field(default_factory=list)


class TextContent(APIModel):
    """A text part of a message."""

    type: Literal["text"]
    text: Text = Field(default_factory=Text)


class ImageFile(APIModel):
    """An image stored as a file."""

    file_id: str | None = None
    detail: str | None = None


class ImageFileContent(APIModel):
    """An image-file part of a message."""

    type: Literal["image_file"]
    image_file: ImageFile = Field(default_factory=ImageFile)


class ImageURL(APIModel):
    """An image by URL."""

    url: str | None = None
    detail: str | None = None


class ImageURLContent(APIModel):
    """An image-URL part of a message."""

    type: Literal["image_url"]
    image_url: ImageURL = Field(default_factory=ImageURL)


class RefusalContent(APIModel):
    """The model refused to answer."""

    type: Literal["refusal"]
    refusal: str = ""


class UnknownContent(APIModel):
    """A content type this version does not know (kept as is)."""

    type: str


MessageContent = TextContent | ImageFileContent | ImageURLContent | RefusalContent | UnknownContent
#: How a message content part is validated: the member its ``type`` names, else the fallback.
MessageContentByType = Annotated[
    Annotated[
        Annotated[TextContent, Tag("text")]
        | Annotated[ImageFileContent, Tag("image_file")]
        | Annotated[ImageURLContent, Tag("image_url")]
        | Annotated[RefusalContent, Tag("refusal")],
        BY_TYPE,
    ]
    | UnknownContent,
    FIRST_MATCH,
]


class Message(APIObject):
    """A message in a thread."""

    id: str
    object: str = "thread.message"
    created_at: int | None = None
    thread_id: str | None = None
    status: str | None = None
    incomplete_details: IncompleteDetails | None = None
    completed_at: int | None = None
    incomplete_at: int | None = None
    role: str = "assistant"
    content: list[MessageContentByType] = Field(default_factory=list)
    assistant_id: str | None = None
    run_id: str | None = None
    attachments: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        """All text parts joined (images and unknown parts are skipped)."""
        return "".join(part.text.value for part in self.content if isinstance(part, TextContent))


# --- runs ------------------------------------------------------------------------------------


class Run(APIObject):
    """A run of an assistant on a thread."""

    id: str
    object: str = "thread.run"
    created_at: int | None = None
    assistant_id: str | None = None
    thread_id: str = ""
    status: str = "queued"
    started_at: int | None = None
    expires_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    required_action: RequiredAction | None = None
    last_error: LastError | None = None
    model: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_completion_tokens: int | None = None
    max_prompt_tokens: int | None = None
    truncation_strategy: dict[str, Any] | None = None
    incomplete_details: IncompleteDetails | None = None
    usage: Usage | None = None
    response_format: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the run can no longer change."""
        return self.status in TERMINAL_STATUSES

    @property
    def required_tool_calls(self) -> list[RequiredToolCall]:
        """The tool calls awaiting outputs (empty unless requires_action)."""
        if self.required_action is None:
            return []
        return self.required_action.submit_tool_outputs.tool_calls


# --- run steps -------------------------------------------------------------------------------


class FunctionDetails(APIModel):
    """A function tool call inside a run step."""

    name: str = ""
    arguments: str = ""
    output: str | None = None


class FunctionToolCall(APIModel):
    """A function call recorded in a run step."""

    id: str = ""
    type: Literal["function"]
    function: FunctionDetails = Field(default_factory=FunctionDetails)


class CodeInterpreter(APIModel):
    """Input and outputs of a code interpreter call."""

    input: str = ""
    outputs: list[dict[str, Any]] = Field(default_factory=list)


class CodeInterpreterToolCall(APIModel):
    """A code interpreter call recorded in a run step."""

    id: str = ""
    type: Literal["code_interpreter"]
    code_interpreter: CodeInterpreter = Field(default_factory=CodeInterpreter)


class FileSearchToolCall(APIModel):
    """A file search call recorded in a run step."""

    id: str = ""
    type: Literal["file_search"]
    file_search: dict[str, Any] = Field(default_factory=dict)


class UnknownToolCall(APIModel):
    """A tool call type this version does not know."""

    id: str = ""
    type: str


StepToolCall = FunctionToolCall | CodeInterpreterToolCall | FileSearchToolCall | UnknownToolCall
#: How a run step's tool call is validated: the member its ``type`` names, else the fallback.
StepToolCallByType = Annotated[
    Annotated[
        Annotated[FunctionToolCall, Tag("function")]
        | Annotated[CodeInterpreterToolCall, Tag("code_interpreter")]
        | Annotated[FileSearchToolCall, Tag("file_search")],
        BY_TYPE,
    ]
    | UnknownToolCall,
    FIRST_MATCH,
]


class MessageCreation(APIModel):
    """Which message a message_creation step produced."""

    message_id: str = ""


class MessageCreationStepDetails(APIModel):
    """Details of a step that created a message."""

    type: Literal["message_creation"]
    message_creation: MessageCreation = Field(default_factory=MessageCreation)


class ToolCallsStepDetails(APIModel):
    """Details of a step that called tools."""

    type: Literal["tool_calls"]
    tool_calls: list[StepToolCallByType] = Field(default_factory=list)


class UnknownStepDetails(APIModel):
    """Step details of a type this version does not know."""

    type: str


StepDetails = MessageCreationStepDetails | ToolCallsStepDetails | UnknownStepDetails
#: How a run step's details are validated: the member their ``type`` names, else the fallback.
StepDetailsByType = Annotated[
    Annotated[
        Annotated[MessageCreationStepDetails, Tag("message_creation")]
        | Annotated[ToolCallsStepDetails, Tag("tool_calls")],
        BY_TYPE,
    ]
    | UnknownStepDetails,
    FIRST_MATCH,
]


class RunStep(APIObject):
    """One step of a run: a message creation or a batch of tool calls."""

    id: str
    object: str = "thread.run.step"
    created_at: int | None = None
    run_id: str | None = None
    assistant_id: str | None = None
    thread_id: str | None = None
    type: str | None = None
    status: str | None = None
    cancelled_at: int | None = None
    completed_at: int | None = None
    expired_at: int | None = None
    failed_at: int | None = None
    last_error: LastError | None = None
    step_details: StepDetailsByType | None = None
    usage: Usage | None = None
    metadata: dict[str, Any] | None = None


# --- deltas ----------------------------------------------------------------------------------


class TextDelta(APIModel):
    """A fragment of text to append."""

    value: str | None = None
    annotations: list[dict[str, Any]] | None = None


class MessageContentDelta(APIModel):
    """A fragment of one content part, addressed by ``index``."""

    index: int = 0
    type: str = "text"
    text: TextDelta | None = None
    image_file: ImageFile | None = None
    image_url: ImageURL | None = None
    refusal: str | None = None


class MessageDeltaBody(APIModel):
    """The changed fields of a message."""

    role: str | None = None
    content: list[MessageContentDelta] = Field(default_factory=list)


class MessageDelta(APIModel):
    """The ``thread.message.delta`` object."""

    id: str
    object: str = "thread.message.delta"
    delta: MessageDeltaBody = Field(default_factory=MessageDeltaBody)


class FunctionDelta(APIModel):
    """A fragment of a function call: name first, then argument pieces."""

    name: str | None = None
    arguments: str | None = None
    output: str | None = None


class ToolCallDelta(APIModel):
    """A fragment of one tool call, addressed by ``index``."""

    index: int = 0
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None
    code_interpreter: dict[str, Any] | None = None
    file_search: dict[str, Any] | None = None


class StepDetailsDelta(APIModel):
    """The changed step details."""

    type: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    message_creation: MessageCreation | None = None


class RunStepDeltaBody(APIModel):
    """The changed fields of a run step."""

    step_details: StepDetailsDelta | None = None


class RunStepDelta(APIModel):
    """The ``thread.run.step.delta`` object."""

    id: str
    object: str = "thread.run.step.delta"
    delta: RunStepDeltaBody = Field(default_factory=RunStepDeltaBody)
