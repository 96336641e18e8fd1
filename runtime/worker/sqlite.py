"""SQLite queue backend: durable on one node, shared by several worker processes.

Uses the stdlib ``sqlite3`` on one dedicated thread per queue object (the event loop never
blocks on disk). The database runs in WAL mode; a claim is one ``BEGIN IMMEDIATE`` transaction,
so two processes never lease the same job.
The calls made in one turn of the event loop (several jobs' progress writes, a claim) reach
the thread together and run as one transaction: one commit, and their callers hear of it only
after that commit.

Leases and retry delays are deadlines the holder's heartbeat (or release) pushes forward. They
are kept on two clocks: ``CLOCK_MONOTONIC`` (``time.monotonic()``, system-wide on Linux, never
stepped by NTP or an operator) together with the kernel's boot id, and the wall clock. A
claimer on the same boot as the writer compares monotonic deadlines, so a wall-clock step
never expires a live worker's lease; only a deadline written on another boot (the node
restarted, or no boot id is available) falls back to the wall clock.

A record that cannot be read (bad JSON, missing or invalid fields) is moved to the ``dead``
state with the reason when a claim meets it; other jobs are served as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import ValidationError

from runtime.logging import ModuleLogger
from runtime.worker.approvals import DecisionOutcome, check_decision
from runtime.worker.models import (
    DecisionRecord,
    Job,
    JobRecord,
    JobResult,
    JobState,
    Lease,
    MalformedRecord,
    PauseRecord,
    Progress,
    QueueStats,
    ToolOutput,
    decode_job,
    decode_model,
    decode_number,
)
from runtime.worker.queue import LeaseLost, QueueError, outputs_of

__all__ = ["SqliteQueue", "boot_id"]

_T = TypeVar("_T")

log = ModuleLogger("runtime.worker")


def _read_boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            value = f.read().strip()
    except OSError:
        value = ""
    # Without a boot id, monotonic deadlines are only trusted within this process.
    return value or f"process-{uuid.uuid4().hex}"


_BOOT_ID = _read_boot_id()


def boot_id() -> str:
    """The id monotonic deadlines are tagged with (the kernel's boot id on Linux)."""
    return _BOOT_ID


class _Now(NamedTuple):
    """One reading of both clocks, taken on the queue's thread (a tuple: cheaper to make
    than a frozen dataclass, once per queue call)."""

    wall: float
    mono: float
    boot: str

    def params(self) -> dict[str, Any]:
        return {"wall": self.wall, "mono": self.mono, "boot": self.boot}


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
    thread_id TEXT,  -- the conversation id (the column keeps its first name)
    run_id TEXT,
    run_seq INTEGER NOT NULL DEFAULT 0,
    worker_cancelled INTEGER NOT NULL DEFAULT 0,
    dead_at REAL,
    available_mono REAL NOT NULL DEFAULT 0,
    lease_mono REAL NOT NULL DEFAULT 0,
    clock_boot TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS tool_outputs (
    job_id TEXT NOT NULL,
    tool_call_id TEXT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (job_id, tool_call_id)
);
CREATE TABLE IF NOT EXISTS pauses (
    job_id TEXT PRIMARY KEY,
    pause TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    job_id TEXT NOT NULL,
    tool_call_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    PRIMARY KEY (job_id, tool_call_id)
);
CREATE TABLE IF NOT EXISTS writes (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
"""

_COLUMNS = (
    "job_id, job, state, attempt, owner, submitted_at, updated_at, last_error, result, "
    "thread_id, run_id, run_seq, worker_cancelled, pauses"
)
_FENCE = "job_id = ? AND attempt = ? AND state = 'running'"
# Added after the first release: older databases get them with ALTER TABLE.
_CLOCK_COLUMNS = {
    "available_mono": "REAL NOT NULL DEFAULT 0",
    "lease_mono": "REAL NOT NULL DEFAULT 0",
    "clock_boot": "TEXT",
    # Pauses for approval: a resumed job's claim is not a redelivery (max_deliveries).
    "pauses": "INTEGER NOT NULL DEFAULT 0",
}
# A deadline written on this boot is compared on the monotonic clock, any other on the wall.
_QUEUED_DUE = """state = 'queued' AND CASE WHEN clock_boot = :boot THEN available_mono <= :mono
                                          ELSE available_at <= :wall END"""
_LEASE_LAPSED = """state = 'running' AND CASE WHEN clock_boot = :boot THEN lease_mono <= :mono
                                            ELSE lease_until <= :wall END"""
_CLAIMABLE = f"(({_QUEUED_DUE}) OR ({_LEASE_LAPSED}))"
# The first :count claimable jobs by seq. Each state's rows are walked in the order of the
# (state, seq) index and the walk stops after :count matches; one query over both states
# would collect and sort every queued job on each claim.
_CLAIM_ROWS = f"""
SELECT * FROM (SELECT {_COLUMNS}, seq FROM jobs WHERE {_QUEUED_DUE} ORDER BY seq LIMIT :count)
UNION ALL
SELECT * FROM (SELECT {_COLUMNS}, seq FROM jobs WHERE {_LEASE_LAPSED} ORDER BY seq LIMIT :count)
ORDER BY seq LIMIT :count"""


#: Most calls one transaction takes: a long batch holds the write lock (other processes'
#: workers wait for it) and delays its first caller.
_MAX_BATCH = 64


class _StoreThread:
    """The queue's one thread: runs calls in order, a batch at a time, and hands the results
    to their loop.

    The calls made in one iteration of the event loop are handed over together at its end
    (one wake-up of this thread), and those handed over while the thread was busy join them.
    ``run_batch`` runs a batch (the queue: one transaction) and the batch's futures are
    settled by one callback on their loop: a queue operation is a few statements, and each
    hand-off between the threads cost about as much as the statements themselves.
    """

    def __init__(self, name: str, run_batch: Callable[[list[_Call]], list[_Outcome]]) -> None:
        self._calls: queue.SimpleQueue[list[_Call] | None] = queue.SimpleQueue()
        self._run_batch = run_batch
        # Calls of the current loop iteration, by loop, not handed over yet.
        self._pending: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        self._stopped = False
        # A daemon: a queue nobody closed must not keep the process from exiting.
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], _T], *, alone: bool = False) -> asyncio.Future[_T]:
        """Queue ``fn``; the future (of the running loop) gets its result or exception.

        Args:
            alone: run it outside any batch (closing the connection).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        if self._stopped:
            future.set_exception(_closed_error())
            return future
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append(_Call(loop, future, fn, alone))
        return future

    def stop(self) -> None:
        """Let the thread end after the calls handed over before; later calls fail."""
        self._stopped = True
        self._calls.put(None)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        calls = self._pending.pop(loop)
        if not self._stopped:
            self._calls.put(calls)
            return
        # Made before stop() in the same turn of the loop: the thread would never run them.
        for call in calls:
            if not call.future.done():
                call.future.set_exception(_closed_error())

    def _serve(self) -> None:
        while (calls := self._calls.get()) is not None:
            stopping = False
            while len(calls) < _MAX_BATCH:
                try:
                    more = self._calls.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                calls.extend(more)
            outcomes: list[_Outcome] = []
            for group in _groups(calls):
                outcomes.extend(self._run_batch(group))
            self._settle(calls, outcomes)
            if stopping:
                return

    @staticmethod
    def _settle(calls: list[_Call], outcomes: list[_Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Call, _Outcome]]] = {}
        for call, outcome in zip(calls, outcomes, strict=True):
            by_loop.setdefault(call.loop, []).append((call, outcome))
        for loop, settled in by_loop.items():
            # RuntimeError: the caller's loop is closed, nobody waits for the result.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, settled)


class _Call(NamedTuple):
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    fn: Callable[[], Any]
    alone: bool = False


def _closed_error() -> QueueError:
    return QueueError("the sqlite queue is closed")


#: A call's result and exception (one of them ``None``).
_Outcome = tuple[object, BaseException | None]


def _groups(calls: list[_Call]) -> Iterator[list[_Call]]:
    """Runs of consecutive calls that may share a batch; a call run alone is a run of one."""
    group: list[_Call] = []
    for call in calls:
        if call.alone:
            if group:
                yield group
                group = []
            yield [call]
        else:
            group.append(call)
    if group:
        yield group


def _run_one(call: _Call) -> _Outcome:
    """Run a call by itself: its result, or the exception it raised."""
    try:
        return call.fn(), None
    except BaseException as exc:  # handed to the caller, like an executor does
        return None, exc


def _settle_all(settled: list[tuple[_Call, _Outcome]]) -> None:
    for call, (result, error) in settled:
        future = call.future
        if future.cancelled():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class SqliteQueue:
    """A :class:`~runtime.worker.queue.JobQueue` in one SQLite file.

    Args:
        path: the database file (created if missing).
        lease_s: a lease not extended by a heartbeat for this long is claimable by others.
        max_deliveries: deliveries after which a job is moved to the dead-letter state.
        busy_timeout_s: how long a statement waits for another process's write lock.
        wall_clock: the wall clock (epoch seconds) for timestamps and for deadlines written on
            another boot; a parameter so a clock step can be simulated.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        lease_s: float = 30.0,
        max_deliveries: int = 5,
        busy_timeout_s: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = str(path)
        self._wall_clock = wall_clock
        self._lease_s = lease_s
        self._max_deliveries = max_deliveries
        self._busy_timeout_s = busy_timeout_s
        self._thread: _StoreThread | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._look_first = True

    # -- plumbing -------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await self._run_on_thread(lambda: fn(self._connection(), *args))

    async def _run_on_thread(self, thunk: Callable[[], _T]) -> _T:
        if self._closed:
            raise QueueError("the sqlite queue is closed")
        try:
            return await self._store_thread().call(thunk)
        except (sqlite3.Error, OSError) as exc:
            # OSError: the database directory cannot be created or opened (full disk, ...).
            raise QueueError(f"sqlite: {exc}") from exc

    def _store_thread(self) -> _StoreThread:
        if self._thread is None:
            self._thread = _StoreThread("sqlite-queue", self._run_batch)
        return self._thread

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _run_batch(self, calls: list[_Call]) -> list[_Outcome]:
        """Run the calls of one hand-over in one transaction (on the queue's thread).

        One commit instead of one per call; each caller hears of its call only after the
        commit. When any call raises, the whole batch is rolled back and every call runs
        again by itself, so one call's failure never undoes or fails another's.
        """
        if len(calls) == 1:
            return [_run_one(calls[0])]
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
        except (sqlite3.Error, OSError):
            return [_run_one(call) for call in calls]  # each reports the failure its own way
        try:
            results = [call.fn() for call in calls]
            conn.execute("COMMIT")
        except BaseException:  # the calls alone hand it to their callers
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [_run_one(call) for call in calls]
        return [(result, None) for result in results]

    def _now(self) -> _Now:
        return _Now(self._wall_clock(), time.monotonic(), _BOOT_ID)

    async def _call_now(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Like :meth:`_call`, with a reading of the clocks taken on the queue's thread."""
        return await self._run_on_thread(lambda: fn(self._connection(), self._now(), *args))

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
        _add_missing_columns(conn)
        return conn

    # -- writes ---------------------------------------------------------------------------

    async def submit(self, job: Job) -> bool:
        """Enqueue ``job`` unless its id exists."""
        return await self._call_now(_submit, job)

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        """Lease up to ``count`` jobs, polling up to ``wait_s`` when none is claimable."""
        deadline = time.monotonic() + wait_s
        interval = 0.02
        while True:
            leases = await self._call_now(
                _claim, consumer, count, self._lease_s, self._max_deliveries, self._look_first
            )
            # After a claim that found jobs the next one likely finds some too: it takes the
            # write lock at once instead of looking first (one statement fewer a claim).
            self._look_first = not leases
            remaining = deadline - time.monotonic()
            if leases or count <= 0 or remaining <= 0:
                return leases
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 2, 0.2)

    async def heartbeat(self, lease: Lease) -> bool:
        """Extend the lease while it is still ours."""
        return await self._call_now(_heartbeat, lease, self._lease_s)

    async def save_progress(
        self,
        lease: Lease,
        *,
        conversation_id: str | None = None,
        run_id: str | None = None,
        tool_output: ToolOutput | None = None,
        tool_outputs: Sequence[ToolOutput] = (),
    ) -> None:
        """Record progress (one transaction) or raise :class:`LeaseLost`."""
        outputs = outputs_of(tool_output, tool_outputs)
        if not await self._call_now(_save_progress, lease, conversation_id, run_id, outputs):
            raise LeaseLost(lease.job.id, lease.attempt)

    async def complete(self, lease: Lease, result: JobResult) -> bool:
        """Store the result and finish the job in one transaction."""
        return await self._call_now(_complete, lease, result)

    async def complete_and_claim(
        self, lease: Lease, result: JobResult, consumer: str, count: int
    ) -> tuple[bool, list[Lease]]:
        """Store the result and finish the job, then lease up to ``count`` jobs: one
        transaction (one commit and one hand-off instead of two), the claim only when the
        result was stored."""
        return await self._call_now(
            _complete_and_claim,
            lease,
            result,
            consumer,
            count,
            self._lease_s,
            self._max_deliveries,
        )

    async def release(
        self,
        lease: Lease,
        *,
        delay_s: float = 0.0,
        error: str | None = None,
        worker_cancelled: bool = False,
    ) -> bool:
        """Put the job back, claimable after ``delay_s``."""
        return await self._call_now(_release, lease, delay_s, error, worker_cancelled)

    async def dead_letter(self, lease: Lease, error: str) -> bool:
        """Move the job to the dead-letter state."""
        return await self._call_now(_dead_letter, lease, error)

    async def flag_run_cancelled(self, job_id: str, run_id: str) -> bool:
        """Mark the job's current run as cancelled by a worker."""
        return await self._call(_flag_run_cancelled, job_id, run_id)

    async def new_run_generation(self, lease: Lease) -> Lease:
        """Forget a drain-cancelled run so the next run gets a fresh idempotency key."""
        progress = await self._call(_new_generation, lease)
        if progress is None:
            raise LeaseLost(lease.job.id, lease.attempt)
        return lease.model_copy(update={"progress": progress})

    # -- pauses and writes (runtime.worker.approvals.ApprovalStore) -------------------------

    async def pause(self, lease: Lease, pause: PauseRecord) -> bool:
        """Make the job ``awaiting_approval`` (fenced, one transaction)."""
        return await self._call_now(_pause, lease, pause)

    async def decide(self, job_id: str, call_id: str, decision: DecisionRecord) -> DecisionOutcome:
        """Record a decision (one transaction); the last one queues the job."""
        return await self._call_now(_decide, job_id, call_id, decision)

    async def paused_before(self, when: float) -> list[str]:
        """Paused jobs whose pause expires by ``when``."""
        rows = await self._call(
            lambda conn: conn.execute(
                "SELECT p.job_id FROM pauses p JOIN jobs j ON j.job_id = p.job_id "
                "WHERE j.state = 'awaiting_approval' AND p.expires_at <= ?",
                (when,),
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    async def write_lookup(self, key: str) -> str | None:
        """The write record under ``key``."""
        row = await self._call(
            lambda conn: conn.execute("SELECT record FROM writes WHERE key = ?", (key,)).fetchone()
        )
        return None if row is None else str(row[0])

    async def write_start(self, key: str, record: str) -> str | None:
        """Store ``record`` unless one exists (then return it)."""
        return await self._call(_write_start, key, record)

    async def write_finish(self, key: str, record: str) -> None:
        """Store the finished record."""
        await self._call(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO writes (key, record) VALUES (?, ?)", (key, record)
            )
        )

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
        return await self._call_now(_stats)

    async def ping(self) -> None:
        """Run a trivial query."""
        await self._call(lambda conn: conn.execute("SELECT 1").fetchone())

    async def aclose(self) -> None:
        """Close the connection and stop the thread."""
        if self._closed:
            return
        if self._thread is not None and self._conn is not None:
            await self._thread.call(self._conn.close, alone=True)
        self._closed = True
        if self._thread is not None:
            self._thread.stop()


# -- statements (run on the queue's thread) -------------------------------------------------


class _Transaction:
    """One ``BEGIN IMMEDIATE`` transaction, or a part of the one already open: a batch of
    calls (:meth:`SqliteQueue._run_batch`) commits or rolls back all of them together.

    A class rather than ``contextlib.contextmanager``: a job enters several of these on the
    queue's thread, and the generator-based one costs about twice the Python calls.
    """

    __slots__ = ("_conn", "_owned")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._owned = False

    def __enter__(self) -> None:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN IMMEDIATE")
            self._owned = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if not self._owned:
            return
        if exc_type is None:
            self._conn.execute("COMMIT")
        elif self._conn.in_transaction:
            self._conn.execute("ROLLBACK")


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(jobs)").fetchall()}
    for name, decl in _CLOCK_COLUMNS.items():
        if name not in present:
            # Two processes may race here; the loser's duplicate column error is harmless.
            try:
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise


def _submit(conn: sqlite3.Connection, now: _Now, job: Job) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO jobs (job_id, job, state, available_at, available_mono, "
        "clock_boot, submitted_at, updated_at, thread_id) "
        "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
        (
            job.id,
            job.model_dump_json(),
            now.wall,
            now.mono,
            now.boot,
            now.wall,
            now.wall,
            job.conversation_id,
        ),
    )
    return cur.rowcount == 1


def _claim(
    conn: sqlite3.Connection,
    now: _Now,
    consumer: str,
    count: int,
    lease_s: float,
    max_deliveries: int,
    look_first: bool = True,
) -> list[Lease]:
    if count <= 0:
        return []
    # Idle workers poll: look without the write lock first, so they never block each other.
    if (
        look_first
        and conn.execute(f"SELECT 1 FROM jobs WHERE {_CLAIMABLE} LIMIT 1", now.params()).fetchone()
        is None
    ):
        return []
    with _Transaction(conn):
        rows = conn.execute(_CLAIM_ROWS, {**now.params(), "count": count}).fetchall()
        leases = [_take(conn, row, consumer, now, lease_s, max_deliveries) for row in rows]
    return [lease for lease in leases if lease is not None]


def _take(
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    consumer: str,
    now: _Now,
    lease_s: float,
    max_deliveries: int,
) -> Lease | None:
    job_id = str(row["job_id"])
    try:
        job, progress, submitted_at, attempt = _decode_claim(conn, row)
    except MalformedRecord as exc:
        _bury(conn, job_id, exc.reason, now)
        log.error("worker.record_dead_lettered", job_id=job_id, reason=exc.reason)
        return None
    attempt += 1
    if attempt - int(row["pauses"] or 0) > max_deliveries:
        _bury(conn, job_id, f"delivered {attempt - 1} times without a result", now)
        return None
    conn.execute(
        "UPDATE jobs SET state = 'running', attempt = ?, owner = ?, lease_until = ?, "
        "lease_mono = ?, clock_boot = ?, updated_at = ? WHERE job_id = ?",
        (attempt, consumer, now.wall + lease_s, now.mono + lease_s, now.boot, now.wall, job_id),
    )
    return Lease(
        job=job,
        attempt=attempt,
        consumer=consumer,
        progress=progress,
        submitted_at=submitted_at,
        claimed_at=now.wall,
    )


def _decode_claim(conn: sqlite3.Connection, row: sqlite3.Row) -> tuple[Job, Progress, float, int]:
    job_id = str(row["job_id"])
    job, unknown = decode_job(row["job"], job_id)
    if unknown:
        log.warning("worker.job_unknown_fields", job_id=job_id, fields=list(unknown))
    progress = _progress(conn, row)
    submitted_at = decode_number(row["submitted_at"], "submitted_at", job_id)
    attempt = decode_number(row["attempt"], "attempt", job_id)
    return job, progress, submitted_at, int(attempt)


def _bury(conn: sqlite3.Connection, job_id: str, error: str, now: _Now) -> None:
    # attempt + 1 counts this delivery (SQLite reads a non-numeric attempt as 0 here).
    conn.execute(
        "UPDATE jobs SET state = 'dead', attempt = attempt + 1, updated_at = ?, dead_at = ?, "
        "last_error = ? WHERE job_id = ?",
        (now.wall, now.wall, error, job_id),
    )


def _progress(conn: sqlite3.Connection, row: sqlite3.Row) -> Progress:
    job_id = str(row["job_id"])
    outputs: list[Any] = []
    pause = None
    decisions: list[Any] = []
    # Tool outputs, pauses and decisions are only written under a lease: a job never
    # delivered has none (three statements fewer for each fresh job's claim).
    if row["attempt"] != 0:
        outputs = conn.execute(
            "SELECT output FROM tool_outputs WHERE job_id = ?", (job_id,)
        ).fetchall()
        pause = conn.execute("SELECT pause FROM pauses WHERE job_id = ?", (job_id,)).fetchone()
        decisions = conn.execute(
            "SELECT tool_call_id, decision FROM decisions WHERE job_id = ?", (job_id,)
        ).fetchall()
    decoded = (decode_model(ToolOutput, r[0], "tool output", job_id) for r in outputs)
    try:
        return Progress(
            conversation_id=row["thread_id"],
            run_id=row["run_id"],
            run_seq=int(decode_number(row["run_seq"], "run_seq", job_id)),
            worker_cancelled=bool(row["worker_cancelled"]),
            tool_outputs={o.id: o for o in decoded},
            pause=decode_model(PauseRecord, pause[0], "pause", job_id) if pause else None,
            decisions={
                str(k): decode_model(DecisionRecord, v, "decision", job_id) for k, v in decisions
            },
        )
    except ValidationError as exc:
        raise MalformedRecord(job_id, f"invalid progress ({exc.errors()[0]['msg']})") from None


def _heartbeat(conn: sqlite3.Connection, now: _Now, lease: Lease, lease_s: float) -> bool:
    cur = conn.execute(
        f"UPDATE jobs SET lease_until = ?, lease_mono = ?, clock_boot = ? WHERE {_FENCE}",
        (now.wall + lease_s, now.mono + lease_s, now.boot, lease.job.id, lease.attempt),
    )
    return cur.rowcount == 1


def _save_progress(
    conn: sqlite3.Connection,
    now: _Now,
    lease: Lease,
    conversation_id: str | None,
    run_id: str | None,
    tool_outputs: list[ToolOutput],
) -> bool:
    update = (
        "UPDATE jobs SET thread_id = COALESCE(?, thread_id), run_id = COALESCE(?, run_id), "
        f"updated_at = ? WHERE {_FENCE}"
    )
    params = (conversation_id, run_id, now.wall, lease.job.id, lease.attempt)
    if not tool_outputs:  # one statement is its own transaction
        return conn.execute(update, params).rowcount == 1
    with _Transaction(conn):
        ok = conn.execute(update, params).rowcount == 1
        if ok:
            conn.executemany(
                "INSERT OR REPLACE INTO tool_outputs (job_id, tool_call_id, output) "
                "VALUES (?, ?, ?)",
                [(lease.job.id, o.id, o.model_dump_json()) for o in tool_outputs],
            )
    return ok


def _pause(conn: sqlite3.Connection, now: _Now, lease: Lease, pause: PauseRecord) -> bool:
    with _Transaction(conn):
        cur = conn.execute(
            "UPDATE jobs SET state = 'awaiting_approval', owner = NULL, updated_at = ?, "
            "pauses = pauses + 1 "
            f"WHERE {_FENCE}",
            (now.wall, lease.job.id, lease.attempt),
        )
        ok = cur.rowcount == 1
        if ok:
            conn.execute(
                "INSERT OR REPLACE INTO pauses (job_id, pause, expires_at) VALUES (?, ?, ?)",
                (lease.job.id, pause.model_dump_json(), pause.expires_at),
            )
            conn.execute("DELETE FROM decisions WHERE job_id = ?", (lease.job.id,))
    return ok


def _decide(
    conn: sqlite3.Connection, now: _Now, job_id: str, call_id: str, decision: DecisionRecord
) -> DecisionOutcome:
    with _Transaction(conn):
        outcome, last = check_decision(_get(conn, job_id), call_id, decision)
        if outcome == "recorded":
            conn.execute(
                "INSERT INTO decisions (job_id, tool_call_id, decision) VALUES (?, ?, ?)",
                (job_id, call_id, decision.model_dump_json()),
            )
        if last:
            conn.execute(
                "UPDATE jobs SET state = 'queued', available_at = ?, available_mono = ?, "
                "clock_boot = ?, updated_at = ? WHERE job_id = ?",
                (now.wall, now.mono, now.boot, now.wall, job_id),
            )
            outcome = "queued"
    return outcome


def _write_start(conn: sqlite3.Connection, key: str, record: str) -> str | None:
    with _Transaction(conn):
        row = conn.execute("SELECT record FROM writes WHERE key = ?", (key,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO writes (key, record) VALUES (?, ?)", (key, record))
    return None if row is None else str(row[0])


def _complete(conn: sqlite3.Connection, now: _Now, lease: Lease, result: JobResult) -> bool:
    cur = conn.execute(
        f"UPDATE jobs SET state = 'done', result = ?, updated_at = ? WHERE {_FENCE}",
        (result.model_dump_json(), now.wall, lease.job.id, lease.attempt),
    )
    return cur.rowcount == 1


def _complete_and_claim(
    conn: sqlite3.Connection,
    now: _Now,
    lease: Lease,
    result: JobResult,
    consumer: str,
    count: int,
    lease_s: float,
    max_deliveries: int,
) -> tuple[bool, list[Lease]]:
    # One transaction: a claim that fails rolls the result back too (the caller stores it
    # again, alone), so a job is never finished without its caller knowing.
    with _Transaction(conn):
        if not _complete(conn, now, lease, result):
            return False, []
        return True, _claim(conn, now, consumer, count, lease_s, max_deliveries, False)


def _release(
    conn: sqlite3.Connection,
    now: _Now,
    lease: Lease,
    delay_s: float,
    error: str | None,
    worker_cancelled: bool,
) -> bool:
    cur = conn.execute(
        "UPDATE jobs SET state = 'queued', available_at = ?, available_mono = ?, "
        "clock_boot = ?, updated_at = ?, last_error = COALESCE(?, last_error), "
        f"worker_cancelled = MAX(worker_cancelled, ?) WHERE {_FENCE}",
        (
            now.wall + delay_s,
            now.mono + delay_s,
            now.boot,
            now.wall,
            error,
            int(worker_cancelled),
            lease.job.id,
            lease.attempt,
        ),
    )
    return cur.rowcount == 1


def _dead_letter(conn: sqlite3.Connection, now: _Now, lease: Lease, error: str) -> bool:
    cur = conn.execute(
        "UPDATE jobs SET state = 'dead', last_error = ?, updated_at = ?, dead_at = ? "
        f"WHERE {_FENCE}",
        (error, now.wall, now.wall, lease.job.id, lease.attempt),
    )
    return cur.rowcount == 1


def _flag_run_cancelled(conn: sqlite3.Connection, job_id: str, run_id: str) -> bool:
    cur = conn.execute(
        "UPDATE jobs SET worker_cancelled = 1 WHERE job_id = ? AND run_id = ?", (job_id, run_id)
    )
    return cur.rowcount == 1


def _new_generation(conn: sqlite3.Connection, lease: Lease) -> Progress | None:
    with _Transaction(conn):
        cur = conn.execute(
            "UPDATE jobs SET run_id = NULL, run_seq = run_seq + 1, worker_cancelled = 0 "
            f"WHERE {_FENCE}",
            (lease.job.id, lease.attempt),
        )
        if cur.rowcount != 1:
            return None  # nothing changed: the commit is empty
        conn.execute("DELETE FROM tool_outputs WHERE job_id = ?", (lease.job.id,))
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (lease.job.id,)
        ).fetchone()
        return _progress(conn, row)


def _get(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    records = _select(conn, "job_id = ?", (job_id,))
    return records[0] if records else None


def _select(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[JobRecord]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE {where}", params).fetchall()
    return [_record(conn, row) for row in rows]


def _record(conn: sqlite3.Connection, row: sqlite3.Row) -> JobRecord:
    job_id = str(row["job_id"])
    try:
        job, _unknown = decode_job(row["job"], job_id)
        result = row["result"]
        return JobRecord(
            job_id=job_id,
            job=job,
            state=JobState(row["state"]),
            attempt=int(decode_number(row["attempt"], "attempt", job_id)),
            owner=row["owner"],
            progress=_progress(conn, row),
            submitted_at=decode_number(row["submitted_at"], "submitted_at", job_id),
            updated_at=decode_number(row["updated_at"], "updated_at", job_id),
            last_error=row["last_error"],
            result=decode_model(JobResult, result, "result", job_id) if result else None,
        )
    except MalformedRecord as exc:
        return _unreadable(row, exc.reason)
    except (ValueError, ValidationError) as exc:  # a bad state or owner value
        return _unreadable(row, f"malformed job record: {str(exc).splitlines()[0]}")


def _unreadable(row: sqlite3.Row, reason: str) -> JobRecord:
    """What can be shown of a record that does not decode (``jobs`` must still list it)."""
    state = row["state"]
    return JobRecord(
        job_id=str(row["job_id"]),
        job=None,
        state=JobState(state) if state in set(JobState) else JobState.DEAD,
        attempt=_number_or_zero(row["attempt"]),
        owner=None if row["owner"] is None else str(row["owner"]),
        submitted_at=_number_or_zero(row["submitted_at"]),
        updated_at=_number_or_zero(row["updated_at"]),
        last_error=reason,
    )


def _number_or_zero(value: object) -> int:
    try:
        return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def _stats(conn: sqlite3.Connection, now: _Now) -> QueueStats:
    counts = dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    oldest = conn.execute(
        "SELECT MIN(submitted_at) FROM jobs WHERE state = 'queued' AND typeof(submitted_at) "
        "IN ('real', 'integer')"
    ).fetchone()[0]
    return QueueStats(
        queued=int(counts.get("queued", 0)),
        running=int(counts.get("running", 0)),
        dead=int(counts.get("dead", 0)),
        awaiting_approval=int(counts.get("awaiting_approval", 0)),
        oldest_queued_age_s=max(0.0, now.wall - float(oldest)) if oldest is not None else 0.0,
    )
