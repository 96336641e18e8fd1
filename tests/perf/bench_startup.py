"""Benchmark: how long ``python -m runtime --help`` and ``import runtime`` take.

Run from the repository root:

    python tests/perf/bench_startup.py              # 20 runs of each, median and worst
    python tests/perf/bench_startup.py --runs 50

Each sample is a fresh interpreter (a subprocess), so it measures what a user waits for at the
shell. The target for ``--help`` is 0.3 s; the clients and the worker are imported only by the
command that needs them. To see where the time goes:

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
    subprocess.run(argv, cwd=REPO_ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
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
    verdict = "ok" if help_median <= TARGET_S else "SLOW"
    print(f"--help target {TARGET_S * 1000:.0f} ms: {verdict}")
    return 0 if help_median <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
