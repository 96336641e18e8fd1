r"""The protocol-neutral engine: the run loop, its seam, policies, hooks and results.

Nothing here imports a protocol package; ``runtime.assistants`` and ``runtime.responses``
implement :class:`Backend` and the loop drives either::

     Orchestrator(client, ...)     ResponsesOrchestrator(rc, ...)     worker / CLI (backends.py)
                \                          |                            /
                 +------------- Runner(backend, registry, policy) -----+
                                           |  Backend seam
              prepare  start  submit  retrieve  resume  cancel  find  transcript -> TurnStream / Turn
                     /                                               \
          AssistantsBackend (runs on threads)             ResponsesBackend (responses, conversations)

A :class:`Turn` is a frozen value: its ref, a neutral status (``active``, ``cancelling``,
``requires_tools``, or terminal), the tool calls, texts, neutral usage, error, incomplete
reason, deadline, poll hint, last sequence number and the raw protocol object. The loop
matches on it and never asks which protocol it drives. Dependency direction: ``protocol`` <-
``http`` <- ``assistants`` / ``responses``; ``core`` -> ``tools``; ``tools`` never imports
``runtime``.

The loop: prepare -> start -> follow the stream -> run the tool round (every call
concurrently, through ``tools.ToolDispatcher``) -> submit all outputs in one request -> ...
-> finish. Its policies are described in :mod:`runtime.core.policy`.

``Orchestrator(client, registry, ...).run(thread_id, assistant_id)``,
``create_thread_and_run``, ``resume``, ``cancel`` and ``ResponsesOrchestrator`` are thin
facades over the one :class:`Runner`, because each protocol has its own natural words (a
thread and an assistant; an input and a model). :class:`Runner` with a :class:`StartRequest`
is the neutral entry point underneath both, which the worker and the CLI use.
``create_thread_and_run`` creates the thread and then the run rather than calling the API's
one-shot "create thread and run": a run on a known thread can be found again by its
idempotency key after an ambiguous failure, while a one-shot call cannot.

:class:`RunResult` has ``status``, ``run`` (the final protocol object), ``text`` (all
assistant text), ``tool_calls`` (id, name, arguments, output, is_error,
seconds), ``usage``, ``rounds``, ``reason`` (why the runtime ended the run), ``recoveries``,
``thread_id``, ``run_id``, ``conversation_id``, ``incomplete_reason``, ``output`` / ``output_error`` and ``raise_for_status()``. Failed,
expired, incomplete and cancelled runs are results, not exceptions (``raise_on_failure=True``
raises ``RunFailedError``). A run paused for a person's approval returns
``awaiting_approval`` with ``pending``; ``resume(pending, decisions={...})`` goes on
(:mod:`runtime.core.approval`); ``write`` tools run at most once (:mod:`runtime.core.ledger`).
"""

from runtime.core.approval import Decision, PendingApproval, PendingCall, approve, reject
from runtime.core.backend import (
    Backend,
    StartRequest,
    TextPart,
    Turn,
    TurnError,
    TurnRef,
    TurnStream,
    Usage,
)
from runtime.core.hooks import EventHandler, StatusUpdate
from runtime.core.ledger import MemoryLedger, WriteKey, WriteLedger, WriteRecord
from runtime.core.limits import ModelPrice, UsageLimits
from runtime.core.policy import RunPolicy
from runtime.core.result import RunResult
from runtime.core.runner import Runner

__all__ = [
    "Backend",
    "Decision",
    "EventHandler",
    "MemoryLedger",
    "ModelPrice",
    "PendingApproval",
    "PendingCall",
    "RunPolicy",
    "RunResult",
    "Runner",
    "StartRequest",
    "StatusUpdate",
    "TextPart",
    "Turn",
    "TurnError",
    "TurnRef",
    "TurnStream",
    "Usage",
    "UsageLimits",
    "WriteKey",
    "WriteLedger",
    "WriteRecord",
    "approve",
    "reject",
]
