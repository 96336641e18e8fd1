"""``python -m runtime emulator``: serve the emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys

from runtime.emulator.faults import FaultSpec, FaultSpecError
from runtime.emulator.retention import DEFAULT_RETAINED
from runtime.emulator.scenario import ScenarioError
from runtime.emulator.server import Emulator, EmulatorError, is_loopback


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime emulator",
        description="Serve a local OpenAI Assistants, Responses and Conversations API emulator "
        "(OpenAI style under /v1, Azure style under /openai?api-version=V and /openai/v1). "
        "Control endpoints under /_emulator need the --api-key when one is set.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8321, help="port (0: any free port)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding a non-loopback --host (the emulator has no real security)",
    )
    parser.add_argument("--scenario", help="scenario TOML file (config/scenarios/*.toml)")
    parser.add_argument(
        "--faults", help='random faults, e.g. "429=0.05,503=0.05,reset=0.02,cut=0.02,seed=7"'
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of ids and faults")
    parser.add_argument(
        "--run-ttl", type=float, default=600.0, metavar="SECONDS", help="run expiry (default 600)"
    )
    parser.add_argument("--api-key", help="accept only this key (default: any non-empty key)")
    parser.add_argument(
        "--delta-delay-ms", type=float, default=0.0, help="pause between streamed deltas"
    )
    parser.add_argument(
        "--poll-after-ms", type=int, default=100, help="openai-poll-after-ms header value"
    )
    parser.add_argument(
        "--max-retained",
        type=int,
        default=DEFAULT_RETAINED,
        metavar="N",
        help="keep at most N assistants, threads, runs, responses and conversations (each); "
        f"least recently used evicted first, active ones never (default {DEFAULT_RETAINED}; "
        "0: keep everything)",
    )
    return parser


def main(argv: list[str]) -> int:
    """Run the emulator CLI; returns the exit code."""
    args = _parser().parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        print(
            f"error: --host {args.host} is not a loopback address; add --allow-remote",
            file=sys.stderr,
        )
        return 2
    try:
        faults = FaultSpec.parse(args.faults) if args.faults else None
        emulator = Emulator(
            host=args.host,
            port=args.port,
            scenario=args.scenario,
            faults=faults,
            seed=args.seed,
            run_ttl_s=args.run_ttl,
            api_key=args.api_key,
            delta_delay_s=args.delta_delay_ms / 1000.0,
            poll_after_ms=args.poll_after_ms,
            allow_remote=args.allow_remote,
            max_retained=args.max_retained or None,
        )
    except (FaultSpecError, ScenarioError, EmulatorError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(emulator))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(emulator: Emulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with emulator:
        # What exists once serving starts (modules, the app) lives as long as the process: the
        # collector's full passes, which the objects a busy emulator keeps make frequent, skip it.
        gc.collect()
        gc.freeze()
        print(
            f"emulator listening on {emulator.url} "
            f"(OpenAI: {emulator.base_url}, Azure: {emulator.azure_endpoint}/openai)",
            flush=True,
        )
        await stop.wait()
    print("emulator stopped", flush=True)
