"""``python -m runtime migrate`` and ``python -m runtime parity``: moving to the Responses API.

``migrate THREAD_ID`` copies an Assistants thread into a new Conversation on the configured
server and prints the report as JSON. ``parity MESSAGE...`` runs the same messages with the
same tools on both protocols (on the embedded emulator when no server is configured) and
prints the differences.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Sequence

from runtime.assistants.client import AssistantsClient
from runtime.cli.commands import EMULATOR_API_KEY, _without_azure
from runtime.cli.tools import load_tool_registry
from runtime.config import ConfigError, Settings, load_settings
from runtime.emulator import Emulator
from runtime.errors import RuntimeAPIError
from runtime.logging import configure_logging
from runtime.migrate import MigrationError, MigrationReport, migrate_thread
from runtime.parity import ParityReport, parity
from runtime.responses.client import ResponsesClient
from tools import ToolRegistry


def _migrate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime migrate",
        description="Copy an Assistants thread (messages and tool calls) into a new "
        "Conversation on the configured server (OPENAI_API_KEY + OPENAI_BASE_URL, or "
        "AZURE_OPENAI_ENDPOINT + key) and print the report as JSON.",
    )
    parser.add_argument("thread_id", metavar="THREAD_ID", help="the thread to migrate")
    parser.add_argument("--config", help="settings TOML file (default: config/runtime.toml)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="make a new conversation even if the thread was migrated before",
    )
    parser.add_argument(
        "--no-mark",
        action="store_true",
        help="leave the thread's metadata alone (no migrated_to_conversation)",
    )
    return parser


def migrate_main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m runtime migrate``; returns the exit code.

    Exit codes: 0 when the thread is in a conversation (now or before), 2 for usage,
    configuration and API errors (one line on stderr).
    """
    args = _migrate_parser().parse_args(list(argv))
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    if not settings.has_remote_server:
        return _fail(
            "no server configured: set OPENAI_API_KEY + OPENAI_BASE_URL (or "
            "AZURE_OPENAI_ENDPOINT + key), or give --config"
        )
    configure_logging("WARNING", "console", sys.stderr)
    try:
        report = asyncio.run(_migrate(settings, args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MigrationError as exc:
        return _fail(f"{exc.message} (partial conversation: {exc.conversation_id})")
    except RuntimeAPIError as exc:
        return _fail(f"{type(exc).__name__}: {exc.message}")
    print(json.dumps(report.as_dict(), indent=2))
    return 0


async def _migrate(settings: Settings, args: argparse.Namespace) -> MigrationReport:
    async with (
        AssistantsClient.from_settings(settings) as assistants,
        ResponsesClient.from_settings(settings) as responses,
    ):
        return await migrate_thread(
            assistants, responses, args.thread_id, force=args.force, mark_thread=not args.no_mark
        )


def _parity_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime parity",
        description="Run the same messages with the same tools on the Assistants and the "
        "Responses protocol and print how the outcomes differ. Uses the configured server; "
        "without one, the embedded emulator (where '/call NAME {json}' lines become tool "
        "calls). Exit 0 when equal, 1 when they differ, 2 on errors.",
    )
    parser.add_argument(
        "messages",
        nargs="+",
        metavar="MESSAGE",
        help="a user message; several are sent in order on one conversation",
    )
    parser.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="MODULE",
        help="import tools from a module or .py file (repeatable)",
    )
    parser.add_argument(
        "--builtin-tools", action="store_true", help="offer the builtin clock and calculator"
    )
    parser.add_argument("--model", default="gpt-4o", help="the model (default gpt-4o)")
    parser.add_argument("--config", help="settings TOML file (default: config/runtime.toml)")
    return parser


def parity_main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m runtime parity``; returns the exit code."""
    args = _parity_parser().parse_args(list(argv))
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        registry = load_tool_registry(args.tools, builtins=args.builtin_tools)
    except Exception as exc:  # any import-time failure of user code is a usage error here
        return _fail(f"cannot load tools: {exc!r}")
    configure_logging("WARNING", "console", sys.stderr)
    try:
        report = asyncio.run(_parity(settings, registry, args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeAPIError as exc:
        return _fail(f"{type(exc).__name__}: {exc.message}")
    print(report.summary)
    return 0 if report.equal else 1


async def _parity(
    settings: Settings, registry: ToolRegistry, args: argparse.Namespace
) -> ParityReport:
    async with contextlib.AsyncExitStack() as stack:
        base_url: str | None = None
        api_key: str | None = None
        if not settings.has_remote_server:
            emu = await stack.enter_async_context(Emulator())
            print("note: no server configured; using the embedded emulator", file=sys.stderr)
            settings = _without_azure(settings)
            base_url, api_key = emu.base_url, EMULATOR_API_KEY
        return await parity(
            settings, registry, args.messages, base_url=base_url, api_key=api_key, model=args.model
        )
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: the stack may swallow)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
