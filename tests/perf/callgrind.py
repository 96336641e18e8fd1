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
    try:
        return events(dump)["Ir"]
    except (RuntimeError, KeyError):
        return None


def instructions(command: list[str], cwd: Path) -> int:
    """User-space instructions ``command`` executes under callgrind (its own process only:
    children it starts with exec are not traced)."""
    return _run(command, cwd, [])["Ir"]


#: What ``--cache-sim=yes --branch-sim=yes`` counts, by callgrind's names: instructions
#: (``Ir``), first-level instruction and data cache misses (``I1mr``, ``D1mr`` reads,
#: ``D1mw`` writes), last-level misses (``ILmr``, ``DLmr``, ``DLmw``), conditional and
#: indirect branches and their mispredictions (``Bc``/``Bcm``, ``Bi``/``Bim``).
SIMULATED = ("--cache-sim=yes", "--branch-sim=yes")


def counts(command: list[str], cwd: Path, *, cache_sim: bool) -> dict[str, int]:
    """Callgrind's totals for ``command`` by event name: instructions (``Ir``) only, or with
    ``cache_sim`` every event of its cache and branch simulation (see :data:`SIMULATED`).
    The simulated caches are this machine's sizes as valgrind reads them; the counts are a
    model's, not the CPU's, and like instructions they do not move with the load."""
    return _run(command, cwd, list(SIMULATED) if cache_sim else [])


def difference(big: dict[str, int], small: dict[str, int], units: int) -> dict[str, float]:
    """Each event's count a unit from two runs ``units`` apart (start-up cancels out)."""
    return {name: (big[name] - small[name]) / units for name in big}


# The simulated rows a benchmark prints: a label and the callgrind events it adds up.
SIMULATED_ROWS = (
    ("instructions", ("Ir",)),
    ("L1 instruction misses", ("I1mr",)),
    ("L1 data misses (reads + writes)", ("D1mr", "D1mw")),
    ("last-level misses", ("ILmr", "DLmr", "DLmw")),
    ("conditional branches mispredicted", ("Bcm",)),
    ("indirect branches mispredicted", ("Bim",)),
)


def print_simulated(unit: str, per_unit: dict[str, dict[str, float]]) -> None:
    """Two sides' simulated events a ``unit`` (``per_unit``: side -> event -> count, the
    first side the reference), the second over the first, and each per thousand
    instructions (how often that side's work misses or mispredicts)."""
    (first, a), (second, b) = per_unit.items()
    heads = (first, second, f"{second}/{first}", f"{first} /1k", f"{second} /1k")
    print(f"  {'a ' + unit:<36}" + "".join(f" {head:>14}" for head in heads))
    for label, names in SIMULATED_ROWS:
        x, y = sum(a[n] for n in names), sum(b[n] for n in names)
        ratio = f"{y / x:.2f}x" if x > 0 else "-"
        print(
            f"  {label:<36} {x:>14,.0f} {y:>14,.0f} {ratio:>14} "
            f"{1000 * x / a['Ir']:>14.2f} {1000 * y / b['Ir']:>14.2f}"
        )


def events(dump: str) -> dict[str, int]:
    """A callgrind dump's totals by event name (its ``events:`` and ``summary:`` lines)."""
    names = re.search(r"^events: (.+)$", dump, re.MULTILINE)
    totals = re.search(r"^summary: (.+)$", dump, re.MULTILINE)
    if names is None or totals is None:
        raise RuntimeError("no events or summary line in the callgrind output")
    return dict(zip(names.group(1).split(), map(int, totals.group(1).split()), strict=True))


def _run(command: list[str], cwd: Path, options: list[str]) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", *options, f"--callgrind-out-file={out}", *command],
            cwd=cwd,
            check=True,
            capture_output=True,
        )
        return events(out.read_text())
