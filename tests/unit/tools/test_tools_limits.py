"""Output cap and the process-wide limiter."""

import asyncio
import json
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from tools.encoding import MIN_OUTPUT_CHARS, encode_output, error_output, truncate
from tools.limits import ProcessLimiter


@settings(deadline=None)  # no per-example deadline: the test machine is shared
@given(st.text(max_size=3000), st.integers(min_value=MIN_OUTPUT_CHARS, max_value=2000))
def test_truncate_never_exceeds_limit(text: str, limit: int) -> None:
    """truncate keeps short text intact and caps long text, marker included."""
    out = truncate(text, limit)
    if len(text) <= limit:
        assert out == text
    else:
        assert len(out) <= limit
        head, marker = out.rsplit("…[truncated ", 1)
        assert text.startswith(head)
        assert marker == f"{len(text) - len(head)} chars]"


def test_encode_output_types() -> None:
    """str passes through; sets, tuples and unknown objects are JSON."""
    assert encode_output("plain") == "plain"
    assert encode_output((1, "a")) == '[1,"a"]'
    assert encode_output(None) == "null"
    assert json.loads(encode_output(object())).startswith("<object object")


def test_error_message_is_capped_and_json_stays_valid() -> None:
    """A huge exception message is cut inside the JSON, so the error stays parseable."""
    body = json.loads(error_output("tool_exception", "m" * 10_000, "t"))
    assert len(body["error"]["message"]) == 2000
    assert body["error"]["message"].endswith("chars]")


async def test_limiter_cancelled_waiter_does_not_leak() -> None:
    """Cancelling a waiting acquire leaves the count consistent."""
    limiter = ProcessLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    limiter.release()
    assert limiter.active == 0
    await asyncio.wait_for(limiter.acquire(), 1)
    assert limiter.active == 1


async def test_limiter_hands_slot_to_waiter_and_grows() -> None:
    """release wakes the oldest waiter; raising the limit wakes waiters at once."""
    limiter = ProcessLimiter(1)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    limiter.release()
    await asyncio.wait_for(first, 1)
    assert not second.done()
    limiter.set_limit(2)
    await asyncio.wait_for(second, 1)
    assert limiter.active == 2


async def test_limiter_works_across_event_loops() -> None:
    """One limiter serves a second event loop in another thread (unlike asyncio.Semaphore)."""
    limiter = ProcessLimiter(1)
    await limiter.acquire()
    got = threading.Event()

    def other_loop() -> None:
        async def take() -> None:
            await limiter.acquire()
            got.set()
            limiter.release()

        asyncio.run(take())

    thread = threading.Thread(target=other_loop)
    thread.start()
    await asyncio.sleep(0.05)
    assert not got.is_set()
    limiter.release()
    await asyncio.to_thread(thread.join, 5)
    assert got.is_set()
    assert limiter.active == 0


async def test_thread_pool_size_bounds_sync_tools_and_threads_are_daemons() -> None:
    """set_thread_pool_size caps concurrent sync tools; pool threads never block exit."""
    from tools import ToolCall, ToolDispatcher, ToolRegistry
    from tools.limits import DEFAULT_THREAD_POOL_SIZE, set_thread_pool_size

    registry = ToolRegistry()
    lock = threading.Lock()
    active = 0
    peak = 0
    daemons: list[bool] = []

    @registry.tool
    def work() -> str:
        """Track concurrency in threads."""
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            daemons.append(threading.current_thread().daemon)
        threading.Event().wait(0.02)
        with lock:
            active -= 1
        return "ok"

    set_thread_pool_size(2)
    try:
        calls = [ToolCall(f"c{i}", "work", "{}") for i in range(6)]
        results = await ToolDispatcher(registry).run_batch(calls)
    finally:
        set_thread_pool_size(DEFAULT_THREAD_POOL_SIZE)
    assert [r.output for r in results] == ["ok"] * 6
    assert peak == 2
    assert all(daemons)
