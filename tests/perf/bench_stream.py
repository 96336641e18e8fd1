"""Benchmark: consuming one run stream of 20,000 text deltas, three ways, same bytes.

Run: ``python tests/perf/bench_stream.py [--deltas 20000] [--repeat 7]``

A loopback aiohttp server in a separate process streams the run. We measure, best of N:

* ``ours``: :class:`runtime.AssistantsClient` ``create_run(stream=True)`` with an
  :class:`runtime.EventHandler` overriding ``on_text_delta``;
* ``sdk``: the official openai SDK, ``AsyncOpenAI(...).beta.threads.runs.stream(...)`` with an
  ``AsyncAssistantEventHandler`` overriding ``on_text_delta``;
* ``floor``: aiohttp read + split on blank lines + ``json.loads`` of each data line.

Targets: ours at least 10x the SDK's speed and within 2.5x the floor's time.
Not collected by pytest (file name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

THREAD = "thread_bench"
RUN: dict[str, Any] = {
    "id": "run_bench",
    "object": "thread.run",
    "created_at": 1710348075,
    "assistant_id": "asst_bench",
    "thread_id": THREAD,
    "status": "queued",
    "model": "gpt-4o",
    "tools": [],
    "metadata": {},
}
MESSAGE_ID = "msg_bench"
STEP: dict[str, Any] = {
    "id": "step_bench",
    "object": "thread.run.step",
    "created_at": 1710348076,
    "run_id": "run_bench",
    "assistant_id": "asst_bench",
    "thread_id": THREAD,
    "type": "message_creation",
    "status": "in_progress",
    "step_details": {"type": "message_creation", "message_creation": {"message_id": MESSAGE_ID}},
}


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _message(status: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [{"type": "text", "text": {"value": text, "annotations": []}}]
    return {
        "id": MESSAGE_ID,
        "object": "thread.message",
        "created_at": 1710348076,
        "assistant_id": "asst_bench",
        "thread_id": THREAD,
        "run_id": "run_bench",
        "status": status,
        "role": "assistant",
        "content": content,
        "attachments": [],
        "metadata": {},
    }


def build_body(deltas: int) -> tuple[bytes, str]:
    """The SSE body of one run with ``deltas`` message deltas, and the full text."""
    words = [f"w{i} " for i in range(deltas)]
    out = [
        _event("thread.run.created", RUN),
        _event("thread.run.queued", RUN),
        _event("thread.run.in_progress", {**RUN, "status": "in_progress"}),
        _event("thread.run.step.created", STEP),
        _event("thread.run.step.in_progress", STEP),
        _event("thread.message.created", _message("in_progress", None)),
        _event("thread.message.in_progress", _message("in_progress", None)),
    ]
    for word in words:
        delta = {"content": [{"index": 0, "type": "text", "text": {"value": word}}]}
        out.append(
            _event(
                "thread.message.delta",
                {"id": MESSAGE_ID, "object": "thread.message.delta", "delta": delta},
            )
        )
    text = "".join(words)
    usage = {"prompt_tokens": 10, "completion_tokens": deltas, "total_tokens": deltas + 10}
    out += [
        _event("thread.message.completed", _message("completed", text)),
        _event("thread.run.step.completed", {**STEP, "status": "completed", "usage": usage}),
        _event("thread.run.completed", {**RUN, "status": "completed", "usage": usage}),
        "event: done\ndata: [DONE]\n\n",
    ]
    return "".join(out).encode(), text


def _serve(port: int, deltas: int, ready: Any) -> None:
    """Server process: answer every POST .../runs with the prebuilt stream."""
    body, _ = build_body(deltas)

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for i in range(0, len(body), 65536):
            await response.write(body[i : i + 65536])
        await response.write_eof()
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/threads/{thread_id}/runs", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def run_ours(base_url: str, deltas: int) -> int:
    """Our client and RunStream; returns the number of text deltas seen."""
    from runtime import AssistantsClient, EventHandler
    from runtime.protocol.snapshots import TextSnapshot

    class Counter(EventHandler):
        def __init__(self) -> None:
            self.count = 0

        async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
            self.count += 1

    handler = Counter()
    async with AssistantsClient(base_url=base_url, api_key="sk-bench-000000000") as client:
        stream = await client.create_run(THREAD, "asst_bench", stream=True, handler=handler)
        await stream.until_done()
        assert stream.run is not None and stream.run.status == "completed"
    return handler.count


async def run_sdk(base_url: str, deltas: int) -> int:
    """The official SDK's streaming helper; returns the number of text deltas seen."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from openai import AsyncAssistantEventHandler, AsyncOpenAI

        class Counter(AsyncAssistantEventHandler):
            def __init__(self) -> None:
                super().__init__()
                self.count = 0

            async def on_text_delta(self, delta: Any, snapshot: Any) -> None:
                self.count += 1

        handler = Counter()
        client = AsyncOpenAI(base_url=base_url, api_key="sk-bench-000000000", max_retries=0)
        try:
            async with client.beta.threads.runs.stream(
                thread_id=THREAD, assistant_id="asst_bench", event_handler=handler
            ) as stream:
                await stream.until_done()
        finally:
            await client.close()
    return handler.count


async def run_floor(base_url: str, deltas: int) -> int:
    """aiohttp read + split on blank lines + json.loads of each data line."""
    count = 0
    async with aiohttp.ClientSession() as session:
        url = f"{base_url}/threads/{THREAD}/runs"
        async with session.post(url, json={"assistant_id": "asst_bench", "stream": True}) as resp:
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    for line in event.split(b"\n"):
                        if line.startswith(b"data: ") and line != b"data: [DONE]":
                            json.loads(line[6:])
                            count += 1
    return count


async def best_of(
    name: str, func: Callable[[str, int], Awaitable[int]], base_url: str, deltas: int, repeat: int
) -> float:
    """Best wall time of ``repeat`` runs, checking the delta count.

    One warm-up run first, except for the SDK: one of its runs takes many seconds (its
    imports are done before timing instead).
    """
    if name != "sdk":
        await func(base_url, deltas)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        seen = await func(base_url, deltas)
        times.append(time.perf_counter() - start)
        expected = deltas if name != "floor" else deltas + 10
        assert seen == expected, (name, seen, expected)
    return min(times)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    """Start the server process, measure the three consumers, print a report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sdk-repeat", type=int, default=2)
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import openai.lib.streaming  # the import cost stays out of the timings

    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=_serve, args=(port, args.deltas, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit("server did not start")
        base_url = f"http://127.0.0.1:{port}/v1"
        body, _ = build_body(args.deltas)
        events = args.deltas + 11

        async def measure() -> dict[str, float]:
            return {
                "floor": await best_of("floor", run_floor, base_url, args.deltas, args.repeat),
                "ours": await best_of("ours", run_ours, base_url, args.deltas, args.repeat),
                "sdk": await best_of("sdk", run_sdk, base_url, args.deltas, args.sdk_repeat),
            }

        results = asyncio.run(measure())
    finally:
        server.terminate()
        server.join(5)

    import openai

    print(
        f"stream of {events} events ({args.deltas} thread.message.delta), {len(body) / 1e6:.1f} MB; "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"openai {openai.__version__}, {os.cpu_count()} cores (server in its own process)"
    )
    print(f"{'consumer':<8} {'best s':>8} {'events/s':>11}")
    for name in ("ours", "sdk", "floor"):
        seconds = results[name]
        print(f"{name:<8} {seconds:>8.3f} {events / seconds:>11,.0f}")
    speedup = results["sdk"] / results["ours"]
    vs_floor = results["ours"] / results["floor"]
    print(f"ours vs sdk: {speedup:.1f}x faster (target >= 10x)")
    print(f"ours vs floor: {vs_floor:.2f}x the floor's time (target <= 2.5x)")
    ok = speedup >= 10 and vs_floor <= 2.5
    print("targets met" if ok else "targets MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
