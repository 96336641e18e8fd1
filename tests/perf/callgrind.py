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


def require_valgrind(option: str = "--instructions") -> None:
    """Exit with a message when valgrind is not on PATH."""
    if shutil.which("valgrind") is None:
        raise SystemExit(f"{option} needs valgrind on PATH")


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
        summary = re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
    if summary is None:
        raise RuntimeError("no summary line in the callgrind output")
    return int(summary.group(1))
