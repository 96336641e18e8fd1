"""SQLite queue backend: durable on one node, shared by several worker processes.

Uses the stdlib ``sqlite3`` on one dedicated thread per queue object (the event loop never
blocks on disk). The database runs in WAL mode; a claim is one ``BEGIN IMMEDIATE`` transaction,
so two processes never lease the same job. Leases are timestamps (``lease_until``) that the
holder's heartbeat pushes forward; an expired lease is claimable by any worker.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from runtime.worker.models import (
    Job,
    JobRecord,
    JobResult,
    JobState,
    Lease,
    Progress,
    QueueStats,
    ToolOutput,
)
from runtime.worker.queue import LeaseLost, QueueError

__all__ = ["SqliteQueue"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    job TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    available_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    submitted_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    result TEXT,
    thread_id TEXT,
    run_id TEXT,
    run_seq INTEGER NOT NULL DEFAULT 0,
    worker_cancelled INTEGER NOT NULL DEFAULT 0,
    dead_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS tool_outputs (
    job_id TEXT NOT NULL,
    tool_call_id TEXT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (job_id, tool_call_id)
);
"""

_COLUMNS = (
    "job_id, job, state, attempt, owner, submitted_at, updated_at, last_error, result, "
    "thread_id, run_id, run_seq, worker_cancelled"
)
_FENCE = "job_id = ? AND attempt = ? AND state = 'running'"
_CLAIMABLE = "(state = 'queued' AND available_at <= ?) OR (state = 'running' AND lease_until <= ?)"


class SqliteQueue:
    """A :class:`~runtime.worker.queue.JobQueue` in one SQLite file.

    Args:
        path: the database file (created if missing).
        lease_s: a lease not extended by a heartbeat for this long is claimable by others.
        max_deliveries: deliveries after which a job is moved to the dead-letter state.
        busy_timeout_s: how long a statement waits for another process's write lock.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        lease_s: float = 30.0,
        max_deliveries: int = 5,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self._path = str(path)
        self._lease_s = lease_s
        self._max_deliveries = max_deliveries
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-queue")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- plumbing -------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise QueueError("the sqlite queue is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._with_conn, fn, args)
        except sqlite3.Error as exc:
            raise QueueError(f"sqlite: {exc}") from exc

    def _with_conn(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        if self._conn is None:
            self._conn = self._connect()
        return fn(self._conn, *args)

    def _connect(self) -> sqlite3.Connection:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL keeps commits durable across process crashes (WAL), which is the failure
        # this backend is for; FULL would only add power-loss durability at a large cost.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    # -- writes ---------------------------------------------------------------------------

    async def submit(self, job: Job) -> bool:
        """Enqueue ``job`` unless its id exists."""
        return await self._call(_submit, job)

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        """Lease up to ``count`` jobs, polling up to ``wait_s`` when none is claimable."""
        deadline = time.monotonic() + wait_s
        interval = 0.02
        while True:
            leases = await self._call(_claim, consumer, count, self._lease_s, self._max_deliveries)
            remaining = deadline - time.monotonic()
            if leases or count <= 0 or remaining <= 0:
                return leases
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 2, 0.2)

    async def heartbeat(self, lease: Lease) -> bool:
        """Extend the lease while it is still ours."""
        return await self._call(_heartbeat, lease, self._lease_s)

    async def save_progress(
        self,
        lease: Lease,
        *,
        thread_id: str | None = None,
        run_id: str | None = None,
        tool_output: ToolOutput | None = None,
    ) -> None:
        """Record progress or raise :class:`LeaseLost`."""
        if not await self._call(_save_progress, lease, thread_id, run_id, tool_output):
            raise LeaseLost(lease.job.id, lease.attempt)

    async def complete(self, lease: Lease, result: JobResult) -> bool:
        """Store the result and finish the job in one transaction."""
        return await self._call(_complete, lease, result)

    async def release(
        self,
        lease: Lease,
        *,
        delay_s: float = 0.0,
        error: str | None = None,
        worker_cancelled: bool = False,
    ) -> bool:
        """Put the job back, claimable after ``delay_s``."""
        return await self._call(_release, lease, delay_s, error, worker_cancelled)

    async def dead_letter(self, lease: Lease, error: str) -> bool:
        """Move the job to the dead-letter state."""
        return await self._call(_dead_letter, lease, error)

    async def flag_run_cancelled(self, job_id: str, run_id: str) -> bool:
        """Mark the job's current run as cancelled by a worker."""
        return await self._call(_flag_run_cancelled, job_id, run_id)

    async def new_run_generation(self, lease: Lease) -> Lease:
        """Forget a drain-cancelled run so the next run gets a fresh idempotency key."""
        progress = await self._call(_new_generation, lease)
        if progress is None:
            raise LeaseLost(lease.job.id, lease.attempt)
        return lease.model_copy(update={"progress": progress})

    # -- reads ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or ``None``."""
        return await self._call(_get, job_id)

    async def recent(self, limit: int = 20) -> list[JobRecord]:
        """Newest jobs first."""
        return await self._call(_select, "1=1 ORDER BY seq DESC LIMIT ?", (limit,))

    async def dead_letters(self, limit: int = 100) -> list[JobRecord]:
        """Dead jobs, oldest first."""
        return await self._call(_select, "state = 'dead' ORDER BY dead_at, seq LIMIT ?", (limit,))

    async def stats(self) -> QueueStats:
        """Counts by state and the age of the oldest waiting job."""
        return await self._call(_stats)

    async def ping(self) -> None:
        """Run a trivial query."""
        await self._call(lambda conn: conn.execute("SELECT 1").fetchone())

    async def aclose(self) -> None:
        """Close the connection and stop the thread."""
        if self._closed:
            return
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._closed = True
        self._executor.shutdown(wait=False)


# -- statements (run on the queue's thread) -------------------------------------------------


def _submit(conn: sqlite3.Connection, job: Job) -> bool:
    now = time.time()
    cur = conn.execute(
        "INSERT OR IGNORE INTO jobs (job_id, job, state, available_at, submitted_at, updated_at, "
        "thread_id) VALUES (?, ?, 'queued', ?, ?, ?, ?)",
        (job.id, job.model_dump_json(), now, now, now, job.thread_id),
    )
    return cur.rowcount == 1


def _claim(
    conn: sqlite3.Connection, consumer: str, count: int, lease_s: float, max_deliveries: int
) -> list[Lease]:
    if count <= 0:
        return []
    now = time.time()
    # Idle workers poll: look without the write lock first, so they never block each other.
    if (
        conn.execute(f"SELECT 1 FROM jobs WHERE {_CLAIMABLE} LIMIT 1", (now, now)).fetchone()
        is None
    ):
        return []
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE {_CLAIMABLE} ORDER BY seq LIMIT ?",
            (now, now, count),
        ).fetchall()
        leases = [_take(conn, row, consumer, now, lease_s, max_deliveries) for row in rows]
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [lease for lease in leases if lease is not None]


def _take(
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    consumer: str,
    now: float,
    lease_s: float,
    max_deliveries: int,
) -> Lease | None:
    attempt = int(row["attempt"]) + 1
    if attempt > max_deliveries:
        conn.execute(
            "UPDATE jobs SET state = 'dead', attempt = ?, updated_at = ?, dead_at = ?, "
            "last_error = ? WHERE job_id = ?",
            (attempt, now, now, f"delivered {attempt - 1} times without a result", row["job_id"]),
        )
        return None
    conn.execute(
        "UPDATE jobs SET state = 'running', attempt = ?, owner = ?, lease_until = ?, "
        "updated_at = ? WHERE job_id = ?",
        (attempt, consumer, now + lease_s, now, row["job_id"]),
    )
    return Lease(
        job=Job.model_validate_json(row["job"]),
        attempt=attempt,
        consumer=consumer,
        progress=_progress(conn, row),
        submitted_at=float(row["submitted_at"]),
        claimed_at=now,
    )


def _progress(conn: sqlite3.Connection, row: sqlite3.Row) -> Progress:
    outputs = conn.execute(
        "SELECT output FROM tool_outputs WHERE job_id = ?", (row["job_id"],)
    ).fetchall()
    tool_outputs = {o.id: o for o in (ToolOutput.model_validate_json(r[0]) for r in outputs)}
    return Progress(
        thread_id=row["thread_id"],
        run_id=row["run_id"],
        run_seq=int(row["run_seq"]),
        worker_cancelled=bool(row["worker_cancelled"]),
        tool_outputs=tool_outputs,
    )


def _heartbeat(conn: sqlite3.Connection, lease: Lease, lease_s: float) -> bool:
    cur = conn.execute(
        f"UPDATE jobs SET lease_until = ? WHERE {_FENCE}",
        (time.time() + lease_s, lease.job.id, lease.attempt),
    )
    return cur.rowcount == 1


def _save_progress(
    conn: sqlite3.Connection,
    lease: Lease,
    thread_id: str | None,
    run_id: str | None,
    tool_output: ToolOutput | None,
) -> bool:
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "UPDATE jobs SET thread_id = COALESCE(?, thread_id), run_id = COALESCE(?, run_id), "
            f"updated_at = ? WHERE {_FENCE}",
            (thread_id, run_id, time.time(), lease.job.id, lease.attempt),
        )
        ok = cur.rowcount == 1
        if ok and tool_output is not None:
            conn.execute(
                "INSERT OR REPLACE INTO tool_outputs (job_id, tool_call_id, output) "
                "VALUES (?, ?, ?)",
                (lease.job.id, tool_output.id, tool_output.model_dump_json()),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return ok


def _complete(conn: sqlite3.Connection, lease: Lease, result: JobResult) -> bool:
    cur = conn.execute(
        f"UPDATE jobs SET state = 'done', result = ?, updated_at = ? WHERE {_FENCE}",
        (result.model_dump_json(), time.time(), lease.job.id, lease.attempt),
    )
    return cur.rowcount == 1


def _release(
    conn: sqlite3.Connection,
    lease: Lease,
    delay_s: float,
    error: str | None,
    worker_cancelled: bool,
) -> bool:
    now = time.time()
    cur = conn.execute(
        "UPDATE jobs SET state = 'queued', available_at = ?, updated_at = ?, "
        "last_error = COALESCE(?, last_error), worker_cancelled = MAX(worker_cancelled, ?) "
        f"WHERE {_FENCE}",
        (now + delay_s, now, error, int(worker_cancelled), lease.job.id, lease.attempt),
    )
    return cur.rowcount == 1


def _dead_letter(conn: sqlite3.Connection, lease: Lease, error: str) -> bool:
    now = time.time()
    cur = conn.execute(
        "UPDATE jobs SET state = 'dead', last_error = ?, updated_at = ?, dead_at = ? "
        f"WHERE {_FENCE}",
        (error, now, now, lease.job.id, lease.attempt),
    )
    return cur.rowcount == 1


def _flag_run_cancelled(conn: sqlite3.Connection, job_id: str, run_id: str) -> bool:
    cur = conn.execute(
        "UPDATE jobs SET worker_cancelled = 1 WHERE job_id = ? AND run_id = ?", (job_id, run_id)
    )
    return cur.rowcount == 1


def _new_generation(conn: sqlite3.Connection, lease: Lease) -> Progress | None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "UPDATE jobs SET run_id = NULL, run_seq = run_seq + 1, worker_cancelled = 0 "
            f"WHERE {_FENCE}",
            (lease.job.id, lease.attempt),
        )
        if cur.rowcount != 1:
            conn.execute("ROLLBACK")
            return None
        conn.execute("DELETE FROM tool_outputs WHERE job_id = ?", (lease.job.id,))
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (lease.job.id,)
        ).fetchone()
        progress = _progress(conn, row)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return progress


def _get(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    records = _select(conn, "job_id = ?", (job_id,))
    return records[0] if records else None


def _select(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[JobRecord]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE {where}", params).fetchall()
    return [_record(conn, row) for row in rows]


def _record(conn: sqlite3.Connection, row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        job=Job.model_validate_json(row["job"]),
        state=JobState(row["state"]),
        attempt=int(row["attempt"]),
        owner=row["owner"],
        progress=_progress(conn, row),
        submitted_at=float(row["submitted_at"]),
        updated_at=float(row["updated_at"]),
        last_error=row["last_error"],
        result=JobResult.model_validate_json(row["result"]) if row["result"] else None,
    )


def _stats(conn: sqlite3.Connection) -> QueueStats:
    counts = dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    oldest = conn.execute("SELECT MIN(submitted_at) FROM jobs WHERE state = 'queued'").fetchone()[0]
    now = time.time()
    return QueueStats(
        queued=int(counts.get("queued", 0)),
        running=int(counts.get("running", 0)),
        dead=int(counts.get("dead", 0)),
        oldest_queued_age_s=max(0.0, now - oldest) if oldest is not None else 0.0,
    )
