"""Job, progress and result records shared by every queue backend.

A :class:`Job` is what a client submits; its ``id`` is also the idempotency key (submitting the
same id twice gives one job). A :class:`JobRecord` is what a queue stores about the job: the
job, its state, the fencing attempt counter, the durable progress of the run (conversation id,
run id, tool outputs already computed) and, once finished, the :class:`JobResult`.

The records speak the engine's neutral words on both protocols: a ``conversation_id`` is a
thread (Assistants) or a Conversation (Responses); a ``run_id`` is the run (Assistants) or the
latest response of the run (Responses). Records written under the older single name
``thread_id`` are still read (see :meth:`Job.legacy_thread_id`).
"""

from __future__ import annotations

import json
import time
import uuid
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from runtime import tracing

__all__ = [
    "DecisionRecord",
    "Job",
    "JobRecord",
    "JobResult",
    "JobState",
    "JobTimings",
    "Lease",
    "MalformedRecord",
    "Message",
    "PauseRecord",
    "Progress",
    "QueueStats",
    "ToolOutput",
    "UsageRecord",
    "decode_job",
    "decode_model",
    "decode_number",
    "new_job_id",
]


def new_job_id() -> str:
    """Return a fresh random job id (``job_`` + 24 hex characters)."""
    return f"job_{uuid.uuid4().hex[:24]}"


class JobState(StrEnum):
    """Where a job is in its life.

    ``queued`` waits for a worker, ``running`` is leased by one, ``awaiting_approval`` waits
    for a person's decisions on tool calls (no worker holds it; the last decision queues it
    again), ``done`` has a stored result, ``dead`` was moved to the dead-letter store after
    too many deliveries.
    """

    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    DONE = "done"
    DEAD = "dead"


FINISHED_STATES = frozenset({JobState.DONE, JobState.DEAD})

_M = TypeVar("_M", bound=BaseModel)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(_Frozen):
    """One message of a new thread.

    Attributes:
        role: ``user`` or ``assistant``.
        content: the message text.
    """

    role: Literal["user", "assistant"] = "user"
    content: str


# Set by the worker or the orchestrator itself; a job overriding them would break resumption.
_RESERVED_RUN_OPTIONS = frozenset(
    {
        "adopt_existing",
        "agent",
        "assistant_id",
        "handler",
        "idempotency_key",
        "input",
        "previous",
        "previous_response_id",
        "raise_on_failure",
        "conversation",
        "stream",
        "thread_id",
    }
)


# W3C trace context headers a job may carry; anything else is dropped, never the job.
_TRACE_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})
_MAX_TRACE_HEADER = 1024


class Job(_Frozen):
    """A unit of work: one run of an assistant or a model, new or continuing a conversation.

    The worker's ``protocol`` setting decides how a job is read:

    * ``assistants``: ``assistant_id`` is required; ``conversation_id`` runs on an existing
      thread, otherwise a new thread is created from ``messages``.
    * ``responses``: ``assistant_id`` is ignored; ``messages`` (always required) become the
      ``input`` of the first request; ``conversation_id`` continues a Conversation and
      ``previous_run_id`` (the ``run_id`` of an earlier job's result) continues after that
      response. ``run_options`` carry ``model`` (default: the worker's ``worker.model``
      setting), ``instructions``, ``max_output_tokens``, ... A job continuing with messages
      (or with ``previous_run_id``) must say ``protocol="responses"``.

    A job whose ``protocol`` differs from the worker's ends with an ``error`` result.

    Attributes:
        id: job id and idempotency key; the same id submitted twice is one job.
        protocol: the protocol the job is written for; ``None`` means the worker's.
        assistant_id: the assistant to run (Assistants only).
        conversation_id: an existing thread (Assistants) or Conversation (Responses) to run
            in; ``None`` starts a new one (Responses: when the worker sets ``conversations``).
        previous_run_id: a response to continue after (Responses only).
        messages: messages of the new thread (required without ``conversation_id``); with
            Responses, the input items (always required).
        run_options: extra parameters of the create-run (or create-response) request
            (``instructions``, ``max_completion_tokens``, ``model``, ...), passed through.
        metadata: free-form string metadata, copied into the run's (response's) metadata.
        trace_context: W3C trace context (``traceparent``, ``tracestate``) of the span that
            was current where the job was made, so the worker's run continues that trace
            (``submit`` -> queue -> run -> tools is one trace); empty when tracing is off. A
            context that cannot be read is dropped, never the job.
    """

    id: str = Field(default_factory=new_job_id, min_length=1, max_length=200)
    protocol: Literal["assistants", "responses"] | None = None
    assistant_id: str | None = Field(default=None, min_length=1)
    conversation_id: str | None = Field(default=None, min_length=1)
    previous_run_id: str | None = Field(default=None, min_length=1)
    messages: tuple[Message, ...] = ()
    run_options: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    trace_context: dict[str, str] = Field(default_factory=tracing.inject)

    @field_validator("trace_context", mode="before")
    @classmethod
    def _readable_trace_context(cls, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            return {}
        return {
            k: v
            for k, v in value.items()
            if k in _TRACE_HEADERS and isinstance(v, str) and len(v) <= _MAX_TRACE_HEADER
        }

    @model_validator(mode="before")
    @classmethod
    def legacy_thread_id(cls, data: Any) -> Any:
        """Read a record written with the older ``thread_id``, which held either reference:
        a response id (``resp_...``) is the run to continue after, anything else (a thread, a
        conversation) the conversation."""
        if not isinstance(data, dict) or "thread_id" not in data:
            return data
        data = dict(data)
        value = data.pop("thread_id")
        if value is not None:
            key = "previous_run_id" if str(value).startswith("resp_") else "conversation_id"
            data.setdefault(key, value)
        return data

    @model_validator(mode="after")
    def _references_and_messages(self) -> Job:
        responses = self.protocol == "responses"
        if self.conversation_id is None and self.previous_run_id is None and not self.messages:
            raise ValueError("a job needs a conversation_id or at least one message")
        if self.conversation_id is not None and self.previous_run_id is not None:
            raise ValueError("a job continues a conversation_id or a previous_run_id, not both")
        if self.previous_run_id is not None and not responses:
            raise ValueError("previous_run_id continues a response: set protocol='responses'")
        if self.conversation_id is not None and self.messages and not responses:
            raise ValueError(
                "messages are only for a new thread; omit them with conversation_id "
                "(a Responses job continuing a conversation sets protocol='responses')"
            )
        if self.protocol == "assistants" and self.assistant_id is None:
            raise ValueError("an assistants job needs assistant_id")
        if "metadata" in self.run_options:
            raise ValueError("put run metadata in Job.metadata, not run_options")
        reserved = sorted(_RESERVED_RUN_OPTIONS & self.run_options.keys())
        if reserved:
            raise ValueError(f"run_options may not set {', '.join(reserved)} (the worker does)")
        return self


class ToolOutput(_Frozen):
    """A tool call's output as stored durably (mirrors ``tools.ToolCallResult``).

    Attributes:
        id: the tool call id.
        name: the tool name.
        arguments: the raw JSON arguments the model sent.
        output: the string output submitted to the run.
        is_error: whether the output describes an error.
        seconds: how long the tool ran.
    """

    id: str
    name: str
    arguments: str = ""
    output: str = ""
    is_error: bool = False
    seconds: float = 0.0


class UsageRecord(_Frozen):
    """Token usage of a run."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class JobTimings(_Frozen):
    """Wall-clock timestamps (epoch seconds) and durations of a job.

    Attributes:
        submitted_at: when the job was first submitted.
        started_at: when the attempt that finished it was claimed.
        finished_at: when the result was produced.
        run_seconds: duration of the finishing attempt.
        total_seconds: from submission to result.
    """

    submitted_at: float
    started_at: float
    finished_at: float
    run_seconds: float
    total_seconds: float


class JobResult(_Frozen):
    """The outcome of a job.

    Attributes:
        job_id: the job.
        run_id: the run that produced the result (Responses: its final response), ``None``
            if no run was created.
        conversation_id: the thread (Assistants) or Conversation (Responses) of the run.
        status: the run's terminal status (``completed``, ``failed``, ``incomplete``,
            ``expired``, ``cancelled``) or ``error`` when the job could not run.
        text: the assistant text the run produced.
        tool_calls: every tool call of the run, including outputs computed before a crash.
        usage: token usage, when the server reported it.
        error: a readable reason for any status other than ``completed``.
        timings: timestamps and durations.
        attempts: deliveries it took (1 when no worker crashed or drained).
    """

    job_id: str
    run_id: str | None
    conversation_id: str | None = Field(
        validation_alias=AliasChoices("conversation_id", "thread_id")
    )
    status: str
    text: str = ""
    tool_calls: tuple[ToolOutput, ...] = ()
    usage: UsageRecord | None = None
    error: str | None = None
    timings: JobTimings
    attempts: int


class DecisionRecord(_Frozen):
    """A person's decision on one paused tool call, as recorded.

    Attributes:
        approved: run the call, or not.
        reason: why it was rejected (the model reads it), or a note.
        by: who decided (``approval_timeout`` when the pause expired).
        at: when (epoch seconds).
    """

    approved: bool
    reason: str | None = None
    by: str | None = None
    at: float = Field(default_factory=time.time)

    def same_as(self, other: DecisionRecord) -> bool:
        """The same answer (a repeated decision, not a change of mind)."""
        return self.approved == other.approved and self.reason == other.reason


class PauseRecord(_Frozen):
    """A job paused for approval: what the run needs to go on.

    Attributes:
        pending: the run's pending state (``runtime.core.approval.PendingApproval`` JSON).
        call_ids: the calls awaiting a decision.
        paused_at: when the job paused.
        expires_at: when the pause times out (its undecided calls are then rejected).
    """

    pending: dict[str, Any]
    call_ids: tuple[str, ...]
    paused_at: float = Field(default_factory=time.time)
    expires_at: float


class Progress(_Frozen):
    """What survives a crash about a running job.

    Attributes:
        conversation_id: the thread (conversation) the run is in, stored as soon as it is known.
        run_id: the run (Responses: its latest response), stored the moment it exists.
        run_seq: run generation; bumped when a worker cancelled the run while draining so the
            next attempt starts a fresh run under a new idempotency key.
        worker_cancelled: the current run was cancelled by a worker (a drain, or a worker that
            lost its lease), not by a user: the next attempt starts a new run generation.
        tool_outputs: outputs already computed, by tool call id; never executed again.
        pause: the job's latest pause for approval, if it ever paused.
        decisions: the decisions recorded on that pause, by tool call id.
    """

    conversation_id: str | None = Field(
        default=None, validation_alias=AliasChoices("conversation_id", "thread_id")
    )
    run_id: str | None = None
    run_seq: int = 0
    worker_cancelled: bool = False
    tool_outputs: dict[str, ToolOutput] = Field(default_factory=dict)
    pause: PauseRecord | None = None
    decisions: dict[str, DecisionRecord] = Field(default_factory=dict)


class Lease(_Frozen):
    """One delivery of a job to one worker.

    Attributes:
        job: the job.
        attempt: the fencing token: the job's attempt counter after this claim. Every write
            of the lease holder is conditional on the stored counter still being this value,
            so a worker wrongly declared dead cannot overwrite its successor's work.
        consumer: the worker that holds the lease.
        token: backend detail (the Redis stream entry id).
        progress: the job's durable progress when claimed.
        submitted_at: when the job was submitted.
        claimed_at: when this lease was taken.
    """

    job: Job
    attempt: int
    consumer: str
    token: str = ""
    progress: Progress = Field(default_factory=Progress)
    submitted_at: float = 0.0
    claimed_at: float = Field(default_factory=time.time)


class JobRecord(_Frozen):
    """Everything a queue knows about one job.

    Attributes:
        job_id: the job's id (also when ``job`` could not be read).
        job: the submitted job; ``None`` when the stored record is malformed (then
            ``last_error`` says why, and a worker dead-letters it instead of running it).
        state: queued, running, awaiting_approval, done or dead.
        attempt: deliveries so far (the fencing counter).
        owner: the worker holding (or last holding) the lease.
        progress: durable run progress.
        submitted_at: submission time.
        updated_at: last state change.
        last_error: the error of the last failed attempt.
        result: the stored result once ``state`` is ``done``.
    """

    job_id: str
    job: Job | None
    state: JobState
    attempt: int = 0
    owner: str | None = None
    progress: Progress = Field(default_factory=Progress)
    submitted_at: float
    updated_at: float
    last_error: str | None = None
    result: JobResult | None = None

    @property
    def finished(self) -> bool:
        """Whether the job reached ``done`` or ``dead``."""
        return self.state in FINISHED_STATES


class QueueStats(_Frozen):
    """Counts for metrics, readiness and burst mode.

    Attributes:
        queued: jobs waiting for a worker (including ones released for retry).
        running: jobs leased by some worker.
        dead: jobs in the dead-letter store.
        oldest_queued_age_s: age of the oldest waiting job (queue lag), 0 when none waits.
        awaiting_approval: jobs paused for a person's decisions (not counted as
            unfinished: no worker can move them on).
    """

    queued: int
    running: int
    dead: int
    oldest_queued_age_s: float = 0.0
    awaiting_approval: int = 0

    @property
    def unfinished(self) -> int:
        """Jobs not yet done or dead."""
        return self.queued + self.running


class MalformedRecord(ValueError):
    """A stored job record that cannot be read (bad JSON, missing or invalid fields).

    Queues dead-letter such a record at once, with :attr:`reason` as its error, instead of
    failing the claim that met it.

    Attributes:
        job_id: the record's job id ("" when even that is unknown).
        reason: a readable description of what is wrong.
    """

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"malformed job record {job_id!r}: {reason}")
        self.job_id = job_id
        self.reason = f"malformed job record: {reason}"


def decode_job(text: str | bytes | None, job_id: str = "") -> tuple[Job, tuple[str, ...]]:
    """Read a stored job, ignoring fields this version does not know.

    A newer submitter may add fields: the job still runs on what this version understands,
    and the stored record keeps the extra fields untouched (it is never rewritten).

    Args:
        text: the stored JSON.
        job_id: the record's id, for the error.

    Returns:
        The job and the names of the ignored fields (for a warning).

    Raises:
        MalformedRecord: not JSON, not an object, or invalid known fields.
    """
    if text is None:
        raise MalformedRecord(job_id, "no job field")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRecord(job_id, f"job is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MalformedRecord(job_id, f"job is a JSON {type(data).__name__}, not an object")
    unknown = tuple(sorted(k for k in data if k not in _JOB_KEYS))
    known = {k: v for k, v in data.items() if k in _JOB_KEYS}
    try:
        job = Job.model_validate(known)
    except ValidationError as exc:
        raise MalformedRecord(job_id, f"invalid job ({_issues(exc)})") from None
    if job_id and job.id != job_id:
        raise MalformedRecord(job_id, f"job id {job.id!r} differs from the record's")
    return job, unknown


# The job's fields, and the older name Job.legacy_thread_id reads.
_JOB_KEYS = frozenset(Job.model_fields) | {"thread_id"}


def decode_number(value: object, name: str, job_id: str) -> float:
    """A stored timestamp or counter as a float, or :class:`MalformedRecord`."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MalformedRecord(job_id, f"{name} is not a number ({value!r:.40})") from None


def decode_model(model: type[_M], text: str | bytes, name: str, job_id: str) -> _M:
    """Validate a stored JSON field (a result, a tool output), or :class:`MalformedRecord`."""
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise MalformedRecord(job_id, f"invalid {name} ({_issues(exc)})") from None


def _issues(exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or 'job'}: {e['msg']}" for e in exc.errors()[:3]]
    return "; ".join(parts)
