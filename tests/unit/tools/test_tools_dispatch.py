"""ToolDispatcher: one output per call, exact error shapes, caching, cancellation, logs."""

import asyncio
import contextvars
import dataclasses
import datetime
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from tools import ToolCall, ToolCallResult, ToolContext, ToolDispatcher, ToolError, ToolRegistry

registry = ToolRegistry()
executions: list[str] = []
request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="-")


class Item(BaseModel):
    name: str
    qty: int


@dataclasses.dataclass
class Stamp:
    at: datetime.datetime
    ident: uuid.UUID


@registry.tool
async def echo(text: str) -> str:
    """Echo text."""
    executions.append(text)
    return text


@registry.tool
async def add(a: int, b: int = 1) -> int:
    """Add."""
    return a + b


@registry.tool
def sync_add(a: int, b: int) -> int:
    """Add in a thread."""
    return a + b


@registry.tool
async def item(name: str) -> Item:
    """A pydantic model result."""
    return Item(name=name, qty=2)


@registry.tool
def stamp() -> Stamp:
    """A dataclass result with a datetime and a UUID."""
    return Stamp(datetime.datetime(2026, 1, 2, 3, 4, 5), uuid.UUID(int=1))


@registry.tool
async def explode(message: str) -> str:
    """Raise ValueError."""
    raise ValueError(message)


@registry.tool
def explode_sync() -> str:
    """Raise in a thread."""
    raise KeyError("missing")


@registry.tool
async def refuse() -> str:
    """Raise ToolError."""
    raise ToolError("city not found")


@registry.tool
async def self_cancel() -> str:
    """Raise CancelledError from inside the tool."""
    raise asyncio.CancelledError


@registry.tool(timeout_s=0.05)
async def sleepy(seconds: float) -> str:
    """Sleep."""
    await asyncio.sleep(seconds)
    return "woke"


@registry.tool
async def nap(seconds: float) -> str:
    """Sleep without its own timeout."""
    await asyncio.sleep(seconds)
    return "woke"


@registry.tool
async def raises_timeout() -> str:
    """A TimeoutError raised by the tool is an exception, not a dispatcher timeout."""
    raise TimeoutError("upstream")


@registry.tool
async def big(n: int) -> str:
    """Return n characters."""
    return "x" * n


@registry.tool
async def whoami(ctx: ToolContext, label: str) -> dict[str, Any]:
    """Report the injected context."""
    ctx.log.info("tool.whoami", label=label)
    return {
        "run_id": ctx.run_id,
        "thread_id": ctx.thread_id,
        "tool_call_id": ctx.tool_call_id,
        "tool_name": ctx.tool_name,
        "has_deadline": ctx.deadline is not None,
        "remaining_ok": (ctx.remaining() or 0) > 0,
        "cancelled": ctx.is_cancelled,
    }


@registry.tool
def context_var() -> str:
    """Read a contextvar inside the worker thread."""
    return request_var.get()


def error(result: ToolCallResult) -> dict[str, Any]:
    body = json.loads(result.output)
    assert set(body) == {"error"}
    return body["error"]  # type: ignore[no-any-return]


async def run(*calls: ToolCall, **options: Any) -> list[ToolCallResult]:
    return await ToolDispatcher(registry, **options).run_batch(list(calls))


async def test_results_in_call_order_with_values() -> None:
    """Outputs come back in call order; str as is, others JSON-encoded."""
    results = await run(
        ToolCall("c1", "sync_add", '{"a": 2, "b": 3}'),
        ToolCall("c2", "echo", '{"text": "héllo"}'),
        ToolCall("c3", "add", '{"a": 1}'),
        ToolCall("c4", "item", '{"name": "pen"}'),
        ToolCall("c5", "stamp", ""),
    )
    assert [r.tool_call_id for r in results] == ["c1", "c2", "c3", "c4", "c5"]
    assert [r.output for r in results] == [
        "5",
        "héllo",
        "2",
        '{"name":"pen","qty":2}',
        '{"at":"2026-01-02T03:04:05","ident":"00000000-0000-0000-0000-000000000001"}',
    ]
    assert not any(r.is_error for r in results)
    assert all(r.error_type is None and r.seconds >= 0 for r in results)
    assert results[0].id == "c1" and results[0].name == "sync_add"


async def test_invalid_json_shape() -> None:
    """Arguments that are not JSON give an invalid_json error object."""
    (result,) = await run(ToolCall("c1", "echo", '{"text": '))
    assert result.is_error and result.error_type == "invalid_json"
    assert error(result) == {
        "type": "invalid_json",
        "message": "arguments are not valid JSON: Expecting value: line 1 column 10 (char 9)",
        "tool": "echo",
    }


async def test_schema_violation_shape_has_field_details() -> None:
    """Schema violations list each field with loc, msg and type."""
    (result,) = await run(ToolCall("c1", "add", '{"a": "x", "c": 1}'))
    assert result.error_type == "invalid_arguments"
    assert error(result) == {
        "type": "invalid_arguments",
        "message": (
            "2 invalid argument(s): a: Input should be a valid integer, unable to parse "
            "string as an integer; c: Extra inputs are not permitted"
        ),
        "tool": "add",
        "details": [
            {
                "loc": "a",
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "type": "int_parsing",
            },
            {"loc": "c", "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
        ],
    }


async def test_missing_field_and_non_object_arguments() -> None:
    """A missing field is reported by name; a JSON array is not an arguments object."""
    missing, array = await run(ToolCall("c1", "add", "{}"), ToolCall("c2", "add", "[1, 2]"))
    assert error(missing)["details"] == [{"loc": "a", "msg": "Field required", "type": "missing"}]
    assert error(array) == {
        "type": "invalid_arguments",
        "message": "arguments must be a JSON object, got list",
        "tool": "add",
        "details": [{"loc": "", "msg": "Input should be an object", "type": "model_type"}],
    }


async def test_nested_field_location_is_dotted() -> None:
    """Errors inside nested models point at the nested field."""
    local = ToolRegistry()

    @local.tool
    def order(items: list[Item]) -> int:
        """Order."""
        return len(items)

    result = (
        await ToolDispatcher(local).run_batch(
            [ToolCall("c1", "order", '{"items": [{"name": "a", "qty": "many"}]}')]
        )
    )[0]
    assert [d["loc"] for d in error(result)["details"]] == ["items.0.qty"]


async def test_unknown_tool_shape() -> None:
    """An unknown name gives unknown_tool with the list of available tools."""
    local = ToolRegistry()
    local.register(echo)
    (result,) = await ToolDispatcher(local).run_batch([ToolCall("c1", "nope", "{}")])
    assert result.error_type == "unknown_tool"
    assert error(result) == {
        "type": "unknown_tool",
        "message": "no tool named 'nope'; available tools: echo",
        "tool": "nope",
    }


async def test_exception_shapes() -> None:
    """Exceptions (async and sync) give tool_exception; ToolError gives tool_error."""
    async_exc, sync_exc, refused, own_timeout = await run(
        ToolCall("c1", "explode", '{"message": "bad city"}'),
        ToolCall("c2", "explode_sync", "{}"),
        ToolCall("c3", "refuse", "{}"),
        ToolCall("c4", "raises_timeout", "{}"),
    )
    assert error(async_exc) == {
        "type": "tool_exception",
        "message": "ValueError: bad city",
        "tool": "explode",
    }
    assert isinstance(async_exc.exception, ValueError)
    assert error(sync_exc) == {
        "type": "tool_exception",
        "message": "KeyError: 'missing'",
        "tool": "explode_sync",
    }
    assert error(refused) == {"type": "tool_error", "message": "city not found", "tool": "refuse"}
    assert error(own_timeout)["type"] == "tool_exception"
    assert error(own_timeout)["message"] == "TimeoutError: upstream"


async def test_tool_timeout_shape() -> None:
    """A tool over its own timeout_s gets a timeout error naming the limit."""
    (result,) = await run(ToolCall("c1", "sleepy", '{"seconds": 5}'))
    assert result.error_type == "timeout"
    assert error(result) == {
        "type": "timeout",
        "message": "tool 'sleepy' did not finish within its timeout of 0.05 s",
        "tool": "sleepy",
    }
    assert isinstance(result.exception, TimeoutError)


async def test_default_timeout_applies() -> None:
    """Tools without timeout_s get the dispatcher's default_timeout_s."""
    (result,) = await run(ToolCall("c1", "nap", '{"seconds": 5}'), default_timeout_s=0.05)
    assert error(result)["message"] == "tool 'nap' did not finish within its timeout of 0.05 s"


async def test_batch_deadline_shape() -> None:
    """The batch deadline cuts a running call and skips calls that start too late."""
    dispatcher = ToolDispatcher(registry)
    late = await dispatcher.run_batch(
        [ToolCall("c1", "nap", '{"seconds": 5}')], deadline=time.monotonic() + 0.05
    )
    expired = await dispatcher.run_batch(
        [ToolCall("c2", "echo", '{"text": "never"}')], deadline=time.monotonic() - 1
    )
    assert error(late[0]) == {
        "type": "timeout",
        "message": "the batch deadline passed before tool 'nap' finished",
        "tool": "nap",
    }
    assert error(expired[0]) == {
        "type": "timeout",
        "message": "the batch deadline passed before the call started",
        "tool": "echo",
    }
    assert "never" not in executions


async def test_tool_raising_cancelled_shape() -> None:
    """A tool that raises CancelledError itself gives a cancelled output, the batch goes on."""
    cancelled, fine = await run(
        ToolCall("c1", "self_cancel", "{}"), ToolCall("c2", "add", '{"a": 1}')
    )
    assert error(cancelled) == {
        "type": "cancelled",
        "message": "tool 'self_cancel' was cancelled",
        "tool": "self_cancel",
    }
    assert fine.output == "2"


async def test_output_truncation_marker() -> None:
    """Long outputs are cut to max_output_chars with a visible marker."""
    (result,) = await run(ToolCall("c1", "big", '{"n": 5000}'), max_output_chars=1000)
    assert len(result.output) == 1000
    assert result.output.endswith("…[truncated 4023 chars]")
    assert result.output.startswith("x" * 977)
    assert not result.is_error


async def test_each_id_executes_once_and_is_cached() -> None:
    """A second batch with the same tool_call_id returns the cached result without running."""
    dispatcher = ToolDispatcher(registry)
    call = ToolCall("once-1", "echo", '{"text": "once-1"}')
    first = await dispatcher.run_batch([call])
    second = await dispatcher.run_batch([call, ToolCall("once-2", "echo", '{"text": "once-2"}')])
    assert executions.count("once-1") == 1
    assert second[0] is first[0]
    assert dispatcher.cached("once-1") is first[0]
    assert dispatcher.cached("unknown") is None


async def test_concurrent_batches_share_in_flight_call() -> None:
    """Two concurrent batches with the same id share one execution."""
    local = ToolRegistry()
    runs: list[int] = []

    @local.tool
    async def slow_once() -> str:
        """Slow."""
        runs.append(1)
        await asyncio.sleep(0.05)
        return "done"

    dispatcher = ToolDispatcher(local)
    call = ToolCall("shared", "slow_once", "{}")
    a, b = await asyncio.gather(dispatcher.run_batch([call]), dispatcher.run_batch([call]))
    assert runs == [1]
    assert a[0].output == b[0].output == "done"


async def test_seed_cache_prevents_execution() -> None:
    """Seeded results (restored after a crash) are returned instead of executing."""
    dispatcher = ToolDispatcher(registry)
    seeded = ToolCallResult("seed-1", "echo", '{"text": "seed-1"}', "from before", False, 0.1)
    dispatcher.seed_cache([seeded])
    (result,) = await dispatcher.run_batch([ToolCall("seed-1", "echo", '{"text": "seed-1"}')])
    assert result is seeded
    assert "seed-1" not in executions


async def test_context_injection_and_log_binding() -> None:
    """ToolContext carries run/thread/call ids, a deadline and a bound logger."""
    dispatcher = ToolDispatcher(registry, run_id="run_1", thread_id="thread_1")
    with capture_logs() as logs:
        (result,) = await dispatcher.run_batch([ToolCall("c1", "whoami", '{"label": "x"}')])
    assert json.loads(result.output) == {
        "run_id": "run_1",
        "thread_id": "thread_1",
        "tool_call_id": "c1",
        "tool_name": "whoami",
        "has_deadline": True,
        "remaining_ok": True,
        "cancelled": False,
    }
    (own,) = [e for e in logs if e["event"] == "tool.whoami"]
    assert own["run_id"] == "run_1" and own["tool_call_id"] == "c1" and own["tool"] == "whoami"


async def test_sync_tool_sees_context_variables() -> None:
    """Sync tools run in the pool with a copy of the caller's contextvars."""
    request_var.set("req-42")
    (result,) = await run(ToolCall("c1", "context_var", "{}"))
    assert result.output == "req-42"


@pytest.fixture
def tools_at_debug() -> Iterator[None]:
    """The ``tools`` logger at DEBUG (whatever earlier tests left on the root logger), so the
    dispatcher emits every event and capture_logs sees them."""
    logger = logging.getLogger("tools")
    before = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(before)


@pytest.mark.usefixtures("tools_at_debug")
async def test_logs_without_payloads_by_default() -> None:
    """One tool.batch_started (DEBUG, like tool.started) names the batch's calls; per call
    tool.started (DEBUG) and tool.finished (INFO) have ids, outcome and duration but no
    arguments or output."""
    dispatcher = ToolDispatcher(registry, run_id="run_1")
    with capture_logs() as logs:
        await dispatcher.run_batch(
            [ToolCall("c1", "echo", '{"text": "secret-arg"}'), ToolCall("c2", "nope", "{}")]
        )
    events = [e for e in logs if e["event"].startswith("tool.")]
    assert events[0] == {
        "event": "tool.batch_started",
        "log_level": "debug",
        "calls": 2,
        "tools": ["echo", "nope"],
        "tool_call_ids": ["c1", "c2"],
        "run_id": "run_1",
        "thread_id": None,
    }
    started = [e for e in events if e["event"] == "tool.started"]
    assert [(e["tool_call_id"], e["log_level"]) for e in started] == [
        ("c1", "debug"),
        ("c2", "debug"),
    ]
    finished = {e["tool_call_id"]: e for e in events if e["event"] == "tool.finished"}
    assert finished["c1"]["outcome"] == "ok" and finished["c1"]["error_type"] is None
    assert finished["c2"]["outcome"] == "error" and finished["c2"]["error_type"] == "unknown_tool"
    assert {e["log_level"] for e in finished.values()} == {"info"}
    assert isinstance(finished["c1"]["seconds"], float)
    assert finished["c1"]["run_id"] == "run_1"
    assert "secret-arg" not in repr(logs)


@pytest.mark.usefixtures("tools_at_debug")
async def test_a_batch_of_cached_calls_logs_no_batch_start() -> None:
    """tool.batch_started counts only the calls a batch starts: a repeated batch, answered
    from the cache, logs nothing."""
    dispatcher = ToolDispatcher(registry)
    calls = [ToolCall("c1", "echo", '{"text": "a"}')]
    await dispatcher.run_batch(calls)
    with capture_logs() as logs:
        await dispatcher.run_batch([*calls, ToolCall("c2", "echo", '{"text": "b"}')])
    [batch] = [e for e in logs if e["event"] == "tool.batch_started"]
    assert batch["calls"] == 1 and batch["tool_call_ids"] == ["c2"]
    with capture_logs() as logs:
        await dispatcher.run_batch(calls)
    assert [e["event"] for e in logs] == []


@pytest.mark.usefixtures("tools_at_debug")
async def test_logs_payloads_when_enabled() -> None:
    """log_payloads=True adds arguments and output to the log events, and tool.started is
    INFO then (its arguments were asked for)."""
    dispatcher = ToolDispatcher(registry, log_payloads=True)
    with capture_logs() as logs:
        await dispatcher.run_batch([ToolCall("c1", "echo", '{"text": "shown"}')])
    started = next(e for e in logs if e["event"] == "tool.started")
    finished = next(e for e in logs if e["event"] == "tool.finished")
    assert started["arguments"] == '{"text": "shown"}' and started["log_level"] == "info"
    assert finished["output"] == "shown"


async def test_exception_logged_with_exc_info() -> None:
    """A tool exception is logged at warning level with the exception attached."""
    with capture_logs() as logs:
        await run(ToolCall("c1", "explode", '{"message": "m"}'))
    finished = next(e for e in logs if e["event"] == "tool.finished")
    assert finished["log_level"] == "warning"
    assert isinstance(finished["exc_info"], ValueError)


async def test_callbacks_called_per_executed_call() -> None:
    """on_start/on_finish fire for executed calls; a failing callback does not break the batch."""
    started: list[str] = []
    finished: list[str] = []

    async def on_start(call: ToolCall) -> None:
        started.append(call.id)
        raise RuntimeError("callback bug")

    async def on_finish(result: ToolCallResult) -> None:
        finished.append(result.tool_call_id)

    dispatcher = ToolDispatcher(registry)
    results = await dispatcher.run_batch(
        [ToolCall("c1", "add", '{"a": 1}'), ToolCall("c2", "nope", "{}")],
        on_start=on_start,
        on_finish=on_finish,
    )
    assert results[0].output == "2"
    assert started == ["c1"]  # unknown tools never start executing
    assert sorted(finished) == ["c1", "c2"]


async def test_cancelling_batch_cancels_async_tools() -> None:
    """Cancelling run_batch cancels running async tools and records them as cancelled."""
    local = ToolRegistry()
    state: dict[str, bool] = {}

    @local.tool
    async def forever() -> str:
        """Never ends."""
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise
        return "no"

    dispatcher = ToolDispatcher(local)
    task = asyncio.create_task(dispatcher.run_batch([ToolCall("c1", "forever", "{}")]))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state == {"cancelled": True}
    cached = dispatcher.cached("c1")
    assert cached is not None and cached.error_type == "cancelled"
    assert error(cached) == {
        "type": "cancelled",
        "message": "the call of tool 'forever' was cancelled",
        "tool": "forever",
    }


async def test_cancelling_batch_flags_sync_tools_and_discards_late_result() -> None:
    """A sync tool sees ctx.cancelled after the batch is cancelled; its late result is dropped."""
    local = ToolRegistry()
    saw_flag = threading.Event()
    started = threading.Event()

    @local.tool
    def poller(ctx: ToolContext) -> str:
        """Polls the cancellation flag."""
        started.set()
        if ctx.cancelled.wait(5):
            saw_flag.set()
        return "late result"

    dispatcher = ToolDispatcher(local)
    task = asyncio.create_task(dispatcher.run_batch([ToolCall("c1", "poller", "{}")]))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(saw_flag.wait, 5)
    await asyncio.sleep(0.05)  # let the thread return its late result
    cached = dispatcher.cached("c1")
    assert cached is not None and cached.error_type == "cancelled"
    assert "late result" not in cached.output


async def test_sync_tool_timeout_sets_flag() -> None:
    """On timeout a sync tool's ToolContext is flagged so it can stop early."""
    local = ToolRegistry()
    flagged = threading.Event()

    @local.tool(timeout_s=0.05)
    def waits(ctx: ToolContext) -> str:
        """Waits for the flag."""
        if ctx.cancelled.wait(5):
            flagged.set()
        return "late"

    (result,) = await ToolDispatcher(local).run_batch([ToolCall("c1", "waits", "{}")])
    assert result.error_type == "timeout"
    assert await asyncio.to_thread(flagged.wait, 5)


async def test_per_batch_concurrency_limit() -> None:
    """No more than max_concurrency calls of a batch execute at once."""
    local = ToolRegistry()
    active = 0
    peak = 0

    @local.tool
    async def track() -> str:
        """Track concurrency."""
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return "ok"

    calls = [ToolCall(f"c{i}", "track", "{}") for i in range(10)]
    results = await ToolDispatcher(local, max_concurrency=3).run_batch(calls)
    assert peak == 3
    assert all(r.output == "ok" for r in results)


async def test_process_limit_spans_dispatchers() -> None:
    """set_process_limit bounds concurrent executions across dispatchers."""
    from tools.dispatch import DEFAULT_PROCESS_LIMIT, set_process_limit

    local = ToolRegistry()
    active = 0
    peak = 0

    @local.tool
    async def track() -> str:
        """Track concurrency."""
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return "ok"

    set_process_limit(2)
    try:
        batches = [
            ToolDispatcher(local).run_batch(
                [ToolCall(f"d{d}c{i}", "track", "{}") for i in range(4)]
            )
            for d in range(3)
        ]
        results = await asyncio.gather(*batches)
    finally:
        set_process_limit(DEFAULT_PROCESS_LIMIT)
    assert peak == 2
    assert sum(len(r) for r in results) == 12


def test_dispatcher_rejects_bad_settings() -> None:
    """Nonsensical limits fail fast."""
    with pytest.raises(ValueError):
        ToolDispatcher(registry, max_concurrency=0)
    with pytest.raises(ValueError):
        ToolDispatcher(registry, max_output_chars=10)
    with pytest.raises(ValueError):
        ToolDispatcher(registry, default_timeout_s=0)


async def test_unencodable_result_shape() -> None:
    """A result that cannot be encoded (bytes that are not UTF-8) gives invalid_output."""
    local = ToolRegistry()

    @local.tool
    async def cyclic() -> dict[str, Any]:
        """Return raw binary data."""
        return {"value": b"\xff\xfe"}

    (result,) = await ToolDispatcher(local).run_batch([ToolCall("c1", "cyclic", "{}")])
    assert result.error_type == "invalid_output"
    body = error(result)
    assert set(body) == {"type", "message", "tool"}
    assert body["message"].startswith("the result cannot be encoded: ")


async def test_aclose_cancels_in_flight_calls() -> None:
    """aclose() cancels calls still running; their batch returns cancelled results."""
    dispatcher = ToolDispatcher(registry)
    batch = asyncio.create_task(dispatcher.run_batch([ToolCall("c1", "nap", '{"seconds": 60}')]))
    await asyncio.sleep(0.02)
    await dispatcher.aclose()
    (result,) = await asyncio.wait_for(batch, 1)
    assert result.error_type == "cancelled"
    assert error(result) == {
        "type": "cancelled",
        "message": "the call of tool 'nap' was cancelled",
        "tool": "nap",
    }


async def test_empty_batch() -> None:
    """An empty batch returns an empty list."""
    assert await ToolDispatcher(registry).run_batch([]) == []


async def test_result_survives_cancellation_during_on_finish() -> None:
    """A batch cancelled while on_finish runs keeps the real result, not 'cancelled'."""
    entered = asyncio.Event()

    async def on_finish(result: ToolCallResult) -> None:
        entered.set()
        await asyncio.sleep(60)

    dispatcher = ToolDispatcher(registry)
    task = asyncio.create_task(
        dispatcher.run_batch([ToolCall("c1", "add", '{"a": 41}')], on_finish=on_finish)
    )
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cached = dispatcher.cached("c1")
    assert cached is not None and cached.output == "42" and not cached.is_error


async def test_no_flight_left_behind() -> None:
    """After a batch, nothing stays in flight (no leak across many batches)."""
    dispatcher = ToolDispatcher(registry)
    for round_ in range(3):
        await dispatcher.run_batch([ToolCall(f"r{round_}", "add", '{"a": 1}')])
    assert dispatcher.in_flight == 0


async def test_redact_masks_secrets_in_error_outputs() -> None:
    """With redact=..., exception text quoting a credential is masked before submission."""
    secret = "sk-test-0123456789abcdef"

    def redact(text: str) -> str:
        return text.replace(secret, "***")

    (result,) = await run(
        ToolCall("c1", "explode", json.dumps({"message": f"bad key {secret}"})), redact=redact
    )
    assert error(result) == {
        "type": "tool_exception",
        "message": "ValueError: bad key ***",
        "tool": "explode",
    }
    assert secret not in result.output


async def test_a_batch_leaves_no_call_timer_behind() -> None:
    """The batch holds the calls' timer while it runs and drops it when it ends, also
    when the batch is cancelled."""
    dispatcher = ToolDispatcher(_TIMER_REGISTRY, default_timeout_s=30.0)
    results = await dispatcher.run_batch([ToolCall(f"q{i}", "quick", "{}") for i in range(4)])
    assert [r.output for r in results] == ["done"] * 4
    assert dispatcher._deadlines._handle is None and not dispatcher._deadlines._heap
    batch = asyncio.create_task(dispatcher.run_batch([ToolCall("s", "slow", "{}")]))
    await asyncio.sleep(0.01)
    assert dispatcher._deadlines._handle is not None
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert dispatcher._deadlines._handle is None and dispatcher._deadlines._running == 0


_TIMER_REGISTRY = ToolRegistry()


@_TIMER_REGISTRY.tool
async def quick() -> str:
    """Return at once."""
    return "done"


@_TIMER_REGISTRY.tool
async def slow() -> str:
    """Sleep past the test."""
    await asyncio.sleep(10)
    return "late"
