"""The sqlite queue's own cost per job: the writes a one-round job makes, without the runs.

Eight jobs at a time (the worker benchmark's concurrency) each store their conversation, then
their one tool output with the run id, then their result together with the claim of the next
job, as the worker does for a one-round Assistants job; submitting the jobs is not timed.

    python tests/perf/bench_sqlite_queue.py                  # CPU ms per job, 5 runs
    python tests/perf/bench_sqlite_queue.py --instructions   # instructions per job (callgrind)

``--instructions`` runs this file under ``valgrind --tool=callgrind`` twice, with ``--jobs``
jobs and with a tenth of them, and divides the difference of the two whole-process counts by
the difference in jobs: start-up, imports and the submissions cancel out, so the figure is
the work per job, which the machine's load does not move. It needs valgrind on PATH.
Run from another checkout's root (e.g. ``git archive`` of the code before a change) to
compare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from runtime.worker import Job, JobResult, JobTimings, Lease, Message, ToolOutput  # noqa: E402
from runtime.worker.sqlite import SqliteQueue  # noqa: E402
from tests.perf.callgrind import instructions, require_valgrind  # noqa: E402

CONCURRENCY = 8


async def _slot(queue: SqliteQueue, first: Lease) -> None:
    """Run the job of ``first``, then each job claimed in its slot, until none is left."""
    leases = [first]
    while leases:
        lease = leases.pop()
        job_id = lease.job.id
        await queue.save_progress(lease, conversation_id=f"thread_{job_id}")
        output = ToolOutput(
            id=f"call_{job_id}", name="calculate", arguments='{"expression": "6*7"}', output="42"
        )
        await queue.save_progress(lease, run_id=f"run_{job_id}", tool_outputs=[output])
        now = time.time()
        result = JobResult(
            job_id=job_id,
            run_id=f"run_{job_id}",
            conversation_id=f"thread_{job_id}",
            status="completed",
            text="42",
            tool_calls=(output,),
            timings=JobTimings(
                submitted_at=now, started_at=now, finished_at=now, run_seconds=0, total_seconds=0
            ),
            attempts=lease.attempt,
        )
        stored, successors = await queue.complete_and_claim(lease, result, "bench", 1)
        assert stored
        leases.extend(successors)


async def _run(jobs: int) -> float:
    """CPU seconds (this process, all threads) for ``jobs`` jobs."""
    with tempfile.TemporaryDirectory() as tmp:
        queue = SqliteQueue(Path(tmp) / "bench.db")
        try:
            message = Message(content='/call calculate {"expression": "6*7"}')
            for i in range(jobs):
                await queue.submit(Job(id=f"job-{i}", assistant_id="asst_1", messages=(message,)))
            cpu0 = time.process_time()
            leases = await queue.claim("bench", CONCURRENCY, 0.0)
            await asyncio.gather(*(_slot(queue, lease) for lease in leases))
            cpu = time.process_time() - cpu0
            assert (await queue.stats()).unfinished == 0
        finally:
            await queue.aclose()
    return cpu


def _instructions(jobs: int) -> int:
    """Whole-process instructions of this file run with ``jobs`` jobs under callgrind."""
    return instructions([sys.executable, __file__, "--once", str(jobs)], REPO)


def main() -> None:
    """Parse arguments and print the figures."""
    if len(sys.argv) == 3 and sys.argv[1] == "--once":
        asyncio.run(_run(int(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--instructions", action="store_true")
    args = parser.parse_args()
    if args.instructions:
        require_valgrind()
        few = max(1, args.jobs // 10)
        per_job = (_instructions(args.jobs) - _instructions(few)) / (args.jobs - few)
        print(f"sqlite queue: {per_job:,.0f} instructions a job ({args.jobs} - {few} jobs)")
        return
    cpu = [asyncio.run(_run(args.jobs)) / args.jobs for _ in range(args.runs)]
    print(
        f"sqlite queue: {1000 * statistics.median(cpu):.3f} ms CPU a job (median of "
        f"{args.runs} runs of {args.jobs} jobs; runs {', '.join(f'{1000 * c:.3f}' for c in cpu)})"
    )


if __name__ == "__main__":
    main()
