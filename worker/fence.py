"""One execution of a job at a time: a fencing lock per job id, and a once-only final status.

A job's execution takes ``lock_key(job_id)`` with ``SET NX`` and a random token before it
runs, keeps it alive from a small heartbeat thread, and releases it at the end. Every step
that makes something visible (a meta write, renaming a result into place, publishing a
version, the final status) first checks, in one Lua script, that the token still holds the
lock and that the job has no final status yet; an execution that fails that check has been
fenced off and publishes nothing. The final status is claimed once, through ``done_key``,
so a late execution can never turn ``failed`` into ``finished`` or the other way round.

Stopping a running execution (a cancel, a job past its time) is a handshake with its claim,
both in one Redis script each: the worker ``revoke``s the lock of its horse's token before it
signals the horse, unless the job's final status is claimed already. So either the horse
claimed first, and is left to record the end it claimed, or the lock was revoked first, and
the horse can claim and publish nothing more: the worker then records the end itself. Without
it, a SIGKILL between the horse's claim and RQ's status write left a job "started" for good.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import redis
from rq.job import Job

from core.jobs import done_key, lock_key

log = logging.getLogger(__name__)

# RQ's statuses after which a job never runs again (RQ writes them to the job hash's "status").
RQ_FINAL = ("finished", "failed", "stopped", "canceled")

# KEYS: lock, done marker, RQ job hash. ARGV[1]: the token ("" = no lock to check).
# Returns 1 when the token holds the lock (or none is checked) and the job is not final,
# 0 when another execution holds (or nobody holds) the lock, -1 when the job is final.
_CHECK = """
if ARGV[1] ~= '' and redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('exists', KEYS[2]) == 1 then return -1 end
local status = redis.call('hget', KEYS[3], 'status')
if """ + " or ".join(f"status == '{name}'" for name in RQ_FINAL) + """ then return -1 end
"""
_HOLDS = _CHECK + "return 1"
# ARGV[2]: the serialized meta.
_SAVE_META = _CHECK + "redis.call('hset', KEYS[3], 'meta', ARGV[2]) return 1"
# ARGV[2]: the final status to record, ARGV[3]: its lifetime in seconds.
_CLAIM_FINAL = _CHECK + "redis.call('set', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3])) return 1"
# KEYS[1]: lock. ARGV: token, ttl in ms. Extends the lock, or takes it back when it expired with
# nobody else taking it (Redis was out of reach for longer than the TTL); 0 when another holds it.
_KEEP = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if not holder then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
# KEYS: lock, done marker, RQ job hash. ARGV: the horse's token, ttl in ms. 0 when the job's end is
# claimed or recorded (leave the horse to finish it), 1 when the horse may be stopped: its lock,
# if it holds it, now holds a tombstone that no _KEEP takes back before it expires.
_REVOKE = """
if redis.call('exists', KEYS[2]) == 1 then return 0 end
local status = redis.call('hget', KEYS[3], 'status')
if """ + " or ".join(f"status == '{name}'" for name in RQ_FINAL) + """ then return 0 end
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], 'revoked:' .. ARGV[1], 'PX', ARGV[2])
end
return 1
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def new_token() -> str:
    return uuid.uuid4().hex


class ExecutionFenced(Exception):
    """This execution lost its job's lock, or the job reached a final status elsewhere: stop, publish nothing."""


class JobFence:
    """The lock of one execution of one job (``token`` None: no lock, e.g. the worker's main process)."""

    def __init__(self, connection: redis.Redis, job_id: str, ttl_seconds: float, done_ttl_seconds: int,
                 token: str | None = None) -> None:
        self.connection = connection
        self.job_id = job_id
        self.ttl_ms = max(int(ttl_seconds * 1000), 1000)
        self.done_ttl = int(done_ttl_seconds)
        self.token = token
        self._keys = [lock_key(job_id), done_key(job_id), Job.key_for(job_id)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lock life cycle

    def try_acquire(self, token: str | None = None) -> bool:
        token = token or new_token()
        if self.connection.set(self._keys[0], token, nx=True, px=self.ttl_ms):
            self.token = token
            return True
        return False

    def acquire(self, wait_seconds: float, token: str | None = None) -> bool | None:
        """Take the lock (with ``token``, or a new one), waiting while another execution holds it:
        True when taken, None when the job became final meanwhile (nothing left to run), False when
        ``wait_seconds`` ran out."""
        deadline = time.monotonic() + wait_seconds
        delay = 0.1
        while True:
            if self.is_final():
                return None
            if self.try_acquire(token):
                if self.is_final():  # finished between the check and the SET
                    self.release()
                    return None
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def start_heartbeat(self) -> None:
        """Extend the lock every third of its lifetime until ``release``."""
        def beat() -> None:
            while not self._stop.wait(self.ttl_ms / 3000):
                try:
                    if not self.connection.eval(_KEEP, 1, self._keys[0], self.token, self.ttl_ms):
                        # Another execution holds it now: this one is fenced off at its next check.
                        log.warning("job %s: this execution lost its lock to another", self.job_id)
                        return
                except redis.RedisError as exc:  # keep trying; the lock outlives short outages
                    log.warning("job %s: could not extend the lock (%s)", self.job_id, exc)

        self._thread = threading.Thread(target=beat, name=f"lock-{self.job_id[:8]}", daemon=True)
        self._thread.start()

    def revoke(self, token: str) -> bool:
        """Before stopping the execution that holds ``token``: False when the job's end is claimed
        (let that execution record it), else True, with the lock taken from it if it held it."""
        return bool(self.connection.eval(_REVOKE, len(self._keys), *self._keys, token, self.ttl_ms))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.token:
            try:
                self.connection.eval(_RELEASE, 1, self._keys[0], self.token)
            except redis.RedisError as exc:  # it expires on its own
                log.warning("job %s: could not release the lock (%s)", self.job_id, exc)

    # ------------------------------------------------------------ fenced operations

    def _eval(self, script: str, *args: Any) -> int:
        result = int(self.connection.eval(script, len(self._keys), *self._keys, self.token or "", *args))
        if result == 0 and self.token and self.connection.eval(_KEEP, 1, self._keys[0], self.token, self.ttl_ms):
            # Nobody held the lock (it expired while Redis was out of reach): _KEEP took it back, and
            # the heartbeat keeps it from here. Safe, because any other execution since then either
            # still holds it, or made the job final, or published nothing it could publish twice
            # (retraining looks its version up by job id).
            log.warning("job %s: the lock had expired; this execution took it back", self.job_id)
            result = int(self.connection.eval(script, len(self._keys), *self._keys, self.token, *args))
        return result

    def holds(self) -> bool:
        return self._eval(_HOLDS) == 1

    def is_final(self) -> bool:
        return int(self.connection.eval(_HOLDS, len(self._keys), *self._keys, "")) == -1

    def check(self) -> None:
        """Raise ``ExecutionFenced`` unless this execution may still publish."""
        if not self.holds():
            raise ExecutionFenced(f"job {self.job_id}: another execution owns this job, or it has ended")

    def save_meta(self, job: Job) -> None:
        """``job.save_meta()``, done only while this execution may still publish."""
        if self._eval(_SAVE_META, job.serializer.dumps(job.meta)) != 1:
            raise ExecutionFenced(f"job {self.job_id}: another execution owns this job, or it has ended")

    def claim_final(self, status: str) -> bool:
        """Record ``status`` as the job's final one; False when it already has one (or the lock is lost)."""
        return self._eval(_CLAIM_FINAL, status, self.done_ttl) == 1

    def final_status(self) -> str | None:
        raw = self.connection.get(self._keys[1])
        return raw.decode() if raw else None

    def owner(self) -> str | None:
        raw = self.connection.get(self._keys[0])
        return raw.decode() if raw else None


_current: JobFence | None = None


def set_current_fence(fence: JobFence | None) -> None:
    global _current
    _current = fence


def current_fence() -> JobFence | None:
    """The fence of the execution running in this process (None outside a worker's horse)."""
    return _current


def check_fence() -> None:
    """Before publishing: raise ``ExecutionFenced`` when this execution may no longer publish."""
    if _current is not None:
        _current.check()
