"""Instruction counts for the benchmarks: a command run under ``valgrind --tool=callgrind``.

A count of user-space instructions does not move with the machine's load, so two trees (or
two loops) can be compared on a shared machine; a benchmark runs its command with two sizes
and takes the difference, so start-up and imports cancel out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path


def require_valgrind() -> None:
    """Exit with a message when valgrind is not on PATH."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind on PATH")


def summary(dump: str) -> int | None:
    """The instruction total of a callgrind dump's text (its ``summary:`` line), if any."""
    match = re.search(r"^summary: (\d+)", dump, re.MULTILINE)
    return int(match.group(1)) if match is not None else None


def instructions(command: list[str], cwd: Path) -> int:
    """User-space instructions ``command`` executes under callgrind (its own process only:
    children it starts with exec are not traced)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            cwd=cwd,
            check=True,
            capture_output=True,
        )
        total = summary(out.read_text())
    if total is None:
        raise RuntimeError("no summary line in the callgrind output")
    return total
