"""RunPolicy: how the run loop retries, waits, bounds and cancels a run, on either protocol.

Defaults match ``config/runtime.toml`` (section ``[policy]``), where each is documented.

What the loop does in each situation (Assistants, and where it differs, Responses):

429 / 5xx / reset on a GET
    The client retries (exponential backoff with jitter, honouring ``retry-after-ms`` /
    ``retry-after``, bounded attempts); see :mod:`runtime.retry`.
Ambiguous failure creating a run (5xx, timeout, reset after sending, 429 after retries)
    Assistants: the run carries ``metadata.runtime_idempotency_key``; the loop lists the
    thread's runs and adopts ours before creating again, so one call never makes two runs
    (up to ``create_attempts``). Responses has no idempotency key and no list endpoint: the
    request is sent again, which can leave an orphan response on the server.
Ambiguous failure submitting outputs
    Retrieve the run; submit again only if it still requires exactly the same
    ``tool_call_id`` values: never twice (up to ``submit_attempts``).
Stream cut, reset, or idle longer than ``stream_idle_timeout_s``
    Recover by polling the run or response (backoff from ``poll_interval_s`` to
    ``max_poll_interval_s``, honouring ``openai-poll-after-ms``) and continue from its state.
    With ``resumable_streams`` a Responses stream is re-opened after its last sequence
    number instead, so a handler sees every delta exactly once.
Tool deadline
    Assistants: ``expires_at - expiry_margin_s`` (server clock from the ``Date`` header).
    Responses has no ``expires_at``: ``total_deadline_s`` bounds the whole conversation and
    tools get ``deadline - min(expiry_margin_s, total / 2)``. Late calls get a ``timeout``
    output so the batch is still submitted in time; an expired run returns ``expired``.
Thread busy (400 "already has an active run")
    ``busy_thread = "wait"`` (poll, bounded by ``busy_wait_s``), ``"cancel"`` (cancel it),
    or ``"fail"`` (``ThreadBusyError``). Busy-thread refusals do not use up
    ``create_attempts``.
``max_tool_rounds`` / ``max_tool_calls`` exceeded
    The run is cancelled before more calls execute; ``result.reason`` says which bound.
Run failed with ``server_error`` / ``rate_limit_exceeded``
    A result; ``rerun_on_server_error = true`` starts a new run (up to ``max_reruns``).
The awaiting task is cancelled
    Tool tasks are cancelled, the server run is cancelled (shielded, waiting up to
    ``cancel_wait_s`` for ``cancelled``), then ``CancelledError`` is re-raised. A run the
    server created after the caller left is watched for and cancelled in the background.
An ``EventHandler`` callback raises
    ``HandlerError`` (cause chained); the server run is cancelled.
A tool needs approval (``needs_approval``)
    The round's other calls run; the run returns ``awaiting_approval`` with
    ``result.pending`` (see :mod:`runtime.core.approval`); ``resume(pending, decisions=...)``
    runs the approved calls, rejects the others and submits the round in one request.
    A pause reaching ``expires_at - expiry_margin_s`` (Assistants): ``approval_timeout =
    "reject"`` submits the undecided calls as rejected, ``"expire"`` lets the run expire.
A ``write`` tool is requested again with the same arguments (any call id)
    It gets the recorded output; after a crash mid-write, an ``outcome_unknown`` error
    output (see :mod:`runtime.core.ledger`).
The same tool with the same arguments requested ``max_repeated_calls`` times in one run
    The run is cancelled before that call runs (``stopped_by="repeated_call"``).
``output_type`` given and the answer does not match it
    The model is told the validation error, up to ``output_retries`` times; the last
    failure is ``result.output_error``, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from runtime.core.approval import ApprovalTimeout
from runtime.core.limits import ModelPrice, UsageLimits

BusyThreadAction = Literal["wait", "cancel", "fail"]


@dataclass(frozen=True)
class RunPolicy:
    """Policies of one run.

    Attributes:
        expiry_margin_s: tools must finish this long before the run's ``expires_at``.
        max_tool_rounds: most ``requires_action`` rounds per run; past it the run is cancelled.
        max_tool_calls: most tool calls per run; past it the run is cancelled.
        tool_timeout_s: per-call timeout for tools without their own (None: none).
        max_tool_concurrency: calls of one batch executing at once.
        max_output_chars: cap on each tool output (a truncation marker shows the cut).
        busy_thread: what to do when the thread already has an active run.
        busy_wait_s: how long "wait" waits for the other run to end.
        cancel_wait_s: how long cancellation waits for the server to confirm ``cancelled``.
        poll_interval_s: first polling interval when the stream is lost.
        max_poll_interval_s: polling backs off up to this interval.
        rerun_on_server_error: start a new run when one fails with server_error or
            rate_limit_exceeded.
        max_reruns: most reruns of one call.
        total_deadline_s: a deadline for the whole run, on both protocols (None: none;
            Assistants runs are also bounded by their ``expires_at``).
        expiry_grace_s: how long past a run's ``expires_at`` the server may take to say so
            before the run is given up as ``expired``.
        resume_attempts: attempts at re-opening a broken stream before polling instead.
        output_retries: how many times an answer that does not match ``output_type`` is
            sent back to the model with the validation error before the run gives up.
        resumable_streams: ask for turns whose streams can be re-opened after a break where
            the protocol offers it (Responses ``background=true``; never with ``store=false``,
            and a request's own ``background`` wins).
        log_tool_payloads: log tool arguments and outputs (they may hold personal data).
        create_attempts: attempts at creating a run after ambiguous failures.
        submit_attempts: attempts at submitting outputs after ambiguous failures.
        usage_limits: requests, tokens, tool calls and cost a run may use; checked before
            every request, a run that reached one is cancelled (``stopped_by="usage_limit"``).
        prices: USD per million tokens by model name, for ``RunResult.cost`` and
            ``usage_limits.max_cost``.
        approval_timeout: a pause for approval that reaches ``expires_at -
            expiry_margin_s`` (Assistants): ``"reject"`` the undecided calls (the run goes
            on) or ``"expire"`` (the run expires).
        max_repeated_calls: the same tool with the same arguments requested this often in
            one run stops the run (``stopped_by="repeated_call"``); None: never.
    """

    expiry_margin_s: float = 10.0
    max_tool_rounds: int = 16
    max_tool_calls: int = 128
    tool_timeout_s: float | None = 60.0
    max_tool_concurrency: int = 32
    max_output_chars: int = 32_768
    busy_thread: BusyThreadAction = "wait"
    busy_wait_s: float = 120.0
    cancel_wait_s: float = 10.0
    poll_interval_s: float = 1.0
    max_poll_interval_s: float = 5.0
    rerun_on_server_error: bool = False
    max_reruns: int = 1
    total_deadline_s: float | None = None
    expiry_grace_s: float = 60.0
    resume_attempts: int = 3
    resumable_streams: bool = True
    output_retries: int = 1
    log_tool_payloads: bool = False
    create_attempts: int = 3
    submit_attempts: int = 3
    usage_limits: UsageLimits | None = None
    prices: Mapping[str, ModelPrice] = field(default_factory=dict, hash=False)
    approval_timeout: ApprovalTimeout = "reject"
    max_repeated_calls: int | None = 3

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RunPolicy:
        """Build from :class:`runtime.config.Settings` (its ``policy`` section)."""
        section = settings.policy
        names = {f.name for f in fields(cls)}
        values = {n: getattr(section, n) for n in names if hasattr(section, n)}
        limits = values.get("usage_limits")
        if limits is not None and not isinstance(limits, UsageLimits):
            values["usage_limits"] = UsageLimits(**limits.model_dump()) if limits.any() else None
        table = getattr(settings, "prices", None) or {}
        values["prices"] = {
            name: p if isinstance(p, ModelPrice) else ModelPrice(**p.model_dump())
            for name, p in table.items()
        }
        values.update(overrides)
        return cls(**values)
