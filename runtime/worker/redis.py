"""Redis Streams queue backend: many workers on many machines.

Layout (``P`` is the key prefix)::

    P:jobs             stream, one entry per job (XADD ... MAXLEN ~), consumer group G
    P:dead             dead-letter stream (job_id, attempts, error)
    P:job:ID           hash: the job, state, attempt (fencing counter), owner, thread_id (the
                       conversation id; the field keeps its first name),
                       run_id, run_seq, result, last_error, timestamps, stream entry id
    P:job:ID:tools     hash: tool_call_id -> stored ToolOutput JSON
    P:job:ID:decisions hash: tool_call_id -> DecisionRecord JSON of the job's pause
    P:paused           zset of job ids awaiting approval, by the pause's expires_at
    P:writes           hash: write key -> the write ledger's record JSON
    P:recent           zset of job ids by submission time (``python -m runtime jobs``)
    P:open             set of unfinished job ids (burst mode, metrics)
    P:waiting          zset of job ids waiting for a worker, by submission time (queue lag)
    P:stats            hash of counters (completed)

Delivery: XAUTOCLAIM first takes entries idle longer than the lease (their worker died), then
XREADGROUP reads new entries, never more than the free slots. Each delivered entry goes through
one Lua script that increments the job's attempt counter (the fencing token) or, past
``max_deliveries``, moves the job to the dead-letter stream. The lease holder heartbeats with
``XCLAIM ... JUSTID`` (resets the entry's idle time) only while the counter is still its own,
and stores the result and XACKs in one script, fenced the same way: a worker wrongly declared
dead cannot overwrite its successor's result.

A job record that cannot be read (bad JSON, missing or invalid fields, a hash field of the
wrong type) is moved to the dead-letter stream with the reason the first time it is
delivered; the claim goes on with the other entries. A consumer group that vanished (a restart
of a server without persistence) is created again (``XGROUP CREATE ... MKSTREAM``) when a
claim meets ``NOGROUP``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError, ResponseError, WatchError

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

__all__ = ["RedisQueue"]

log = ModuleLogger("runtime.worker")

# Script errors that come from one record's data (not from the server's condition): the
# record is dead-lettered. Anything else (OOM, READONLY, LOADING, ...) is transient.
_RECORD_ERRORS = ("WRONGTYPE", "not an integer", "not a valid float")

_BLOCK_SLICE_S = 0.25

# Every fenced script gets the job hash as KEYS[1] and the lease's attempt as ARGV[1].
_FENCE = """
local function fenced()
  return redis.call('HGET', KEYS[1], 'attempt') == ARGV[1]
     and redis.call('HGET', KEYS[1], 'state') == 'running'
end
"""

_SUBMIT = """
-- KEYS: job, stream, recent, open, waiting
-- ARGV: job_id, job_json, now, maxlen, conversation_id, recent_cap
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'job_id', ARGV[1])
redis.call('HSET', KEYS[1], 'job', ARGV[2], 'state', 'queued', 'attempt', 0,
  'submitted_at', ARGV[3], 'updated_at', ARGV[3], 'entry', entry, 'run_seq', 0,
  'worker_cancelled', 0)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'thread_id', ARGV[5]) end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[6]) - 1)
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
return 1
"""

_BEGIN = """
-- KEYS: job, tools, stream, dead, open, waiting, decisions
-- ARGV: group, entry, consumer, now, max_deliveries, job_id, dead_maxlen
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
  return {'missing'}
end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'done' or state == 'dead' or redis.call('HGET', KEYS[1], 'entry') ~= ARGV[2] then
  redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
  return {'finished'}
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('ZREM', KEYS[6], ARGV[6])
-- A claim after a pause for approval is not a redelivery.
local pauses = tonumber(redis.call('HGET', KEYS[1], 'pauses') or '0') or 0
if attempt - pauses > tonumber(ARGV[5]) then
  local err = 'delivered ' .. (attempt - 1) .. ' times without a result'
  redis.call('HSET', KEYS[1], 'state', 'dead', 'last_error', err, 'updated_at', ARGV[4])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'job_id', ARGV[6],
    'attempts', attempt - 1, 'error', err)
  redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
  redis.call('SREM', KEYS[5], ARGV[6])
  return {'dead'}
end
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[3], 'updated_at', ARGV[4])
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[7])}
"""

_HEARTBEAT = (
    _FENCE
    + """
-- KEYS: job, stream   ARGV: attempt, group, consumer, entry
if not fenced() then return 0 end
redis.call('XCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, ARGV[4], 'JUSTID')
return 1
"""
)

_PROGRESS = (
    _FENCE
    + """
-- KEYS: job, tools   ARGV: attempt, now, conversation_id, run_id, (tool_call_id, tool_json)*
if not fenced() then return 0 end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'thread_id', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'run_id', ARGV[4]) end
for i = 5, #ARGV - 1, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""
)

_COMPLETE = (
    _FENCE
    + """
-- KEYS: job, tools, stream, open, stats, decisions
-- ARGV: attempt, now, group, entry, result_json, job_id, ttl_s
if not fenced() then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'result', ARGV[5], 'updated_at', ARGV[2])
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
redis.call('SREM', KEYS[4], ARGV[6])
redis.call('HINCRBY', KEYS[5], 'completed', 1)
if tonumber(ARGV[7]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
  redis.call('EXPIRE', KEYS[6], ARGV[7])
end
return 1
"""
)

_RELEASE = (
    _FENCE
    + """
-- KEYS: job, stream, waiting
-- ARGV: attempt, now, group, consumer, entry, idle_ms, error, worker_cancelled, job_id
if not fenced() then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'updated_at', ARGV[2])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[7]) end
if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'worker_cancelled', 1) end
redis.call('ZADD', KEYS[3], redis.call('HGET', KEYS[1], 'submitted_at'), ARGV[9])
-- Setting the entry's idle time makes XAUTOCLAIM hand it out again after the delay.
redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, ARGV[5], 'IDLE', ARGV[6], 'JUSTID')
return 1
"""
)

_DEAD = (
    _FENCE
    + """
-- KEYS: job, stream, dead, open
-- ARGV: attempt, now, group, entry, error, job_id, dead_maxlen
if not fenced() then return 0 end
redis.call('HSET', KEYS[1], 'state', 'dead', 'last_error', ARGV[5], 'updated_at', ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'job_id', ARGV[6],
  'attempts', ARGV[1], 'error', ARGV[5])
redis.call('XACK', KEYS[2], ARGV[3], ARGV[4])
redis.call('SREM', KEYS[4], ARGV[6])
return 1
"""
)

_BURY_MALFORMED = """
-- KEYS: job, stream, dead, open, waiting
-- ARGV: group, entry, error, job_id, now, dead_maxlen
local attempts = 0
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  attempts = tonumber(redis.call('HGET', KEYS[1], 'attempt')) or 0
  redis.call('HSET', KEYS[1], 'state', 'dead', 'last_error', ARGV[3], 'updated_at', ARGV[5])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'job_id', ARGV[4],
  'attempts', attempts, 'error', ARGV[3])
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[4])
redis.call('ZREM', KEYS[5], ARGV[4])
return 1
"""

_PAUSE = (
    _FENCE
    + """
-- KEYS: job, decisions, stream, open, paused
-- ARGV: attempt, now, group, entry, pause_json, expires_at, job_id
if not fenced() then return 0 end
redis.call('HSET', KEYS[1], 'state', 'awaiting_approval', 'pause', ARGV[5], 'updated_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'owner')
redis.call('HINCRBY', KEYS[1], 'pauses', 1)
redis.call('DEL', KEYS[2])
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
redis.call('SREM', KEYS[4], ARGV[7])
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[7])
return 1
"""
)

# Run inside MULTI after the decision was checked under WATCH.
_DECIDE = """
-- KEYS: job, decisions, stream, open, waiting, paused
-- ARGV: call_id, decision_json, last, now, maxlen, job_id
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[4])
if ARGV[3] == '1' then
  local entry = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'job_id', ARGV[6])
  redis.call('HSET', KEYS[1], 'state', 'queued', 'entry', entry)
  redis.call('SADD', KEYS[4], ARGV[6])
  redis.call('ZADD', KEYS[5], redis.call('HGET', KEYS[1], 'submitted_at'), ARGV[6])
  redis.call('ZREM', KEYS[6], ARGV[6])
end
return 1
"""

_FLAG_CANCELLED = """
-- KEYS: job   ARGV: run_id
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'worker_cancelled', 1)
return 1
"""

_NEW_GENERATION = (
    _FENCE
    + """
-- KEYS: job, tools   ARGV: attempt
if not fenced() then return 0 end
redis.call('HDEL', KEYS[1], 'run_id')
redis.call('HINCRBY', KEYS[1], 'run_seq', 1)
redis.call('HSET', KEYS[1], 'worker_cancelled', 0)
redis.call('DEL', KEYS[2])
return 1
"""
)


class RedisQueue:
    """A :class:`~runtime.worker.queue.JobQueue` on Redis Streams.

    Args:
        url: ``redis://host:port/db``.
        prefix: key prefix shared by every worker of one queue.
        group: consumer group name.
        lease_s: an entry idle this long (no heartbeat) is reclaimed with XAUTOCLAIM.
        max_deliveries: deliveries after which a job goes to the dead-letter stream.
        maxlen: approximate cap of the job stream (XADD MAXLEN ~); must exceed the backlog.
        dead_maxlen: approximate cap of the dead-letter stream.
        result_ttl_s: finished job records expire after this long (0: never). Submitting a
            job id again after its record expired creates a new job.
        recent_cap: how many job ids ``recent()`` can list.
        socket_timeout_s: longest wait for any Redis reply.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "agent-runtime",
        group: str = "workers",
        lease_s: float = 30.0,
        max_deliveries: int = 5,
        maxlen: int = 100_000,
        dead_maxlen: int = 10_000,
        result_ttl_s: int = 7 * 24 * 3600,
        recent_cap: int = 10_000,
        socket_timeout_s: float = 10.0,
    ) -> None:
        # Typed as Any: redis-py's stubs type replies as unions of bytes/str/None per RESP
        # version, which would force casts on every call; replies are checked where parsed.
        # Bounded socket waits: a partitioned server must surface as QueueError (heartbeats,
        # /readyz), never as a call that hangs. Blocking reads are sliced well below this.
        self._redis: Any = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=min(socket_timeout_s, 5.0),
            health_check_interval=30,
        )
        self._prefix = prefix
        self._group = group
        self._lease_ms = max(1, int(lease_s * 1000))
        self._max_deliveries = max_deliveries
        self._maxlen = maxlen
        self._dead_maxlen = dead_maxlen
        self._result_ttl_s = result_ttl_s
        self._recent_cap = recent_cap
        self._stream = f"{prefix}:jobs"
        self._dead = f"{prefix}:dead"
        self._recent = f"{prefix}:recent"
        self._open = f"{prefix}:open"
        self._waiting = f"{prefix}:waiting"
        self._stats = f"{prefix}:stats"
        self._paused = f"{prefix}:paused"
        self._writes = f"{prefix}:writes"
        self._cursor = "0-0"
        self._group_ready = False
        r = self._redis
        self._submit: Any = r.register_script(_SUBMIT)
        self._begin: Any = r.register_script(_BEGIN)
        self._heartbeat = r.register_script(_HEARTBEAT)
        self._progress = r.register_script(_PROGRESS)
        self._complete = r.register_script(_COMPLETE)
        self._release = r.register_script(_RELEASE)
        self._bury = r.register_script(_DEAD)
        self._new_generation = r.register_script(_NEW_GENERATION)
        self._flag_cancelled = r.register_script(_FLAG_CANCELLED)
        self._bury_malformed: Any = r.register_script(_BURY_MALFORMED)
        self._pause: Any = r.register_script(_PAUSE)
        self._decide: Any = r.register_script(_DECIDE)

    @property
    def stream(self) -> str:
        """The job stream's key."""
        return self._stream

    @property
    def dead_stream(self) -> str:
        """The dead-letter stream's key."""
        return self._dead

    def _job_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    def _tools_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}:tools"

    def _decisions_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}:decisions"

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    # -- writes ---------------------------------------------------------------------------

    async def submit(self, job: Job) -> bool:
        """Enqueue ``job`` unless its id exists (one atomic script)."""
        try:
            await self._ensure_group()
            keys = [self._job_key(job.id), self._stream, self._recent, self._open, self._waiting]
            args = [
                job.id,
                job.model_dump_json(),
                repr(time.time()),
                self._maxlen,
                job.conversation_id or "",
                self._recent_cap,
            ]
            return bool(await self._submit(keys=keys, args=args))
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc

    async def claim(self, consumer: str, count: int, wait_s: float) -> list[Lease]:
        """Reclaim idle entries (XAUTOCLAIM), then read new ones (XREADGROUP) for free slots."""
        if count <= 0:
            return []
        deadline = time.monotonic() + wait_s
        recreated = False
        try:
            await self._ensure_group()
            while True:
                try:
                    leases = await self._claim_once(consumer, count, deadline)
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc) or recreated:
                        raise
                    await self._recreate_group(str(exc))
                    recreated = True
                    continue
                if leases or time.monotonic() >= deadline:
                    return leases
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc

    async def _recreate_group(self, error: str) -> None:
        """The group is gone (server restarted without persistence, or deleted): make it anew.

        From id 0: entries submitted since the restart are delivered too.
        """
        log.warning("worker.group_recreated", group=self._group, stream=self._stream, error=error)
        self._group_ready = False
        self._cursor = "0-0"
        await self._ensure_group()

    async def _claim_once(self, consumer: str, count: int, deadline: float) -> list[Lease]:
        entry_ids = await self._autoclaim(consumer, count)
        if len(entry_ids) < count:
            # Block in short slices so idle entries of dead workers are picked up promptly.
            wait_s = 0.0 if entry_ids else min(_BLOCK_SLICE_S, deadline - time.monotonic())
            entry_ids += await self._read_new(consumer, count - len(entry_ids), wait_s)
        leases: list[Lease] = []
        for entry_id, job_id in entry_ids:
            try:
                lease = await self._start_or_bury(consumer, entry_id, job_id)
            except (RedisError, OSError) as exc:
                if not leases:
                    raise
                # The begun jobs are ours: run them. The rest stay pending for XAUTOCLAIM.
                log.warning("worker.claim_interrupted", error=str(exc), leases=len(leases))
                return leases
            if lease is not None:
                leases.append(lease)
        return leases

    async def _start_or_bury(self, consumer: str, entry_id: str, job_id: str) -> Lease | None:
        try:
            return await self._start(consumer, entry_id, job_id)
        except ResponseError as exc:
            if not any(marker in str(exc) for marker in _RECORD_ERRORS):
                raise
            reason = f"malformed job record: {exc}"
        except MalformedRecord as exc:
            reason = exc.reason
        await self._bury_entry(entry_id, job_id, reason)
        return None

    async def _bury_entry(self, entry_id: str, job_id: str, reason: str) -> None:
        keys = [self._job_key(job_id), self._stream, self._dead, self._open, self._waiting]
        args = [self._group, entry_id, reason, job_id, repr(time.time()), self._dead_maxlen]
        await self._bury_malformed(keys=keys, args=args)
        log.error("worker.record_dead_lettered", job_id=job_id, entry=entry_id, reason=reason)

    async def _autoclaim(self, consumer: str, count: int) -> list[tuple[str, str]]:
        reply = await self._redis.xautoclaim(
            self._stream, self._group, consumer, self._lease_ms, self._cursor, count=count
        )
        self._cursor = reply[0]
        return [(entry_id, (fields or {}).get("job_id", "")) for entry_id, fields in reply[1]]

    async def _read_new(self, consumer: str, count: int, wait_s: float) -> list[tuple[str, str]]:
        # BLOCK 0 would block forever: a zero wait means no BLOCK at all.
        block = None if wait_s <= 0.001 else int(wait_s * 1000)
        reply = await self._redis.xreadgroup(
            self._group, consumer, {self._stream: ">"}, count=count, block=block
        )
        if not reply:
            return []
        _stream, entries = reply[0]
        return [(entry_id, fields.get("job_id", "")) for entry_id, fields in entries]

    async def _start(self, consumer: str, entry_id: str, job_id: str) -> Lease | None:
        keys = [
            self._job_key(job_id),
            self._tools_key(job_id),
            self._stream,
            self._dead,
            self._open,
            self._waiting,
            self._decisions_key(job_id),
        ]
        args = [
            self._group,
            entry_id,
            consumer,
            repr(time.time()),
            self._max_deliveries,
            job_id,
            self._dead_maxlen,
        ]
        reply = await self._begin(keys=keys, args=args)
        if reply[0] != "ok":
            return None
        fields, tools, decisions = _pairs(reply[1]), _pairs(reply[2]), _pairs(reply[3])
        job, unknown = decode_job(fields.get("job"), job_id)
        if unknown:
            log.warning("worker.job_unknown_fields", job_id=job_id, fields=list(unknown))
        return Lease(
            job=job,
            attempt=int(fields["attempt"]),
            consumer=consumer,
            token=entry_id,
            progress=_progress(fields, tools, job_id, decisions),
            submitted_at=decode_number(fields.get("submitted_at"), "submitted_at", job_id),
            claimed_at=decode_number(fields.get("updated_at"), "updated_at", job_id),
        )

    async def heartbeat(self, lease: Lease) -> bool:
        """``XCLAIM ... JUSTID`` the entry to reset its idle time, while still fenced to us."""
        keys = [self._job_key(lease.job.id), self._stream]
        args = [lease.attempt, self._group, lease.consumer, lease.token]
        return bool(await self._run(self._heartbeat, keys, args))

    async def save_progress(
        self,
        lease: Lease,
        *,
        conversation_id: str | None = None,
        run_id: str | None = None,
        tool_output: ToolOutput | None = None,
        tool_outputs: Sequence[ToolOutput] = (),
    ) -> None:
        """Record progress (one fenced script) or raise :class:`LeaseLost`."""
        keys = [self._job_key(lease.job.id), self._tools_key(lease.job.id)]
        args: list[Any] = [lease.attempt, repr(time.time()), conversation_id or "", run_id or ""]
        for output in outputs_of(tool_output, tool_outputs):
            args += [output.id, output.model_dump_json()]
        if not await self._run(self._progress, keys, args):
            raise LeaseLost(lease.job.id, lease.attempt)

    async def complete(self, lease: Lease, result: JobResult) -> bool:
        """Store the result, XACK and close the job in one fenced script."""
        job_id = lease.job.id
        keys = [
            self._job_key(job_id),
            self._tools_key(job_id),
            self._stream,
            self._open,
            self._stats,
            self._decisions_key(job_id),
        ]
        args = [
            lease.attempt,
            repr(time.time()),
            self._group,
            lease.token,
            result.model_dump_json(),
            job_id,
            self._result_ttl_s,
        ]
        return bool(await self._run(self._complete, keys, args))

    async def release(
        self,
        lease: Lease,
        *,
        delay_s: float = 0.0,
        error: str | None = None,
        worker_cancelled: bool = False,
    ) -> bool:
        """Leave the entry unacknowledged and make it claimable after ``delay_s``."""
        idle_ms = max(0, self._lease_ms - int(delay_s * 1000))
        keys = [self._job_key(lease.job.id), self._stream, self._waiting]
        args = [
            lease.attempt,
            repr(time.time()),
            self._group,
            lease.consumer,
            lease.token,
            idle_ms,
            error or "",
            "1" if worker_cancelled else "0",
            lease.job.id,
        ]
        return bool(await self._run(self._release, keys, args))

    async def dead_letter(self, lease: Lease, error: str) -> bool:
        """XADD the job to the dead-letter stream and XACK it."""
        keys = [self._job_key(lease.job.id), self._stream, self._dead, self._open]
        args = [
            lease.attempt,
            repr(time.time()),
            self._group,
            lease.token,
            error,
            lease.job.id,
            self._dead_maxlen,
        ]
        return bool(await self._run(self._bury, keys, args))

    async def flag_run_cancelled(self, job_id: str, run_id: str) -> bool:
        """Mark the job's current run as cancelled by a worker."""
        return bool(await self._run(self._flag_cancelled, [self._job_key(job_id)], [run_id]))

    async def new_run_generation(self, lease: Lease) -> Lease:
        """Forget a drain-cancelled run so the next run gets a fresh idempotency key."""
        keys = [self._job_key(lease.job.id), self._tools_key(lease.job.id)]
        if not await self._run(self._new_generation, keys, [lease.attempt]):
            raise LeaseLost(lease.job.id, lease.attempt)
        record = await self.get(lease.job.id)
        if record is None:
            raise LeaseLost(lease.job.id, lease.attempt)
        return lease.model_copy(update={"progress": record.progress})

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc

    # -- pauses and writes (runtime.worker.approvals.ApprovalStore) -------------------------

    async def pause(self, lease: Lease, pause: PauseRecord) -> bool:
        """Make the job ``awaiting_approval`` and XACK its entry (one fenced script)."""
        job_id = lease.job.id
        keys = [
            self._job_key(job_id),
            self._decisions_key(job_id),
            self._stream,
            self._open,
            self._paused,
        ]
        args = [
            lease.attempt,
            repr(time.time()),
            self._group,
            lease.token,
            pause.model_dump_json(),
            repr(pause.expires_at),
            job_id,
        ]
        return bool(await self._run(self._pause, keys, args))

    async def decide(self, job_id: str, call_id: str, decision: DecisionRecord) -> DecisionOutcome:
        """Record a decision (checked under WATCH); the last one adds a new stream entry."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        return await self._decide_once(pipe, job_id, call_id, decision)
                    except WatchError:
                        continue  # the job changed meanwhile: check again
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc

    async def _decide_once(
        self, pipe: Any, job_id: str, call_id: str, decision: DecisionRecord
    ) -> DecisionOutcome:
        keys = [self._job_key(job_id), self._decisions_key(job_id)]
        await pipe.watch(*keys)
        fields = await pipe.hgetall(keys[0])
        decisions = await pipe.hgetall(keys[1])
        record = _record(job_id, fields, {}, decisions) if fields else None
        outcome, last = check_decision(record, call_id, decision)
        if outcome == "unchanged":
            await pipe.reset()
            return outcome
        pipe.multi()
        script_keys = [*keys, self._stream, self._open, self._waiting, self._paused]
        args = [
            call_id,
            decision.model_dump_json(),
            "1" if last else "0",
            repr(time.time()),
            self._maxlen,
            job_id,
        ]
        await self._decide(keys=script_keys, args=args, client=pipe)
        await pipe.execute()
        return "queued" if last else "recorded"

    async def paused_before(self, when: float) -> list[str]:
        """Paused jobs whose pause expires by ``when``."""
        try:
            return list(await self._redis.zrangebyscore(self._paused, "-inf", when))
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc

    async def write_lookup(self, key: str) -> str | None:
        """The write record under ``key``."""
        try:
            value = await self._redis.hget(self._writes, key)
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc
        return None if value is None else str(value)

    async def write_start(self, key: str, record: str) -> str | None:
        """Store ``record`` unless one exists (HSETNX; then return the existing one)."""
        try:
            if await self._redis.hsetnx(self._writes, key, record):
                return None
            value = await self._redis.hget(self._writes, key)
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc
        return None if value is None else str(value)

    async def write_finish(self, key: str, record: str) -> None:
        """Store the finished record."""
        try:
            await self._redis.hset(self._writes, key, record)
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc

    # -- reads ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or ``None``."""
        records = await self._records([job_id])
        return records[0] if records else None

    async def _records(self, job_ids: list[str]) -> list[JobRecord]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hgetall(self._job_key(job_id))
                    pipe.hgetall(self._tools_key(job_id))
                    pipe.hgetall(self._decisions_key(job_id))
                # A key of the wrong type fails its own command only: shown as unreadable.
                replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc
        records = []
        triples = zip(job_ids, replies[::3], replies[1::3], replies[2::3], strict=True)
        for job_id, fields, tools, decisions in triples:
            if fields:
                records.append(_record(job_id, fields, tools, decisions))
        return records

    async def recent(self, limit: int = 20) -> list[JobRecord]:
        """Newest jobs first."""
        try:
            job_ids = await self._redis.zrevrange(self._recent, 0, max(0, limit - 1))
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc
        return await self._records(list(job_ids))

    async def dead_letters(self, limit: int = 100) -> list[JobRecord]:
        """Jobs in the dead-letter stream, oldest first."""
        try:
            entries = await self._redis.xrange(self._dead, count=limit)
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc
        job_ids = [fields.get("job_id", "") for _id, fields in entries]
        return await self._records([job_id for job_id in job_ids if job_id])

    async def stats(self) -> QueueStats:
        """Counts from the open set, the waiting zset and the dead-letter stream."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.scard(self._open)
                pipe.zcard(self._waiting)
                pipe.xlen(self._dead)
                pipe.zrange(self._waiting, 0, 0, withscores=True)
                pipe.zcard(self._paused)
                unfinished, waiting, dead, oldest, paused = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc
        age = max(0.0, time.time() - float(oldest[0][1])) if oldest else 0.0
        return QueueStats(
            queued=int(waiting),
            running=max(0, int(unfinished) - int(waiting)),
            dead=int(dead),
            oldest_queued_age_s=age,
            awaiting_approval=int(paused),
        )

    async def completed_count(self) -> int:
        """How many results were stored (each job's result is stored once)."""
        value = await self._redis.hget(self._stats, "completed")
        return int(value or 0)

    async def ping(self) -> None:
        """PING the server."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise QueueError(f"redis: {exc}") from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _progress(
    fields: dict[str, str], tools: dict[str, str], job_id: str, decisions: Any = None
) -> Progress:
    outputs = {k: decode_model(ToolOutput, v, "tool output", job_id) for k, v in tools.items()}
    pause = fields.get("pause")
    decided = decisions if isinstance(decisions, dict) else {}
    try:
        return Progress(
            conversation_id=fields.get("thread_id") or None,
            run_id=fields.get("run_id") or None,
            run_seq=int(decode_number(fields.get("run_seq", 0), "run_seq", job_id)),
            worker_cancelled=fields.get("worker_cancelled") == "1",
            tool_outputs=outputs,
            pause=decode_model(PauseRecord, pause, "pause", job_id) if pause else None,
            decisions={
                k: decode_model(DecisionRecord, v, "decision", job_id) for k, v in decided.items()
            },
        )
    except ValidationError as exc:
        raise MalformedRecord(job_id, f"invalid progress ({exc.errors()[0]['msg']})") from None


def _record(job_id: str, fields: Any, tools: Any, decisions: Any = None) -> JobRecord:
    if isinstance(fields, Exception) or isinstance(tools, Exception):
        error = fields if isinstance(fields, Exception) else tools
        return _unreadable(job_id, {}, f"malformed job record: {error}")
    try:
        job, _unknown = decode_job(fields.get("job"), job_id)
        result = fields.get("result")
        submitted = decode_number(fields.get("submitted_at"), "submitted_at", job_id)
        return JobRecord(
            job_id=job_id,
            job=job,
            state=JobState(fields.get("state")),
            attempt=int(decode_number(fields.get("attempt", 0), "attempt", job_id)),
            owner=fields.get("owner"),
            progress=_progress(fields, tools, job_id, decisions),
            submitted_at=submitted,
            updated_at=decode_number(fields.get("updated_at", submitted), "updated_at", job_id),
            last_error=fields.get("last_error"),
            result=decode_model(JobResult, result, "result", job_id) if result else None,
        )
    except MalformedRecord as exc:
        return _unreadable(job_id, fields, exc.reason)
    except ValueError as exc:  # a bad state value
        return _unreadable(job_id, fields, f"malformed job record: {exc}")


def _unreadable(job_id: str, fields: dict[str, str], reason: str) -> JobRecord:
    """What can be shown of a record that does not decode (``jobs`` must still list it)."""
    state = fields.get("state")
    return JobRecord(
        job_id=job_id,
        job=None,
        state=JobState(state) if state in set(JobState) else JobState.DEAD,
        attempt=_number_or_zero(fields.get("attempt")),
        owner=fields.get("owner"),
        submitted_at=_number_or_zero(fields.get("submitted_at")),
        updated_at=_number_or_zero(fields.get("updated_at")),
        last_error=reason,
    )


def _number_or_zero(value: object) -> int:
    try:
        return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
