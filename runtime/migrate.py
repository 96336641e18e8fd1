"""Move an Assistants thread into a Conversation (Threads -> Conversations, Runs -> Responses).

::

    async with AssistantsClient(...) as ac, ResponsesClient(...) as rc:
        report = await migrate_thread(ac, rc, "thread_abc")
        print(report.summary)
        result = await ResponsesOrchestrator(rc, registry, conversations=True).run(
            "next", conversation=report.conversation_id
        )

The conversation gets the thread's messages oldest first with their roles and text parts, and
each function call of the thread's runs as a ``function_call`` item followed by its
``function_call_output``, placed where it happened: before the message the same run wrote
after it (run steps give that order; ``created_at`` has only second resolution), or, for a
run that wrote no message, after the last message not newer than its first call (a message
added in the same second is taken as older). Content a
conversation message cannot carry as is (images, files, refusals, attachments) becomes a text
part describing it; hosted tool calls (code interpreter, file search) and calls that never got
an output are left out. The report says which.

The conversation's metadata says ``migrated_from_thread``; the thread's metadata gets
``migrated_to_conversation``, so migrating the same thread again returns the conversation made
the first time (``force=True`` makes a new one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.assistants.client import AssistantsClient
from runtime.assistants.models import (
    CodeInterpreterToolCall,
    FileSearchToolCall,
    FunctionToolCall,
    ImageFileContent,
    ImageURLContent,
    Message,
    MessageContent,
    MessageCreationStepDetails,
    RefusalContent,
    RunStep,
    TextContent,
    Thread,
    ToolCallsStepDetails,
)
from runtime.errors import NotFoundError, RuntimeAPIError
from runtime.responses.client import ResponsesClient

__all__ = [
    "FROM_THREAD_KEY",
    "MAX_ITEMS_PER_REQUEST",
    "TO_CONVERSATION_KEY",
    "MigrationError",
    "MigrationReport",
    "migrate_thread",
]

MAX_ITEMS_PER_REQUEST = 20
"""The most items the Conversations API takes in one request."""
FROM_THREAD_KEY = "migrated_from_thread"
"""Conversation metadata key naming the source thread."""
TO_CONVERSATION_KEY = "migrated_to_conversation"
"""Thread metadata key naming the conversation it was migrated into."""
_MAX_METADATA_KEYS = 16

Item = dict[str, Any]


class MigrationError(RuntimeAPIError):
    """Copying items failed after the conversation was created.

    Attributes:
        conversation_id: the partly filled conversation (delete it, or migrate again).
        items_copied: how many items it holds.
    """

    def __init__(self, message: str, *, conversation_id: str, items_copied: int) -> None:
        super().__init__(message)
        self.conversation_id = conversation_id
        self.items_copied = items_copied


@dataclass(frozen=True)
class MigrationReport:
    """What :func:`migrate_thread` did.

    Attributes:
        thread_id: the source thread.
        conversation_id: the conversation holding the thread's history.
        items_copied: items written to the conversation (0 when already migrated).
        messages: messages copied.
        tool_calls: function calls copied (each as a call item and an output item).
        batches: requests that carried items (at most 20 items each).
        described: non-text parts turned into descriptive text, e.g. ``msg_1: image_file``.
        skipped: what was left out and why, e.g. ``run_1: code_interpreter call``.
        already_migrated: the thread had been migrated into ``conversation_id`` before.
        thread_marked: the thread's metadata now names the conversation.
    """

    thread_id: str
    conversation_id: str
    items_copied: int = 0
    messages: int = 0
    tool_calls: int = 0
    batches: int = 0
    described: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    already_migrated: bool = False
    thread_marked: bool = False

    @property
    def summary(self) -> str:
        """One readable paragraph."""
        if self.already_migrated:
            return f"thread {self.thread_id} was already migrated to {self.conversation_id}"
        text = (
            f"thread {self.thread_id} -> conversation {self.conversation_id}: "
            f"{self.items_copied} items ({self.messages} messages, {self.tool_calls} tool calls) "
            f"in {self.batches} request(s)"
        )
        if self.described:
            text += f"; {len(self.described)} non-text part(s) described as text"
        if self.skipped:
            text += f"; {len(self.skipped)} left out: " + ", ".join(self.skipped)
        if not self.thread_marked:
            text += "; the thread is not marked as migrated"
        return text

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the summary included)."""
        return {
            "thread_id": self.thread_id,
            "conversation_id": self.conversation_id,
            "items_copied": self.items_copied,
            "messages": self.messages,
            "tool_calls": self.tool_calls,
            "batches": self.batches,
            "described": list(self.described),
            "skipped": list(self.skipped),
            "already_migrated": self.already_migrated,
            "thread_marked": self.thread_marked,
            "summary": self.summary,
        }


@dataclass
class _Plan:
    """The items to write and what was described or left out on the way."""

    items: list[Item] = field(default_factory=list)
    messages: int = 0
    tool_calls: int = 0
    described: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


async def migrate_thread(
    assistants: AssistantsClient,
    responses: ResponsesClient,
    thread_id: str,
    *,
    metadata: Mapping[str, str] | None = None,
    force: bool = False,
    mark_thread: bool = True,
) -> MigrationReport:
    """Copy a thread's messages and function calls into a new conversation.

    Args:
        assistants: a client of the server holding the thread.
        responses: a client of the server to hold the conversation (usually the same one).
        thread_id: the thread to migrate (it is read, and marked unless ``mark_thread`` is off).
        metadata: more conversation metadata (``migrated_from_thread`` is always set).
        force: migrate again even when the thread names an existing conversation.
        mark_thread: record ``migrated_to_conversation`` in the thread's metadata.

    Returns:
        The MigrationReport.

    Raises:
        NotFoundError: no such thread.
        MigrationError: items could not be written after the conversation was created.
        RuntimeAPIError: another API failure before anything was created.
    """
    thread = await assistants.retrieve_thread(thread_id)
    if not force:
        existing = await _earlier_migration(responses, thread)
        if existing is not None:
            return MigrationReport(thread_id, existing, already_migrated=True, thread_marked=True)
    plan = await _plan(assistants, thread_id)
    conversation_id, batches = await _write(responses, thread_id, plan.items, metadata)
    marked = mark_thread and await _mark(assistants, thread, conversation_id)
    return MigrationReport(
        thread_id=thread_id,
        conversation_id=conversation_id,
        items_copied=len(plan.items),
        messages=plan.messages,
        tool_calls=plan.tool_calls,
        batches=batches,
        described=tuple(plan.described),
        skipped=tuple(plan.skipped),
        thread_marked=marked,
    )


async def _earlier_migration(responses: ResponsesClient, thread: Thread) -> str | None:
    """The conversation this thread was migrated into, if it still exists and says so."""
    conversation_id = (thread.metadata or {}).get(TO_CONVERSATION_KEY)
    if not isinstance(conversation_id, str) or not conversation_id:
        return None
    try:
        conversation = await responses.retrieve_conversation(conversation_id)
    except NotFoundError:
        return None  # deleted since: migrate afresh
    if (conversation.metadata or {}).get(FROM_THREAD_KEY) != thread.id:
        return None
    return conversation.id


async def _mark(assistants: AssistantsClient, thread: Thread, conversation_id: str) -> bool:
    """Name the conversation in the thread's metadata; False when its metadata is full."""
    current = {str(k): str(v) for k, v in (thread.metadata or {}).items()}
    if TO_CONVERSATION_KEY not in current and len(current) >= _MAX_METADATA_KEYS:
        return False
    await assistants.update_thread(
        thread.id, metadata={**current, TO_CONVERSATION_KEY: conversation_id}
    )
    return True


async def _write(
    responses: ResponsesClient,
    thread_id: str,
    items: Sequence[Item],
    metadata: Mapping[str, str] | None,
) -> tuple[str, int]:
    """Create the conversation with the first batch, then append the others."""
    batches = [
        list(items[i : i + MAX_ITEMS_PER_REQUEST])
        for i in range(0, len(items), MAX_ITEMS_PER_REQUEST)
    ]
    first = batches[0] if batches else None
    conversation = await responses.create_conversation(
        items=first, metadata={**(metadata or {}), FROM_THREAD_KEY: thread_id}
    )
    copied = len(first or ())
    for batch in batches[1:]:
        try:
            await responses.add_items(conversation.id, batch)
        except RuntimeAPIError as exc:
            raise MigrationError(
                f"migrating thread {thread_id}: conversation {conversation.id} holds "
                f"{copied} of {len(items)} items; adding more failed: {exc.message}",
                conversation_id=conversation.id,
                items_copied=copied,
            ) from exc
        copied += len(batch)
    return conversation.id, len(batches)


# --- reading the thread ----------------------------------------------------------------------


async def _plan(assistants: AssistantsClient, thread_id: str) -> _Plan:
    """Every item of the thread, in the order things happened."""
    messages = [m async for m in assistants.list_messages(thread_id, order="asc", limit=100)]
    position = {m.id: index for index, m in enumerate(messages)}
    before: dict[int, list[RunStep]] = {}
    after: dict[int, list[RunStep]] = {}
    async for run in assistants.list_runs(thread_id, order="asc", limit=100):
        steps = [
            s async for s in assistants.list_run_steps(thread_id, run.id, order="asc", limit=100)
        ]
        _place(steps, messages, position, before, after, run.created_at)
    plan = _Plan()
    for step in after.get(-1, []):
        _add_calls(plan, step)
    for index, message in enumerate(messages):
        for step in before.get(index, []):
            _add_calls(plan, step)
        _add_message(plan, message)
        for step in after.get(index, []):
            _add_calls(plan, step)
    return plan


def _place(
    steps: Sequence[RunStep],
    messages: Sequence[Message],
    position: Mapping[str, int],
    before: dict[int, list[RunStep]],
    after: dict[int, list[RunStep]],
    run_created_at: int | None,
) -> None:
    """Anchor each tool step of a run to a message: before the next message the run wrote,
    else after the last one it wrote, else after the last message older than the step."""
    waiting: list[RunStep] = []
    last_written: int | None = None
    for step in steps:
        details = step.step_details
        if isinstance(details, ToolCallsStepDetails):
            waiting.append(step)
        elif isinstance(details, MessageCreationStepDetails):
            index = position.get(details.message_creation.message_id)
            if index is None:
                continue  # a message deleted since
            before.setdefault(index, []).extend(waiting)
            waiting, last_written = [], index
    if not waiting:
        return
    if last_written is None:
        stamp = waiting[0].created_at or run_created_at or 0
        older = [i for i, m in enumerate(messages) if (m.created_at or 0) <= stamp]
        last_written = older[-1] if older else -1
    after.setdefault(last_written, []).extend(waiting)


def _add_calls(plan: _Plan, step: RunStep) -> None:
    assert isinstance(step.step_details, ToolCallsStepDetails)
    for call in step.step_details.tool_calls:
        where = f"{step.run_id or step.id}"
        if isinstance(call, FunctionToolCall):
            if call.function.output is None:
                plan.skipped.append(f"{where}: {call.function.name} call without an output")
                continue
            plan.items.append(
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.function.name,
                    "arguments": call.function.arguments,
                }
            )
            plan.items.append(
                {"type": "function_call_output", "call_id": call.id, "output": call.function.output}
            )
            plan.tool_calls += 1
        elif isinstance(call, CodeInterpreterToolCall | FileSearchToolCall):
            plan.skipped.append(f"{where}: {call.type} call (a hosted tool)")
        else:
            plan.skipped.append(f"{where}: {call.type} call")


def _add_message(plan: _Plan, message: Message) -> None:
    role = "assistant" if message.role == "assistant" else "user"
    part_type = "output_text" if role == "assistant" else "input_text"
    parts: list[Item] = []
    for content in message.content:
        text = _part_text(content)
        if not isinstance(content, TextContent):
            plan.described.append(f"{message.id}: {content.type}")
        parts.append(_text_part(part_type, text))
    for attachment in message.attachments or []:
        file_id = attachment.get("file_id", "?")
        plan.described.append(f"{message.id}: attachment {file_id}")
        parts.append(_text_part(part_type, f"[attached file {file_id}]"))
    if not parts:
        plan.skipped.append(f"{message.id}: empty message")
        return
    plan.items.append({"type": "message", "role": role, "content": parts})
    plan.messages += 1


def _part_text(content: MessageContent) -> str:
    """The text of a part, or a description of a part a conversation message cannot carry."""
    if isinstance(content, TextContent):
        return content.text.value
    if isinstance(content, ImageFileContent):
        return f"[image file {content.image_file.file_id}]"
    if isinstance(content, ImageURLContent):
        return f"[image {content.image_url.url}]"
    if isinstance(content, RefusalContent):
        return f"[refused: {content.refusal}]"
    return f"[{content.type} content]"


def _text_part(part_type: str, text: str) -> Item:
    if part_type == "output_text":
        return {"type": "output_text", "text": text, "annotations": []}
    return {"type": "input_text", "text": text}
