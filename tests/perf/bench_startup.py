"""Benchmark: how long ``python -m runtime --help``, ``import runtime`` and the demo take.

Run from the repository root:

    python tests/perf/bench_startup.py              # 20 runs of each import, 5 demos
    python tests/perf/bench_startup.py --runs 50 --demo-runs 10

Each sample is a fresh interpreter (a subprocess), so it measures what a user waits for at the
shell, output included (the demo's text streams at its shipped pace). The targets: 0.3 s for
``--help`` (the clients and the worker are imported only by the command that needs them) and
3 s for ``python -m runtime demo`` from start to exit. To see where the time goes:

    python -X importtime -m runtime --help 2>&1 | sort -t'|' -k2 -n | tail
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET_S = 0.3
DEMO_TARGET_S = 3.0
DEMO = [sys.executable, "-m", "runtime", "demo", "--plain"]
COMMANDS = {
    "python -m runtime --help": [sys.executable, "-m", "runtime", "--help"],
    "python -c 'import runtime'": [sys.executable, "-c", "import runtime"],
    "python -c 'from runtime import Orchestrator'": [
        sys.executable,
        "-c",
        "from runtime import Orchestrator",
    ],
}


def sample(argv: list[str]) -> float:
    started = time.perf_counter()
    # stdin is not a terminal: the demo approves its booking without waiting for a person.
    subprocess.run(argv, cwd=REPO_ROOT, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--demo-runs", type=int, default=5)
    args = parser.parse_args()
    baseline = statistics.median(sample([sys.executable, "-c", "pass"]) for _ in range(args.runs))
    print(f"{'bare interpreter':45s} median {baseline * 1000:6.1f} ms")
    help_median = 0.0
    for label, argv in COMMANDS.items():
        times = [sample(argv) for _ in range(args.runs)]
        median = statistics.median(times)
        if label.endswith("--help"):
            help_median = median
        print(f"{label:45s} median {median * 1000:6.1f} ms  worst {max(times) * 1000:6.1f} ms")
    demos = [sample(DEMO) for _ in range(args.demo_runs)]
    demo_median = statistics.median(demos)
    print(
        f"{'python -m runtime demo --plain':45s} median {demo_median:6.2f} s   "
        f"worst {max(demos):6.2f} s"
    )
    fast = help_median <= TARGET_S and demo_median <= DEMO_TARGET_S
    print(f"targets --help {TARGET_S * 1000:.0f} ms, demo {DEMO_TARGET_S:.0f} s: ", end="")
    print("ok" if fast else "SLOW")
    return 0 if fast else 1


if __name__ == "__main__":
    sys.exit(main())
