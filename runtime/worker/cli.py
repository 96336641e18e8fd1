"""``python -m runtime worker|submit|jobs|assistant|approve|reject``.

Try it on one machine, without an API key (two shells; the worker's emulator listens at
``api.base_url``, ``http://127.0.0.1:8321/v1`` in ``config/worker.toml``)::

    python -m runtime worker --emulator --config config/worker.toml
    ASSISTANT=$(python -m runtime assistant create --emulator --config config/worker.toml)
    python -m runtime submit --config config/worker.toml --assistant "$ASSISTANT" --wait \
        '/call calculate {"expression": "6*7"}'

Exit codes: 0 success; 1 a waited-for job did not complete (failed, error, dead); 2 usage or
configuration error (including a health port another process already uses); 3 ``submit
--wait`` timed out; 4 the queue is unreachable.

A job paused for approval shows ``awaiting_approval`` in ``jobs``; ``jobs JOB_ID`` lists its
calls (``progress.pause``); ``approve JOB CALL`` / ``reject JOB CALL --reason ...`` decide
(1: the job cannot take that decision).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from runtime import tracing
from runtime.config import ConfigError, enable_tracing
from runtime.logging import configure_logging
from runtime.worker.app import open_queue, serve
from runtime.worker.approvals import DecisionError, decide
from runtime.worker.http import HttpBindError
from runtime.worker.models import DecisionRecord, Job, JobRecord, Message
from runtime.worker.queue import QueueError, wait_for_result
from runtime.worker.settings import WorkerSettings, build_registry, load_worker_settings

__all__ = [
    "approve_main",
    "assistant_main",
    "jobs_main",
    "reject_main",
    "submit_main",
    "worker_main",
]

# Any non-empty key opens the emulator; this one is the recipe's (never a real key).
EMULATOR_API_KEY = "sk-emulator-local"
DEFAULT_EMULATOR_URL = "http://127.0.0.1:8321/v1"


def worker_main(argv: list[str]) -> int:
    """``python -m runtime worker [--config FILE] [--burst] [--concurrency N] [--name NAME]``."""
    parser = argparse.ArgumentParser(prog="python -m runtime worker", description=__doc__)
    _config_arg(parser)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--concurrency", type=int, help="override worker.concurrency")
    parser.add_argument("--name", help="override worker.name (consumer name in the queue)")
    parser.add_argument(
        "--emulator",
        action="store_true",
        help="serve an embedded emulator at api.base_url (loopback; default "
        f"{DEFAULT_EMULATOR_URL}) and run the jobs on it, so other processes "
        "(submit, assistant create) reach it too",
    )
    args = parser.parse_args(argv)
    worker: dict[str, Any] = {}
    if args.concurrency is not None:
        worker["concurrency"] = args.concurrency
    if args.name:
        worker["name"] = args.name
    settings = _load(args.config, worker=worker, api=_emulator_api(args.emulator))
    if settings is None:
        return 2
    if settings.queue.backend == "memory":
        print("error: the memory backend only works embedded in a service", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    try:
        enable_tracing(settings)
        burst = True if args.burst else None
        return asyncio.run(_serve(settings, burst=burst, emulator=args.emulator))
    except (ConfigError, HttpBindError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


async def _serve(settings: WorkerSettings, *, burst: bool | None, emulator: bool) -> int:
    if not emulator:
        return await serve(settings, burst=burst)
    from runtime.emulator import Emulator, EmulatorError

    url = urlsplit(settings.api.base_url or DEFAULT_EMULATOR_URL)
    try:
        emu = Emulator(host=url.hostname or "127.0.0.1", port=url.port or 80)
        await emu.start()
    except (EmulatorError, OSError) as exc:
        raise ConfigError([f"--emulator: cannot serve at {url.geturl()}: {exc}"]) from None
    try:
        return await serve(settings, burst=burst)
    finally:
        await emu.aclose()


def _emulator_api(emulator: bool) -> dict[str, Any]:
    """The ``[api]`` overrides of ``--emulator``: its key, and its default address if unset."""
    return {"api_key": EMULATOR_API_KEY} if emulator else {}


def assistant_main(argv: list[str]) -> int:
    """``python -m runtime assistant create [--model M] [--name N] [--emulator]``: print its id.

    The assistant offers the worker's tools (``worker.tools``) and is created at
    ``api.base_url``; ``--emulator`` uses the key of a worker started with ``--emulator``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m runtime assistant", description="create an assistant, print its id"
    )
    parser.add_argument("action", choices=("create",))
    _config_arg(parser)
    parser.add_argument("--model", help="the assistant's model (default: worker.model)")
    parser.add_argument("--name", help="the assistant's name")
    parser.add_argument(
        "--emulator", action="store_true", help="the emulator of a `worker --emulator`"
    )
    args = parser.parse_args(argv)
    settings = _load(args.config, api=_emulator_api(args.emulator))
    if settings is None:
        return 2
    try:
        return asyncio.run(_create_assistant(settings, args.model, args.name, args.emulator))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


async def _create_assistant(
    settings: WorkerSettings, model: str | None, name: str | None, emulator: bool
) -> int:
    from runtime.assistants.client import AssistantsClient
    from runtime.errors import RuntimeAPIError

    base_url = settings.api.base_url or (DEFAULT_EMULATOR_URL if emulator else None)
    key = settings.api.api_key
    if base_url is None or key is None:
        print("error: set api.base_url and OPENAI_API_KEY (or use --emulator)", file=sys.stderr)
        return 2
    registry = build_registry(settings.worker.tools)
    try:
        # The file's [api] timeouts and [retry] attempts hold here as in the worker.
        client = AssistantsClient.from_settings(
            settings.runtime_settings(),
            base_url=base_url,
            azure_endpoint=None,
            api_key=key.get_secret_value(),
        )
        async with client:
            assistant = await client.create_assistant(
                model=model or settings.worker.model, name=name, tools=registry.definitions()
            )
    except RuntimeAPIError as exc:
        print(f"error: cannot create the assistant at {base_url}: {exc}", file=sys.stderr)
        return 1
    print(assistant.id)
    return 0


def submit_main(argv: list[str]) -> int:
    """``python -m runtime submit [--assistant ID] [--conversation ID | --previous-run ID]
    [--wait] MESSAGE...``.

    ``--assistant`` is required with ``protocol = "assistants"``, where ``--conversation`` is
    an existing thread; with ``"responses"`` the messages are the input, ``--conversation`` a
    Conversation and ``--previous-run`` the ``run_id`` of an earlier result to continue after.
    ``--thread`` is the older spelling of ``--conversation`` (a ``resp_`` id given to it
    continues after that response).
    """
    parser = argparse.ArgumentParser(prog="python -m runtime submit", description="enqueue a job")
    _config_arg(parser)
    parser.add_argument("--assistant", help="assistant id (required by the assistants protocol)")
    parser.add_argument(
        "--conversation",
        "--thread",
        dest="conversation",
        help="run in this existing thread (no messages then) or, with the responses "
        "protocol, this Conversation",
    )
    parser.add_argument(
        "--previous-run",
        help="responses protocol: continue after this run (the run_id of an earlier result)",
    )
    parser.add_argument("--job-id", help="job id = idempotency key (default: random)")
    parser.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="job metadata"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="run option, e.g. max_completion_tokens=200 or instructions='\"be brief\"'",
    )
    parser.add_argument("--wait", action="store_true", help="wait for the result and print it")
    parser.add_argument("--timeout", type=float, default=300.0, help="--wait limit in seconds")
    parser.add_argument("message", nargs="*", help="user messages of a new thread")
    args = parser.parse_args(argv)
    settings = _load(args.config)
    if settings is None:
        return 2
    if settings.protocol == "assistants" and not args.assistant:
        print("error: --assistant ID is required (protocol = assistants)", file=sys.stderr)
        return 2
    try:
        job = _job_from_args(args, settings.protocol)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_submit(settings, job, wait=args.wait, timeout_s=args.timeout))


def jobs_main(argv: list[str]) -> int:
    """``python -m runtime jobs [--limit N] [--dead] [--json] [JOB_ID]``."""
    parser = argparse.ArgumentParser(prog="python -m runtime jobs", description="list jobs")
    _config_arg(parser)
    parser.add_argument("--limit", type=int, default=20, help="how many recent jobs")
    parser.add_argument("--dead", action="store_true", help="list the dead-letter store")
    parser.add_argument("--json", action="store_true", help="one JSON record per line")
    parser.add_argument("job_id", nargs="?", help="show one job in full (JSON)")
    args = parser.parse_args(argv)
    settings = _load(args.config)
    if settings is None:
        return 2
    return asyncio.run(_jobs(settings, args))


def approve_main(argv: list[str]) -> int:
    """``python -m runtime approve JOB CALL [--by NAME]``: approve a paused job's call."""
    return _decision_main("approve", argv)


def reject_main(argv: list[str]) -> int:
    """``python -m runtime reject JOB CALL --reason TEXT [--by NAME]``: reject a paused job's
    call (the model reads ``rejected: TEXT``)."""
    return _decision_main("reject", argv)


def _decision_main(verb: str, argv: list[str]) -> int:
    """Exit codes: 0 recorded (or the same decision was recorded before), 1 the job cannot
    take it (no such job or call, not paused, decided otherwise), 2 usage, 4 queue down."""
    parser = argparse.ArgumentParser(
        prog=f"python -m runtime {verb}",
        description=f"{verb} a tool call of a job awaiting approval",
    )
    _config_arg(parser)
    parser.add_argument("job_id", help="the paused job")
    parser.add_argument("call_id", help="the tool call (see `jobs JOB_ID`: progress.pause)")
    parser.add_argument("--reason", required=verb == "reject", help="why (the model reads it)")
    parser.add_argument("--by", default=None, help="who decides (default: the OS user)")
    args = parser.parse_args(argv)
    settings = _load(args.config)
    if settings is None:
        return 2
    decision = DecisionRecord(
        approved=verb == "approve", reason=args.reason, by=args.by or _os_user()
    )
    return asyncio.run(_decide(settings, args.job_id, args.call_id, decision))


async def _decide(
    settings: WorkerSettings, job_id: str, call_id: str, decision: DecisionRecord
) -> int:
    queue = open_queue(settings)
    try:
        outcome = await decide(queue, job_id, call_id, decision)
    except DecisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except QueueError as exc:
        print(f"error: queue unreachable: {exc}", file=sys.stderr)
        return 4
    finally:
        await queue.aclose()
    print(json.dumps({"job_id": job_id, "call_id": call_id, "outcome": outcome}))
    return 0


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container without one)
        return "cli"


# -- helpers ---------------------------------------------------------------------------------


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="worker TOML file (default: $RUNTIME_WORKER_CONFIG or config/worker.toml)"
    )


def _load(path: str | None, **overrides: Any) -> WorkerSettings | None:
    try:
        return load_worker_settings(path, **{k: v for k, v in overrides.items() if v})
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _job_from_args(args: argparse.Namespace, protocol: str) -> Job:
    metadata = dict(_pair(item, "metadata") for item in args.metadata)
    options = {k: _json_value(v, k) for k, v in (_pair(o, "option") for o in args.option)}
    conversation, previous = args.conversation, args.previous_run
    if conversation and conversation.startswith("resp_") and previous is None:
        conversation, previous = None, conversation  # what --thread meant on Responses
    fields: dict[str, Any] = {
        "protocol": protocol,
        "assistant_id": args.assistant,
        "conversation_id": conversation,
        "previous_run_id": previous,
        "messages": tuple(Message(content=text) for text in args.message),
        "run_options": options,
        "metadata": metadata,
    }
    if args.job_id:
        fields["id"] = args.job_id
    try:
        return Job(**fields)
    except ValidationError as exc:  # a usage error: one line, without pydantic's docs link
        raise ValueError(_validation_line(exc)) from exc


def _validation_line(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def _pair(item: str, what: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--{what} expects KEY=VALUE, got {item!r}")
    return key, value


def _json_value(text: str, key: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--option {key}: not JSON ({exc.msg}); quote strings") from exc


async def _submit(settings: WorkerSettings, job: Job, *, wait: bool, timeout_s: float) -> int:
    if settings.queue.backend == "memory":
        print("error: submit needs a durable backend (sqlite or redis)", file=sys.stderr)
        return 2
    try:
        enable_tracing(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    queue = open_queue(settings)
    try:
        with tracing.span(
            "submit job",
            kind="producer",
            attributes={
                "messaging.operation.name": "send",
                "messaging.message.id": job.id,
                "runtime.queue.backend": settings.queue.backend,
            },
        ):
            # Made inside the span: the worker's run continues this trace.
            job = job.model_copy(update={"trace_context": tracing.inject()})
            created = await queue.submit(job)
        if not wait:  # with --wait, the one document printed is the result
            print(json.dumps({"job_id": job.id, "created": created}), flush=True)
            return 0
        record = await wait_for_result(queue, job.id, timeout_s=timeout_s)
    except QueueError as exc:
        print(f"error: queue unreachable: {exc}", file=sys.stderr)
        return 4
    finally:
        await queue.aclose()
    if record is None:
        print(f"error: no result within {timeout_s:g} s", file=sys.stderr)
        return 3
    print(_record_json(record, full=True))
    ok = record.result is not None and record.result.status == "completed"
    return 0 if ok else 1


async def _jobs(settings: WorkerSettings, args: argparse.Namespace) -> int:
    queue = open_queue(settings)
    try:
        if args.job_id:
            record = await queue.get(args.job_id)
            if record is None:
                print(f"error: no job {args.job_id!r}", file=sys.stderr)
                return 1
            print(_record_json(record, full=True))
            return 0
        records = await (queue.dead_letters(args.limit) if args.dead else queue.recent(args.limit))
        stats = await queue.stats()
    except QueueError as exc:
        print(f"error: queue unreachable: {exc}", file=sys.stderr)
        return 4
    finally:
        await queue.aclose()
    if args.json:
        for record in records:
            print(_record_json(record, full=False))
        return 0
    print(_table(records))
    print(f"\nqueued={stats.queued} running={stats.running} dead={stats.dead}")
    return 0


def _summary(record: JobRecord) -> dict[str, Any]:
    result = record.result
    return {
        "job_id": record.job_id,
        "state": record.state.value,
        "status": result.status if result else None,
        "attempts": record.attempt,
        "run_id": (result.run_id if result else None) or record.progress.run_id,
        "submitted_at": record.submitted_at,
        "seconds": round(result.timings.total_seconds, 3) if result else None,
        "error": (result.error if result else None) or record.last_error,
    }


def _record_json(record: JobRecord, *, full: bool) -> str:
    if full:
        return record.model_dump_json(indent=2)
    return json.dumps(_summary(record))


def _table(records: list[JobRecord]) -> str:
    header = ("JOB", "STATE", "STATUS", "ATT", "RUN", "SUBMITTED", "SECONDS", "ERROR")
    rows = [header]
    for record in records:
        s = _summary(record)
        rows.append(
            (
                s["job_id"],
                s["state"],
                s["status"] or "-",
                str(s["attempts"]),
                s["run_id"] or "-",
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s["submitted_at"])),
                "-" if s["seconds"] is None else f"{s['seconds']:.2f}",
                (s["error"] or "")[:60],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
