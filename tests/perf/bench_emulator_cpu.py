"""Benchmark: the emulator's CPU time per request against a static aiohttp server's.

Run from the repository root:

    python tests/perf/bench_emulator_cpu.py                 # 7 pairs, 200 requests a kind
    python tests/perf/bench_emulator_cpu.py --pairs 9 --requests 300 --concurrency 1
    python tests/perf/bench_emulator_cpu.py --instructions --requests 200 --baseline DIR

Two servers run as subprocesses: ``python -m runtime emulator`` (logging as shipped) and a
static aiohttp server (this file with ``--static``) that answers every route with bytes the
emulator produced once at start: a streamed Assistants run (``POST /v1/threads/runs``), a
streamed Responses response (``POST /v1/responses``), an assistant (``GET
/v1/assistants/{id}``) and a new thread (``POST /v1/threads``). The static server reads each
request body as the emulator does, and writes a stream in one go as the emulator's sink does,
so the difference is the emulator's own work: routing, validation, state and serialisation.

Each kind of request is one block of ``--requests`` requests (``--concurrency`` at a time);
a pair is the same block against the emulator and against the static server, one after the
other, the order alternating from pair to pair. The figure is the CPU time the server
process spent during its block (the scheduler's nanosecond count of its threads, from
``/proc/PID/task/*/schedstat``), divided by the number of requests, so load from other
processes on the machine (which inflates wall time) counts little. It prints each pair's ratio (emulator / static) per kind and the medians.

``--instructions`` counts instead the user-space instructions each server process executes per
request (``valgrind --tool=callgrind``; counters zeroed after 30 warm-up requests of a kind and
dumped after ``--requests`` more with ``callgrind_control``): a figure the machine's load does
not move, slow to take (minutes). It needs valgrind on PATH.

``--baseline DIR`` also serves the emulator of another checkout (``python -m runtime emulator``
run from DIR, e.g. the code before a change) in the same pairs, and reports its CPU per request
and the ratio emulator / baseline pair by pair: on a loaded machine that before/after ratio
scatters less than two separate runs of the benchmark do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.perf.callgrind import summary as callgrind_summary  # noqa: E402

HEADERS = {"Authorization": "Bearer sk-bench"}
KINDS = ("assistants_stream", "responses_stream", "get_json", "post_json")

Request = Callable[[aiohttp.ClientSession, str, int], Awaitable[bytes]]


# -- the static server ------------------------------------------------------------------------


def serve_static(canned_path: str) -> None:
    """Serve the canned bytes (the child process of ``--static``)."""
    from aiohttp import web

    canned = {k: v.encode() for k, v in json.loads(Path(canned_path).read_text()).items()}

    async def stream(request: web.Request, body: bytes) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "x-request-id": "req_" + "0" * 32,
            },
        )
        await response.prepare(request)
        await response.write_eof(body)
        return response

    async def plain(request: web.Request, body: bytes) -> web.Response:
        await request.read()
        return web.Response(
            body=body, content_type="application/json", headers={"x-request-id": "req_" + "0" * 32}
        )

    async def runs(request: web.Request) -> web.StreamResponse:
        return await stream(request, canned["assistants_stream"])

    async def responses(request: web.Request) -> web.StreamResponse:
        return await stream(request, canned["responses_stream"])

    async def assistant(request: web.Request) -> web.Response:
        return await plain(request, canned["get_json"])

    async def thread(request: web.Request) -> web.Response:
        return await plain(request, canned["post_json"])

    app = web.Application()
    app.router.add_post("/v1/threads/runs", runs)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/assistants/{assistant_id}", assistant)
    app.router.add_post("/v1/threads", thread)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(f"static listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- processes --------------------------------------------------------------------------------


def start(command: list[str], cwd: Path = REPO_ROOT) -> tuple[subprocess.Popen[str], str]:
    """Start a server subprocess that prints ``listening on URL``; return it and the URL."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, match.group(1)


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU time of a process: the scheduler's nanosecond count summed over its threads
    (``/proc/PID/task/*/schedstat``), else user + system at clock-tick resolution."""
    try:
        total = 0
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        times = proc.cpu_times()
        return float(times.user + times.system)


# -- the load ---------------------------------------------------------------------------------


def requests_for(assistant_id: str) -> dict[str, Request]:
    """One request of each kind; each returns the body it read (checked by the caller)."""

    async def assistants_stream(s: aiohttp.ClientSession, base: str, index: int) -> bytes:
        body = {
            "assistant_id": assistant_id,
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": f"hello number {index}"}]},
        }
        async with s.post(base + "/threads/runs", json=body) as resp:
            resp.raise_for_status()
            return await resp.read()

    async def responses_stream(s: aiohttp.ClientSession, base: str, index: int) -> bytes:
        body = {"model": "gpt-4o", "input": f"hello number {index}", "stream": True}
        async with s.post(base + "/responses", json=body) as resp:
            resp.raise_for_status()
            return await resp.read()

    async def get_json(s: aiohttp.ClientSession, base: str, index: int) -> bytes:
        async with s.get(f"{base}/assistants/{assistant_id}") as resp:
            resp.raise_for_status()
            return await resp.read()

    async def post_json(s: aiohttp.ClientSession, base: str, index: int) -> bytes:
        async with s.post(base + "/threads", json={"metadata": {"n": str(index)}}) as resp:
            resp.raise_for_status()
            return await resp.read()

    return {
        "assistants_stream": assistants_stream,
        "responses_stream": responses_stream,
        "get_json": get_json,
        "post_json": post_json,
    }


def check(kind: str, data: bytes) -> None:
    """Fail loudly if a server answered something else than a finished run or an object."""
    if kind == "assistants_stream" and b"event: thread.run.completed" not in data:
        raise RuntimeError("the Assistants stream did not complete")
    if kind == "responses_stream" and b"event: response.completed" not in data:
        raise RuntimeError("the Responses stream did not complete")
    if kind in {"get_json", "post_json"} and not data.startswith(b"{"):
        raise RuntimeError(f"{kind}: not a JSON object")


async def block(
    session: aiohttp.ClientSession,
    base: str,
    kind: str,
    request: Request,
    count: int,
    concurrency: int,
) -> None:
    """``count`` requests of one kind, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with gate:
            check(kind, await request(session, base, index))

    await asyncio.gather(*(one(i) for i in range(count)))


async def canned_bytes(session: aiohttp.ClientSession, base: str) -> tuple[str, dict[str, str]]:
    """An assistant id and the bytes the emulator answers to one request of each kind."""
    async with session.post(base + "/assistants", json={"model": "gpt-4o"}) as resp:
        assistant_id = (await resp.json())["id"]
    requests = requests_for(assistant_id)
    canned: dict[str, str] = {}
    for kind in KINDS:
        data = await requests[kind](session, base, 0)
        check(kind, data)
        canned[kind] = data.decode()
    return assistant_id, canned


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Start the servers, run the interleaved pairs, return the figures."""
    emulator, emulator_url = start([sys.executable, "-m", "runtime", "emulator", "--port", "0"])
    static: subprocess.Popen[str] | None = None
    baseline: subprocess.Popen[str] | None = None
    canned_file = Path(tempfile.mkdtemp()) / "canned.json"
    try:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=HEADERS
        ) as session:
            assistant_id, canned = await canned_bytes(session, emulator_url + "/v1")
            canned_file.write_text(json.dumps(canned))
            static, static_url = start([sys.executable, __file__, "--static", str(canned_file)])
            servers = {
                "emulator": (psutil.Process(emulator.pid), emulator_url + "/v1"),
                "static": (psutil.Process(static.pid), static_url + "/v1"),
            }
            requests = {name: requests_for(assistant_id) for name in servers}
            if args.baseline:
                command = [sys.executable, "-m", "runtime", "emulator", "--port", "0"]
                baseline, baseline_url = start(command, cwd=Path(args.baseline))
                baseline_id, _ = await canned_bytes(session, baseline_url + "/v1")
                servers["baseline"] = (psutil.Process(baseline.pid), baseline_url + "/v1")
                requests["baseline"] = requests_for(baseline_id)
            for name, (_, base) in servers.items():  # warm them (imports, caches, connections)
                for kind in args.kinds:
                    await block(session, base, kind, requests[name][kind], 20, args.concurrency)
            per_request: dict[str, dict[str, list[float]]] = {
                name: {kind: [] for kind in args.kinds} for name in servers
            }
            for pair in range(args.pairs):
                order = list(servers) if pair % 2 == 0 else list(reversed(servers))
                for kind in args.kinds:
                    for name in order:
                        proc, base = servers[name]
                        before = cpu_seconds(proc)
                        await block(
                            session,
                            base,
                            kind,
                            requests[name][kind],
                            args.requests,
                            args.concurrency,
                        )
                        cpu = cpu_seconds(proc) - before
                        per_request[name][kind].append(cpu / args.requests * 1e6)
                ratios = {
                    kind: per_request["emulator"][kind][-1] / per_request["static"][kind][-1]
                    for kind in args.kinds
                }
                print(
                    f"pair {pair + 1}: "
                    + ", ".join(f"{kind} {ratio:.2f}x" for kind, ratio in ratios.items()),
                    flush=True,
                )
    finally:
        for proc in (emulator, static, baseline):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
        shutil.rmtree(canned_file.parent, ignore_errors=True)
    return summary(per_request, args)


async def count_instructions(args: argparse.Namespace) -> dict[str, Any]:
    """Each server under callgrind: instructions per request, by kind (``--instructions``)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--instructions needs valgrind and callgrind_control on PATH")
    out = Path(tempfile.mkdtemp())
    emulator = [sys.executable, "-m", "runtime", "emulator", "--port", "0"]
    commands: dict[str, tuple[list[str], Path]] = {"emulator": (emulator, REPO_ROOT)}
    if args.baseline:
        commands["baseline"] = (emulator, Path(args.baseline))
    commands["static"] = (
        [sys.executable, __file__, "--static", str(out / "canned.json")],
        REPO_ROOT,
    )
    figures: dict[str, Any] = {"requests_per_block": args.requests}
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=1200),
            headers=HEADERS,
        ) as session:
            assistant_id = ""
            for name, (command, cwd) in commands.items():
                valgrind = [
                    "valgrind",
                    "-q",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}/{name}.%p",
                ]
                proc, url = start(valgrind + command, cwd=cwd)
                try:
                    if name != "static":
                        assistant_id, canned = await canned_bytes(session, url + "/v1")
                        if name == "emulator":
                            (out / "canned.json").write_text(json.dumps(canned))
                    requests = requests_for(assistant_id)
                    for kind in args.kinds:
                        base = url + "/v1"
                        await block(session, base, kind, requests[kind], 30, args.concurrency)
                        _callgrind_control("-z", proc.pid)
                        await block(
                            session, base, kind, requests[kind], args.requests, args.concurrency
                        )
                        _callgrind_control("-d", proc.pid, kind)
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
                figures[name] = {
                    kind: _dumped_instructions(out, name, kind) // args.requests
                    for kind in args.kinds
                }
    finally:
        shutil.rmtree(out, ignore_errors=True)
    for kind in args.kinds:
        static = figures["static"][kind]
        figures[f"{kind}_emulator_per_static"] = round(figures["emulator"][kind] / static, 2)
        if args.baseline:
            old = figures["baseline"][kind]
            figures[f"{kind}_emulator_per_baseline"] = round(figures["emulator"][kind] / old, 3)
    return figures


def _callgrind_control(option: str, pid: int, *extra: str) -> None:
    """Zero (``-z``) or dump (``-d REASON``) the counters of a process run by callgrind."""
    command = ["callgrind_control", option, *extra, str(pid)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def _dumped_instructions(out: Path, name: str, kind: str) -> int:
    """The instruction total of the dump taken after the block of ``kind``."""
    for path in out.glob(f"{name}.*"):
        with path.open(errors="replace") as dump:
            head = dump.read(4000)
        if f"Trigger: dump {kind}\n" in head:
            total = callgrind_summary(head)
            if total is not None:
                return total
    raise RuntimeError(f"no callgrind dump for {name} {kind}")


def summary(per_request: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> Any:
    """Medians of the per-request CPU times and of the per-pair ratios, by kind."""
    figures: dict[str, Any] = {
        "machine_cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "pairs": args.pairs,
        "requests_per_block": args.requests,
        "concurrency": args.concurrency,
    }
    for kind in args.kinds:
        emu, static = per_request["emulator"][kind], per_request["static"][kind]
        ratios = [e / s for e, s in zip(emu, static, strict=True)]
        figures[kind] = {
            "emulator_cpu_us_median": round(statistics.median(emu), 1),
            "static_cpu_us_median": round(statistics.median(static), 1),
            "ratio_median": round(statistics.median(ratios), 2),
            "ratios": " ".join(f"{r:.2f}" for r in ratios),
        }
        if "baseline" in per_request:
            old = per_request["baseline"][kind]
            versus = [e / b for e, b in zip(emu, old, strict=True)]
            figures[kind]["baseline_cpu_us_median"] = round(statistics.median(old), 1)
            figures[kind]["vs_baseline_median"] = round(statistics.median(versus), 2)
            figures[kind]["vs_baseline"] = " ".join(f"{r:.2f}" for r in versus)
    return figures


def main() -> int:
    """Parse flags; serve statically (``--static``) or run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200, help="requests per kind and block")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help=f"comma-separated kinds of request to measure (default: all of {', '.join(KINDS)})",
    )
    parser.add_argument(
        "--baseline", metavar="DIR", help="also serve the emulator of this checkout and compare"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count user-space instructions per request under callgrind instead of CPU time",
    )
    parser.add_argument("--static", metavar="CANNED_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.kinds = tuple(kind for kind in KINDS if kind in args.kinds.split(","))
    if not args.kinds:
        parser.error(f"--kinds: none of {', '.join(KINDS)}")
    if args.static:
        serve_static(args.static)
        return 0
    figures = asyncio.run(count_instructions(args) if args.instructions else measure(args))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
