"""Benchmark: client CPU of whole runs (3 rounds x 8 tool calls), ours vs a floor loop and peers.

Run from the repository root:

    python tests/perf/bench_loop.py                      # both protocols, 30 runs per loop
    python tests/perf/bench_loop.py --protocol responses --runs 50 --peers none
    python tests/perf/bench_loop.py --instructions --runs 25   # instructions a run (callgrind)

The emulator runs as ``python -m runtime emulator`` in its own process with a scenario: every
run asks for 8 parallel calls of an async tool three times (new arguments each round), then answers with text (4 streamed
model turns, 3 tool rounds; on Assistants 5 requests, on Responses 4). Runs are executed one at
a time in this process; the figure is this process's CPU time per run (``time.process_time``),
the loops run in turn (floor, ours, floor, ours, ...) and the median is reported, ours/floor
pair by pair. Logging as shipped: the library's default (nothing configured).

* ``ours``: ``Orchestrator.create_thread_and_run`` / ``ResponsesOrchestrator.run``.
* ``floor``: a hand loop on one aiohttp session: split each stream on blank lines,
  ``json.loads`` each data line, gather the calls, post the outputs (no retries, no checks
  beyond the status and the final text). It sends the requests ours sends, byte for byte but
  for ids: the same bodies (tool definitions, ``background``, idempotency metadata) and
  headers.
* ``openai-python``: the SDK's hand loop (``beta.threads.runs.stream`` +
  ``submit_tool_outputs_stream``; ``responses.stream`` chained by ``previous_response_id``).
* ``openai-agents``: ``Runner.run`` of an ``Agent`` with the tool (Responses only; skipped
  with a message when the package is not installed).

``--instructions`` runs each of floor and ours under ``valgrind --tool=callgrind`` (this
process only; the emulator is not traced) with ``--runs`` and with 5 runs, and prints the
difference per run: the work a run takes, which the machine's load does not move. It needs
valgrind on PATH and takes minutes. ``--cache-sim`` adds callgrind's cache and branch
simulation to it (``--instructions --cache-sim``): per run, the L1 and last-level cache misses
and the mispredicted branches of floor and ours, each also per thousand instructions; they
show why the CPU-time ratio is above the instruction ratio (the cost of an instruction is not
the same in both loops).

Target: ours <= 1.4x the floor's CPU per run on both protocols. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.perf.callgrind import (  # noqa: E402
    counts,
    difference,
    print_simulated,
    require_valgrind,
)

CALLS = 8
ROUNDS = 3
MODEL = "gpt-4o"
REPLY = "done"
# The tool as our registry describes it, so every loop sends the same bytes.
PING_DESCRIPTION = "The benchmark's tool: trivial, async."
PING_PARAMETERS = {
    "additionalProperties": False,
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
    "type": "object",
}
ASSISTANTS_TOOL = {
    "type": "function",
    "function": {"name": "ping", "description": PING_DESCRIPTION, "parameters": PING_PARAMETERS},
}
RESPONSES_TOOL = {
    "type": "function",
    "name": "ping",
    "description": PING_DESCRIPTION,
    "parameters": PING_PARAMETERS,
}
# The headers ours sends (aiohttp adds Content-Type itself for a JSON body).
FLOOR_HEADERS = {"Authorization": "Bearer sk-bench", "User-Agent": "agent-runtime/0.1"}
ASSISTANTS_HEADERS = {**FLOOR_HEADERS, "OpenAI-Beta": "assistants=v2"}


async def ping(n: int) -> str:
    """The benchmark's tool: trivial, async."""
    await asyncio.sleep(0)
    return f"pong {n}"


def scenario_toml() -> str:
    # distinct arguments in every round: the same call asked 3 times in a run is stopped
    # (RunPolicy.max_repeated_calls, on by default)
    def calls(round_: int) -> str:
        return ", ".join(
            f'{{ name = "ping", arguments = {{ n = {round_ * CALLS + i} }} }}' for i in range(CALLS)
        )

    rounds = "".join(
        f'[[turns]]\ntype = "tool_calls"\ncalls = [{calls(r)}]\n\n' for r in range(ROUNDS)
    )
    return (
        f'name = "bench"\nthen = "repeat"\n\n{rounds}[[turns]]\ntype = "text"\ntext = "{REPLY}"\n'
    )


def start_emulator(scenario: Path) -> tuple[subprocess.Popen[str], str]:
    """Start the emulator with the scenario; return the process and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "emulator", "--port", "0", "--scenario", str(scenario)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    return proc, match.group(1) + "/v1"


Loop = Callable[[], Awaitable[bool]]  # one run; True when it ended as expected

# --stages: process CPU inside a few coroutines, per run (their awaits included, so what the
# loop runs meanwhile counts too; the wrappers' own cost is in the figures).
STAGE_CPU: dict[str, float] = {}
gather = asyncio.gather  # the floor's, by a name --stages can wrap


def time_stage(owner: Any, name: str, label: str) -> None:
    """Wrap the coroutine function ``owner.name`` so its CPU time adds to ``STAGE_CPU``."""
    original = getattr(owner, name)

    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return await original(*args, **kwargs)
        finally:
            STAGE_CPU[label] = STAGE_CPU.get(label, 0.0) + time.process_time() - start

    setattr(owner, name, timed)


def time_stages() -> None:
    from runtime.core.runner import Runner
    from runtime.protocol.stream import EventStream
    from tools.dispatch import ToolDispatcher

    time_stage(aiohttp.ClientSession, "_request", "aiohttp ClientSession._request")
    time_stage(sys.modules[__name__], "_sse", "floor: read the stream (_sse)")
    time_stage(sys.modules[__name__], "gather", "floor: the calls (gather)")
    time_stage(EventStream, "follow", "ours: read the stream (EventStream.follow)")
    time_stage(Runner, "_execute", "ours: the calls (Runner._execute)")
    time_stage(ToolDispatcher, "run_batch", "ours: of which ToolDispatcher.run_batch")


# --- floors ----------------------------------------------------------------------------------


async def _sse(resp: aiohttp.ClientResponse) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        *blocks, buffer = buffer.split(b"\n\n")
        for block in blocks:
            name, data = "message", None
            for line in block.split(b"\n"):
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: ") and line != b"data: [DONE]":
                    data = json.loads(line[6:])
            events.append((name, data))
    return events


async def floor_assistants(url: str) -> tuple[Loop, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(headers=ASSISTANTS_HEADERS)
    async with session.post(
        f"{url}/assistants", json={"model": MODEL, "tools": [ASSISTANTS_TOOL]}
    ) as r:
        assistant = (await r.json())["id"]

    async def run() -> bool:
        body = {"messages": [{"role": "user", "content": "go"}]}
        async with session.post(f"{url}/threads", json=body) as r:
            thread = (await r.json())["id"]
        request = (
            f"{url}/threads/{thread}/runs",
            {
                "assistant_id": assistant,
                "metadata": {"runtime_idempotency_key": uuid.uuid4().hex},
                "tools": [ASSISTANTS_TOOL],
                "stream": True,
            },
        )
        text = ""
        while True:
            async with session.post(request[0], json=request[1]) as r:
                events = await _sse(r)
            run = next(
                d for n, d in reversed(events) if n.startswith("thread.run.") and "step" not in n
            )
            text = (
                "".join(
                    part["text"]["value"]
                    for n, d in events
                    if n == "thread.message.completed"
                    for part in d["content"]
                )
                or text
            )
            if run["status"] != "requires_action":
                return run["status"] == "completed" and text == REPLY
            calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
            outputs = await gather(*(ping(**json.loads(c["function"]["arguments"])) for c in calls))
            request = (
                f"{url}/threads/{thread}/runs/{run['id']}/submit_tool_outputs",
                {
                    "tool_outputs": [
                        {"tool_call_id": c["id"], "output": o}
                        for c, o in zip(calls, outputs, strict=True)
                    ],
                    "stream": True,
                },
            )

    return run, session.close


async def floor_responses(url: str) -> tuple[Loop, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(headers=FLOOR_HEADERS)

    async def run() -> bool:
        body: dict[str, Any] = {
            "model": MODEL,
            "input": "go",
            "tools": [RESPONSES_TOOL],
            "background": True,
            "metadata": {"runtime_idempotency_key": uuid.uuid4().hex},
            "stream": True,
        }
        while True:
            async with session.post(f"{url}/responses", json=body) as r:
                events = await _sse(r)
            response = events[-1][1]["response"]
            calls = [item for item in response["output"] if item["type"] == "function_call"]
            if not calls:
                text = "".join(
                    part["text"]
                    for item in response["output"]
                    if item["type"] == "message"
                    for part in item["content"]
                )
                return response["status"] == "completed" and text == REPLY
            outputs = await gather(*(ping(**json.loads(c["arguments"])) for c in calls))
            body = {
                "model": MODEL,
                "input": [
                    {"type": "function_call_output", "call_id": c["call_id"], "output": o}
                    for c, o in zip(calls, outputs, strict=True)
                ],
                "tools": [RESPONSES_TOOL],
                "background": True,
                "metadata": {},
                "previous_response_id": response["id"],
                "stream": True,
            }

    return run, session.close


# --- ours ------------------------------------------------------------------------------------


def _registry() -> Any:
    from tools import ToolRegistry

    registry = ToolRegistry()
    registry.register(ping)
    return registry


async def ours_assistants(url: str) -> tuple[Loop, Callable[[], Awaitable[None]]]:
    from runtime import AssistantsClient, Orchestrator

    client = AssistantsClient(base_url=url, api_key="sk-bench")
    assistant = await client.create_assistant(model=MODEL, tools=[ASSISTANTS_TOOL])
    orchestrator = Orchestrator(client, _registry())

    async def run() -> bool:
        result = await orchestrator.create_thread_and_run(
            assistant.id, messages=[{"role": "user", "content": "go"}]
        )
        return result.ok and result.text == REPLY

    return run, client.aclose


async def ours_responses(url: str) -> tuple[Loop, Callable[[], Awaitable[None]]]:
    from runtime.responses import ResponsesClient, ResponsesOrchestrator

    client = ResponsesClient(base_url=url, api_key="sk-bench")
    orchestrator = ResponsesOrchestrator(client, _registry())

    async def run() -> bool:
        result = await orchestrator.run("go", model=MODEL)
        return result.ok and result.text == REPLY

    return run, client.aclose


# --- peers -----------------------------------------------------------------------------------


async def sdk_assistants(url: str) -> tuple[Loop, Callable[[], Awaitable[None]]]:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    assistant = await client.beta.assistants.create(model=MODEL, tools=[ASSISTANTS_TOOL])  # type: ignore[list-item]

    async def run() -> bool:
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
        async with client.beta.threads.runs.stream(
            thread_id=thread.id, assistant_id=assistant.id
        ) as stream:
            await stream.until_done()
            result = await stream.get_final_run()
        text = ""
        while result.status == "requires_action" and result.required_action is not None:
            calls = result.required_action.submit_tool_outputs.tool_calls
            outputs = await asyncio.gather(
                *(ping(**json.loads(c.function.arguments)) for c in calls)
            )
            async with client.beta.threads.runs.submit_tool_outputs_stream(
                thread_id=thread.id,
                run_id=result.id,
                tool_outputs=[
                    {"tool_call_id": c.id, "output": o} for c, o in zip(calls, outputs, strict=True)
                ],
            ) as stream:
                await stream.until_done()
                result = await stream.get_final_run()
                if result.status == "completed":  # rounds of tool calls have no message
                    messages = await stream.get_final_messages()
                    text = "".join(
                        p.text.value for m in messages for p in m.content if p.type == "text"
                    )
        return result.status == "completed" and text == REPLY

    return run, client.close


async def sdk_responses(url: str) -> tuple[Loop, Callable[[], Awaitable[None]]]:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)

    async def run() -> bool:
        params: dict[str, Any] = {"model": MODEL, "input": "go", "tools": [RESPONSES_TOOL]}
        while True:
            async with client.responses.stream(**params) as stream:
                await stream.until_done()
                response = await stream.get_final_response()
            calls = [item for item in response.output if item.type == "function_call"]
            if not calls:
                return response.status == "completed" and response.output_text == REPLY
            outputs = await asyncio.gather(*(ping(**json.loads(c.arguments)) for c in calls))
            params = {
                "model": MODEL,
                "previous_response_id": response.id,
                "tools": [RESPONSES_TOOL],
                "input": [
                    {"type": "function_call_output", "call_id": c.call_id, "output": o}
                    for c, o in zip(calls, outputs, strict=True)
                ],
            }

    return run, client.close


async def agents_responses(url: str) -> tuple[Loop, Callable[[], Awaitable[None]]]:
    import openai
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)

    @function_tool
    async def ping_tool(n: int) -> str:
        """Answer pong."""
        return await ping(n)

    ping_tool.name = "ping"
    agent = Agent(
        name="bench",
        instructions=None,
        tools=[ping_tool],
        model=OpenAIResponsesModel(model=MODEL, openai_client=client),
    )

    async def run() -> bool:
        result = Runner.run_streamed(agent, "go", max_turns=ROUNDS + 2)
        async for _ in result.stream_events():
            pass
        return result.final_output == REPLY

    return run, client.close


def _agents_available() -> bool:
    try:
        import agents  # noqa: F401
    except ImportError:
        return False
    return True


# --- driver ----------------------------------------------------------------------------------

Factory = Callable[[str], Awaitable[tuple[Loop, Callable[[], Awaitable[None]]]]]
LOOPS: dict[str, dict[str, Factory]] = {
    "assistants": {
        "floor": floor_assistants,
        "ours": ours_assistants,
        "openai-python": sdk_assistants,
    },
    "responses": {
        "floor": floor_responses,
        "ours": ours_responses,
        "openai-python": sdk_responses,
        "openai-agents": agents_responses,
    },
}


STAGES: dict[str, dict[str, list[float]]] = {}


async def cpu_of(run: Loop, name: str = "") -> float:
    STAGE_CPU.clear()
    start = time.process_time()
    ok = await run()
    cpu = time.process_time() - start
    if not ok:
        raise SystemExit(f"a run did not end as expected ({run.__qualname__})")
    for label, value in STAGE_CPU.items():
        STAGES.setdefault(name, {}).setdefault(label, []).append(value)
    return cpu


async def measure(protocol: str, url: str, runs: int, peers: list[str]) -> dict[str, list[float]]:
    """Floor and ours in turn for ``runs`` pairs (after 3 warm-up runs each); then the peers."""
    loops = LOOPS[protocol]
    opened = {name: await loops[name](url) for name in ("floor", "ours")}
    figures: dict[str, list[float]] = {"floor": [], "ours": []}
    try:
        for name in ("floor", "ours"):
            for _ in range(3):
                await cpu_of(opened[name][0])
        STAGES.clear()
        for _ in range(runs):
            for name in ("floor", "ours"):
                figures[name].append(await cpu_of(opened[name][0], name))
    finally:
        for _, close in opened.values():
            await close()
    for peer in peers:
        if peer not in loops:
            continue
        if peer == "openai-agents" and not _agents_available():
            print(
                f"{protocol}: openai-agents is not installed (pip install openai-agents): row skipped"
            )
            continue
        run, close = await loops[peer](url)
        try:
            for _ in range(3):
                await cpu_of(run)
            figures[peer] = [await cpu_of(run) for _ in range(max(5, runs // 3))]
        finally:
            await close()
    return figures


stages_of: dict[str, dict[str, dict[str, list[float]]]] = {}


def report(protocol: str, figures: dict[str, list[float]]) -> bool:
    ratio = statistics.median(o / f for o, f in zip(figures["ours"], figures["floor"], strict=True))
    ours = statistics.median(figures["ours"])
    print(f"\n{protocol}: {ROUNDS} rounds x {CALLS} tool calls per run, one run at a time")
    print(f"{'loop':<14} {'CPU ms/run':>11} {'vs ours':>8}   (median)")
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"{name:<14} {median * 1e3:>11.2f} {median / ours:>7.1f}x")
    print(f"ours vs floor: {ratio:.2f}x the floor's CPU per run (pair by pair; target <= 1.4x)")
    for name, stages in stages_of.get(protocol, {}).items():
        for label, values in stages.items():
            print(f"  {name:<6} {label:<44} {statistics.median(values) * 1e3:>6.2f} ms/run")
    return ratio <= 1.4


async def _runs_of(protocol: str, loop: str, runs: int, scenario: Path) -> None:
    """3 warm-up runs, a full collection, and ``runs`` more of one loop (what
    ``--instructions`` counts). Without the collection, the first full pass that start-up's
    objects bring about lands among the measured runs of the longer process only (ours: one
    pass over ~48,000 objects between the 5th and the 25th run, none in 200 runs after
    it), so the difference of two run counts would charge it to the runs."""
    proc, url = start_emulator(scenario)
    try:
        run, close = await LOOPS[protocol][loop](url)
        try:
            for n in range(3 + runs):
                if n == 3:
                    gc.collect()
                if not await run():
                    raise SystemExit(f"a run did not end as expected ({protocol} {loop})")
        finally:
            await close()
    finally:
        proc.terminate()
        proc.wait(10)


def _counts(protocol: str, loop: str, runs: int, scenario: Path, cache_sim: bool) -> dict[str, int]:
    """Callgrind's counts for this file running ``runs`` runs of one loop (the emulator,
    started with exec, is not traced): instructions only, or every simulated event."""
    command = [sys.executable, __file__, "--once", protocol, loop, str(runs), str(scenario)]
    return counts(command, REPO_ROOT, cache_sim=cache_sim)


def count_instructions(
    chosen: tuple[str, ...], runs: int, scenario: Path, *, cache_sim: bool = False
) -> None:
    """``--instructions``: per run, the difference between ``runs`` and 5 runs, so start-up
    and warm-up are out. The machine's load does not move it; the streams' chunking does a
    little (about +-0.5 M a run between two measurements of the same tree). With
    ``cache_sim``, callgrind's cache and branch simulation too: the misses and
    mispredictions a run, which an instruction count leaves out."""
    require_valgrind()
    few = 5
    for protocol in chosen:
        per_run = {}
        for loop in ("floor", "ours"):
            many = _counts(protocol, loop, runs, scenario, cache_sim)
            base = _counts(protocol, loop, few, scenario, cache_sim)
            per_run[loop] = difference(many, base, runs - few)
        floor, ours = per_run["floor"]["Ir"], per_run["ours"]["Ir"]
        print(
            f"{protocol}: floor {floor / 1e6:.2f} M, ours {ours / 1e6:.2f} M "
            f"instructions a run ({runs} - {few} runs; ours {ours / floor:.2f}x)"
        )
        if cache_sim:
            print_simulated("run", per_run)


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--once":
        protocol, loop, runs, scenario = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        asyncio.run(_runs_of(protocol, loop, runs, Path(scenario)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("assistants", "responses", "both"), default="both")
    parser.add_argument("--runs", type=int, default=30, help="floor/ours pairs per protocol")
    parser.add_argument(
        "--peers", default="openai-python,openai-agents", help="comma-separated, or none"
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also the CPU per run inside the request, the stream reading and the tool calls",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count user-space instructions per run under callgrind (floor and ours; minutes)",
    )
    parser.add_argument(
        "--cache-sim",
        action="store_true",
        help="with --instructions: also callgrind's cache and branch simulation (misses and "
        "mispredictions a run; several times slower)",
    )
    args = parser.parse_args()
    if args.instructions:
        with tempfile.TemporaryDirectory() as tmp:
            scenario = Path(tmp) / "bench.toml"
            scenario.write_text(scenario_toml())
            chosen = ("assistants", "responses") if args.protocol == "both" else (args.protocol,)
            count_instructions(chosen, max(args.runs, 10), scenario, cache_sim=args.cache_sim)
        return
    if args.stages:
        time_stages()
    peers = [] if args.peers == "none" else args.peers.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "bench.toml"
        scenario.write_text(scenario_toml())
        chosen = ("assistants", "responses") if args.protocol == "both" else (args.protocol,)
        results = {}
        for protocol in chosen:
            proc, url = start_emulator(scenario)  # a fresh scenario cursor per protocol
            try:
                results[protocol] = asyncio.run(measure(protocol, url, args.runs, peers))
                stages_of[protocol] = {k: dict(v) for k, v in STAGES.items()}
            finally:
                proc.terminate()
                proc.wait(10)
    print(
        f"\nPython {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; client CPU time, "
        "the emulator in its own process"
    )
    verdicts = [report(protocol, results[protocol]) for protocol in chosen]
    print("\ntargets met" if all(verdicts) else "\ntargets MISSED")
    sys.exit(0 if all(verdicts) else 1)


if __name__ == "__main__":
    main()
