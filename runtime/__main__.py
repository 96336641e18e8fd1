"""Command line: ``python -m runtime {demo,run,emulator,worker,submit,jobs,approve,reject,...}``.

Each sub-command lives in its own module and is imported lazily, so that ``emulator`` does not
pay for the worker's imports and a broken optional piece cannot break the others.
"""

from __future__ import annotations

import importlib
import sys

_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("runtime.cli.commands", "demo_main"),
    "run": ("runtime.cli.commands", "run_main"),
    "emulator": ("runtime.emulator.cli", "main"),
    "worker": ("runtime.worker.cli", "worker_main"),
    "submit": ("runtime.worker.cli", "submit_main"),
    "jobs": ("runtime.worker.cli", "jobs_main"),
    "approve": ("runtime.worker.cli", "approve_main"),
    "reject": ("runtime.worker.cli", "reject_main"),
    "assistant": ("runtime.worker.cli", "assistant_main"),
    "migrate": ("runtime.cli.migrate", "migrate_main"),
    "parity": ("runtime.cli.migrate", "parity_main"),
}

_USAGE = """usage: python -m runtime COMMAND [ARGS]

commands:
  demo       run a conversation with parallel tool calls on the embedded emulator
  run        run one message against the configured server (or the embedded emulator)
  emulator   serve the local Assistants/Responses emulator
  worker     process jobs from a queue
  submit     enqueue a job (and optionally wait for its result)
  jobs       list recent jobs and their status
  approve    approve a tool call of a job awaiting approval
  reject     reject a tool call of a job awaiting approval (--reason)
  assistant  create an assistant for the worker's jobs (prints its id)
  migrate    copy an Assistants thread into a new Conversation (Responses API)
  parity     run the same messages on both protocols and show the differences
"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a sub-command and return its exit code."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in _COMMANDS:
        print(f"unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    module_name, func_name = _COMMANDS[command]
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest))


if __name__ == "__main__":
    sys.exit(main())
