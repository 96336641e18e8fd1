"""Run one job on both protocols and say how the outcomes differ (before moving to Responses).

::

    report = await parity(settings, registry, ["What time is it in Tokyo?"])
    if not report.equal:
        print("\\n".join(str(d) for d in report.differences))

Each user message is one turn; turns go one after the other on one thread (Assistants: an
assistant created with the registry's tools, deleted afterwards with its thread) and on one
chain of responses (Responses: a conversation when ``settings.conversations``, deleted
afterwards, else ``previous_response_id``). Compared per turn: status, text, the tool calls (count, names,
arguments as JSON values, outputs, errors), tool rounds and whether usage was reported. Ids,
timings and token counts differ by nature and are not compared.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runtime.assistants.client import AssistantsClient
from runtime.backends import DEFAULT_MODEL, BackendSession, open_backend
from runtime.config import Settings
from runtime.core.result import RunResult
from runtime.errors import RuntimeAPIError
from runtime.responses.client import ResponsesClient
from tools import ToolCallResult, ToolRegistry

__all__ = ["Difference", "ParityReport", "compare", "parity"]


@dataclass(frozen=True)
class Difference:
    """One way the two protocols' outcomes differ.

    Attributes:
        turn: the 0-based turn (user message) it was seen in.
        field: what differs (``status``, ``text``, ``tool_calls[1].output``, ...).
        assistants: the Assistants value.
        responses: the Responses value.
    """

    turn: int
    field: str
    assistants: object
    responses: object

    def __str__(self) -> str:
        return (
            f"turn {self.turn}: {self.field}: assistants={self.assistants!r} "
            f"responses={self.responses!r}"
        )


@dataclass(frozen=True)
class ParityReport:
    """The outcomes of both protocols and their differences.

    Attributes:
        assistants: one result per turn on the Assistants protocol.
        responses: one result per turn on the Responses protocol.
        differences: every difference found, turn by turn.
    """

    assistants: tuple[RunResult[Any], ...]
    responses: tuple[RunResult[Any], ...]
    differences: tuple[Difference, ...]

    @property
    def equal(self) -> bool:
        """True when no difference was found."""
        return not self.differences

    @property
    def summary(self) -> str:
        """``equal (N turns)`` or one line per difference."""
        if self.equal:
            return f"equal ({len(self.assistants)} turn(s))"
        return "\n".join(str(d) for d in self.differences)


def compare(
    assistants: Sequence[RunResult[Any]], responses: Sequence[RunResult[Any]]
) -> ParityReport:
    """Compare results turn by turn (each side in the order its turns ran)."""
    differences: list[Difference] = []
    if len(assistants) != len(responses):
        differences.append(Difference(-1, "turns", len(assistants), len(responses)))
    for turn, (a, r) in enumerate(zip(assistants, responses, strict=False)):
        differences.extend(_compare_turn(turn, a, r))
    return ParityReport(tuple(assistants), tuple(responses), tuple(differences))


def _compare_turn(turn: int, a: RunResult[Any], r: RunResult[Any]) -> list[Difference]:
    pairs: list[tuple[str, object, object]] = [
        ("status", a.status, r.status),
        ("text", a.text, r.text),
        ("rounds", a.rounds, r.rounds),
        ("usage_present", a.usage is not None, r.usage is not None),
        ("tool_calls.count", len(a.tool_calls), len(r.tool_calls)),
    ]
    for index, (ca, cr) in enumerate(zip(a.tool_calls, r.tool_calls, strict=False)):
        pairs.extend((f"tool_calls[{index}].{name}", x, y) for name, x, y in _call_pairs(ca, cr))
    return [Difference(turn, name, x, y) for name, x, y in pairs if x != y]


def _call_pairs(a: ToolCallResult, r: ToolCallResult) -> list[tuple[str, object, object]]:
    return [
        ("name", a.name, r.name),
        ("arguments", _json_value(a.arguments), _json_value(r.arguments)),
        ("output", a.output, r.output),
        ("error_type", a.error_type, r.error_type),
    ]


def _json_value(text: str) -> object:
    """Arguments as a JSON value, so spacing and key order are no difference."""
    try:
        return json.loads(text)
    except ValueError:
        return text


async def parity(
    settings: Settings,
    registry: ToolRegistry,
    messages: str | Sequence[str],
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    responses_registry: ToolRegistry | None = None,
    model: str = DEFAULT_MODEL,
) -> ParityReport:
    """Run the same user messages on both protocols and compare the outcomes.

    Args:
        settings: the server, retry and policy settings (``protocol`` is ignored).
        registry: the tools (both sides, unless ``responses_registry`` is given).
        messages: one user message, or several sent in order on one conversation.
        base_url: override the configured server (e.g. an emulator's).
        api_key: override the configured key.
        responses_registry: other tools for the Responses side (to see what a change does).
        model: the model of the assistant and of the responses.

    Returns:
        The ParityReport.

    Raises:
        RuntimeAPIError: a request failed (a run that fails is a result, not an error).
    """
    texts = [messages] if isinstance(messages, str) else list(messages)
    common: dict[str, Any] = {"base_url": base_url, "api_key": api_key, "model": model}
    on_assistants = settings.model_copy(update={"protocol": "assistants"})
    async with open_backend(on_assistants, registry, **common) as session:
        assistants = await _assistants_turns(session, registry, texts, model)
    on_responses = settings.model_copy(update={"protocol": "responses"})
    other = registry if responses_registry is None else responses_registry
    async with open_backend(on_responses, other, **common) as session:
        responses = await _responses_turns(session, texts)
    return compare(assistants, responses)


async def _assistants_turns(
    session: BackendSession, registry: ToolRegistry, texts: Sequence[str], model: str
) -> list[RunResult[Any]]:
    client = session.client
    assert isinstance(client, AssistantsClient)
    assistant = await client.create_assistant(
        model=model, name="agent-runtime parity", tools=registry.definitions() or None
    )
    results: list[RunResult[Any]] = []
    try:
        for text in texts:
            thread = results[-1].conversation_id if results else None
            results.append(await session.start(text, agent=assistant.id, conversation=thread))
    finally:
        await _quietly_delete(client, assistant.id, results[0].conversation_id if results else None)
    return results


async def _quietly_delete(
    client: AssistantsClient, assistant_id: str, thread_id: str | None
) -> None:
    """Remove what the check created; a failed clean-up must not hide the outcome."""
    with contextlib.suppress(RuntimeAPIError):
        if thread_id is not None:
            await client.delete_thread(thread_id)
        await client.delete_assistant(assistant_id)


async def _responses_turns(session: BackendSession, texts: Sequence[str]) -> list[RunResult[Any]]:
    results: list[RunResult[Any]] = []
    try:
        for text in texts:
            params: dict[str, Any] = {}
            if results and results[-1].conversation_id:
                params["conversation"] = results[-1].conversation_id
            elif results:
                params["previous"] = results[-1].run_id
            results.append(await session.start(text, **params))
    finally:
        conversation_id = results[0].conversation_id if results else None
        client = session.client
        if conversation_id is not None and isinstance(client, ResponsesClient):
            with contextlib.suppress(RuntimeAPIError):
                await client.delete_conversation(conversation_id)
    return results
