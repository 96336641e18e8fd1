"""Benchmark: consuming one stream of 20,000 text deltas, three ways, same bytes, both protocols.

Run: ``python tests/perf/bench_stream.py [--protocol both] [--deltas 20000] [--repeat 7]``

A loopback aiohttp server in a separate process streams the prebuilt bytes: an Assistants run
(``thread.message.delta`` events) and a Responses response (``response.output_text.delta``
events), with the event shapes of the recorded streams (the first Assistants delta carries
``annotations``; Responses deltas carry ``sequence_number`` and ``logprobs``). Consumers:

* ``ours``: :class:`runtime.AssistantsClient` ``create_run(stream=True)`` /
  :class:`runtime.responses.ResponsesClient` ``create(stream=True)``, with an
  :class:`runtime.EventHandler` overriding ``on_text_delta``;
* ``sdk``: openai-python, ``beta.threads.runs.stream(...)`` with an
  ``AsyncAssistantEventHandler`` overriding ``on_text_delta`` / ``responses.stream(...)``
  counting ``response.output_text.delta`` events (both keep snapshots, as ours do);
* ``floor``: aiohttp read + split on blank lines + ``json.loads`` of each data line.

The figure is the client process's CPU time (the server runs in its own process), each
consumer run in turn (floor, ours, floor, ours, ...), the median of ``--repeat`` pairs; the
ratio ours/floor is taken pair by pair. Targets: ours within 1.2x the floor's CPU and at least
20x faster than the SDK, on both protocols. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
RESPONSE_ID = "resp_bench"
MODEL = "gpt-4o-2024-08-06"


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


def _words(deltas: int) -> list[str]:
    return [f"w{i} " for i in range(deltas)]


def assistants_body(deltas: int) -> bytes:
    """The SSE body of one run with ``deltas`` message deltas."""
    words = _words(deltas)
    out = [
        _event("thread.run.created", RUN),
        _event("thread.run.queued", RUN),
        _event("thread.run.in_progress", {**RUN, "status": "in_progress"}),
        _event("thread.run.step.created", STEP),
        _event("thread.run.step.in_progress", STEP),
        _event("thread.message.created", _message("in_progress", None)),
        _event("thread.message.in_progress", _message("in_progress", None)),
    ]
    for i, word in enumerate(words):
        text: dict[str, Any] = {"value": word}
        if i == 0:
            text["annotations"] = []  # as in the recorded stream
        delta = {"content": [{"index": 0, "type": "text", "text": text}]}
        out.append(
            _event(
                "thread.message.delta",
                {"id": MESSAGE_ID, "object": "thread.message.delta", "delta": delta},
            )
        )
    full = "".join(words)
    usage = {"prompt_tokens": 10, "completion_tokens": deltas, "total_tokens": deltas + 10}
    out += [
        _event("thread.message.completed", _message("completed", full)),
        _event("thread.run.step.completed", {**STEP, "status": "completed", "usage": usage}),
        _event("thread.run.completed", {**RUN, "status": "completed", "usage": usage}),
        "event: done\ndata: [DONE]\n\n",
    ]
    return "".join(out).encode()


def _response(status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": 1741269019,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def responses_body(deltas: int) -> bytes:
    """The SSE body of one response with ``deltas`` output_text deltas."""
    words = _words(deltas)
    sequence = iter(range(deltas + 100))

    def event(name: str, **fields: Any) -> str:
        return _event(name, {"type": name, "sequence_number": next(sequence), **fields})

    item: dict[str, Any] = {
        "id": MESSAGE_ID,
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    where = {"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0}
    part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    out = [
        event("response.created", response=_response("in_progress", [], None)),
        event("response.in_progress", response=_response("in_progress", [], None)),
        event("response.output_item.added", output_index=0, item=item),
        event("response.content_part.added", **where, part=part),
    ]
    for word in words:
        out.append(event("response.output_text.delta", **where, delta=word, logprobs=[]))
    full = "".join(words)
    done_part = {**part, "text": full}
    done_item = {**item, "status": "completed", "content": [done_part]}
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": deltas,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": deltas + 10,
    }
    out += [
        event("response.output_text.done", **where, text=full, logprobs=[]),
        event("response.content_part.done", **where, part=done_part),
        event("response.output_item.done", output_index=0, item=done_item),
        event("response.completed", response=_response("completed", [done_item], usage)),
    ]
    return "".join(out).encode()


def _serve(port: int, deltas: int, ready: Any) -> None:
    """Server process: answer each protocol's create call with its prebuilt stream."""
    bodies = {"assistants": assistants_body(deltas), "responses": responses_body(deltas)}

    def handler(body: bytes) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            await request.read()
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for i in range(0, len(body), 65536):
                await response.write(body[i : i + 65536])
            await response.write_eof()
            return response

        return handle

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/threads/{thread_id}/runs", handler(bodies["assistants"]))
        app.router.add_post("/v1/responses", handler(bodies["responses"]))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


# --- consumers: each returns the number of text deltas it saw -------------------------------


def _counter() -> Any:
    from runtime import EventHandler
    from runtime.protocol.snapshots import TextSnapshot

    class Counter(EventHandler):
        def __init__(self) -> None:
            self.count = 0

        async def on_text_delta(self, delta: str, snapshot: TextSnapshot) -> None:
            self.count += 1

    return Counter()


async def ours_assistants(base_url: str) -> int:
    """Our AssistantsClient and RunStream."""
    from runtime import AssistantsClient

    handler = _counter()
    async with AssistantsClient(base_url=base_url, api_key="sk-bench-000000000") as client:
        stream = await client.create_run(THREAD, "asst_bench", stream=True, handler=handler)
        await stream.until_done()
        assert stream.run is not None and stream.run.status == "completed"
    return int(handler.count)


async def ours_responses(base_url: str) -> int:
    """Our ResponsesClient and ResponseStream."""
    from runtime.responses import ResponsesClient

    handler = _counter()
    async with ResponsesClient(base_url=base_url, api_key="sk-bench-000000000") as client:
        stream = await client.create(model=MODEL, input="hi", stream=True, handler=handler)
        response = await stream.final_response()
        assert response.status == "completed"
    return int(handler.count)


async def sdk_assistants(base_url: str) -> int:
    """openai-python's Assistants streaming helper."""
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


async def sdk_responses(base_url: str) -> int:
    """openai-python's Responses streaming helper (it keeps a response snapshot)."""
    from openai import AsyncOpenAI

    count = 0
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench-000000000", max_retries=0)
    try:
        async with client.responses.stream(model=MODEL, input="hi") as stream:
            async for event in stream:
                if event.type == "response.output_text.delta":
                    count += 1
            final = await stream.get_final_response()
            assert final.status == "completed"
    finally:
        await client.close()
    return count


def floor_for(path: str) -> Callable[[str], Awaitable[int]]:
    """aiohttp read + split on blank lines + json.loads of each data line."""

    async def floor(base_url: str) -> int:
        count = 0
        async with aiohttp.ClientSession() as session:
            body = {"model": MODEL, "assistant_id": "asst_bench", "stream": True}
            async with session.post(f"{base_url}{path}", json=body) as resp:
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

    return floor


@dataclass(frozen=True)
class Protocol:
    name: str
    ours: Callable[[str], Awaitable[int]]
    sdk: Callable[[str], Awaitable[int]]
    floor: Callable[[str], Awaitable[int]]
    events: int  # events in the stream (data lines the floor decodes)


def protocols(deltas: int) -> dict[str, Protocol]:
    return {
        "assistants": Protocol(
            "assistants",
            ours_assistants,
            sdk_assistants,
            floor_for(f"/threads/{THREAD}/runs"),
            deltas + 10,
        ),
        "responses": Protocol(
            "responses", ours_responses, sdk_responses, floor_for("/responses"), deltas + 8
        ),
    }


async def timed(func: Callable[[str], Awaitable[int]], base_url: str, expected: int) -> float:
    """CPU seconds of this process for one consumption, checking the count."""
    start = time.process_time()
    seen = await func(base_url)
    cpu = time.process_time() - start
    assert seen == expected, (func.__name__, seen, expected)
    return cpu


async def measure(
    proto: Protocol, base_url: str, deltas: int, repeat: int, sdk_repeat: int
) -> dict[str, list[float]]:
    """Floor and ours in turn, ``repeat`` pairs after a warm-up of each; then the SDK."""
    await timed(proto.floor, base_url, proto.events)
    await timed(proto.ours, base_url, deltas)
    out: dict[str, list[float]] = {"floor": [], "ours": [], "sdk": []}
    for _ in range(repeat):
        out["floor"].append(await timed(proto.floor, base_url, proto.events))
        out["ours"].append(await timed(proto.ours, base_url, deltas))
    for _ in range(sdk_repeat):
        # No warm-up: one SDK run takes seconds (its imports are done before timing).
        out["sdk"].append(await timed(proto.sdk, base_url, deltas))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def report(proto: Protocol, figures: dict[str, list[float]], deltas: int) -> bool:
    """Print one protocol's table; True when its targets are met."""
    floor, ours, sdk = figures["floor"], figures["ours"], figures["sdk"]
    vs_floor = statistics.median(o / f for o, f in zip(ours, floor, strict=True))
    ours_median = statistics.median(ours)
    print(f"\n{proto.name}: {proto.events} events ({deltas} text deltas)")
    print(f"{'consumer':<8} {'CPU s':>8} {'µs/event':>9}   (median of runs)")
    for name, values in (("ours", ours), ("sdk", sdk), ("floor", floor)):
        if values:
            median = statistics.median(values)
            print(f"{name:<8} {median:>8.3f} {median / proto.events * 1e6:>9.1f}")
    print(f"ours vs floor: {vs_floor:.2f}x the floor's CPU (pair by pair; target <= 1.2x)")
    ok = vs_floor <= 1.2
    if sdk:
        speedup = statistics.median(sdk) / ours_median
        print(f"ours vs sdk: {speedup:.1f}x faster (target >= 20x)")
        ok = ok and speedup >= 20
    return ok


def main() -> None:
    """Start the server process, measure the consumers, print a report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("assistants", "responses", "both"), default="both")
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7, help="floor/ours pairs")
    parser.add_argument("--sdk-repeat", type=int, default=1, help="SDK runs (0: skip the SDK)")
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import openai.lib.streaming  # the import cost stays out of the timings
        import openai.lib.streaming.responses

    import runtime.responses  # noqa: F401

    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=_serve, args=(port, args.deltas, ready), daemon=True)
    server.start()
    chosen = ("assistants", "responses") if args.protocol == "both" else (args.protocol,)
    specs = protocols(args.deltas)
    try:
        if not ready.wait(30):
            raise SystemExit("server did not start")
        base_url = f"http://127.0.0.1:{port}/v1"

        async def run_all() -> dict[str, dict[str, list[float]]]:
            return {
                name: await measure(
                    specs[name], base_url, args.deltas, args.repeat, args.sdk_repeat
                )
                for name in chosen
            }

        results = asyncio.run(run_all())
    finally:
        server.terminate()
        server.join(5)

    import openai

    print(
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"openai {openai.__version__}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} (server in its own process; client CPU time)"
    )
    verdicts = [report(specs[name], results[name], args.deltas) for name in chosen]
    ok = all(verdicts)
    print("\ntargets met" if ok else "\ntargets MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
