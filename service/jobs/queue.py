"""The API's side of RQ: enqueue by function path, read a job's status, cancel it.

Every Redis call goes through ``redis_errors()``, which turns any Redis failure (down,
timed out, full under ``noeviction``, a read-only replica) into a quick 503 (the
connection's timeouts are short, see ``service.state``), so the job endpoints fail clearly
while predictions, which never touch Redis, keep working.

A job's status names no server path: its record keeps the upload's path for the worker, but
``describe`` shows none of it, and an error text (the worker's message or the last line of an
unexpected exception) has the configured directories replaced by their setting names and any
other absolute path cut to its file name.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import redis
from flask import current_app
from rq import Queue, Retry, Worker
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from core.jobs import QUEUES, RECENT_JOBS_KEEP, RECENT_JOBS_KEY, JobPayload, cancel_key, is_job_id
from service.service_error import ServiceError
from service.state import get_state

FINAL = ("finished", "failed", "canceled")
# An absolute path in an error text, not preceded by a word character (so "1/2" is left alone).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s'\"/:,;()]+/)*([^\s'\"/:,;()]*)")


def unavailable(exc: redis.exceptions.RedisError) -> ServiceError:
    """The 503 for a Redis failure: what Redis said, and that predictions are unaffected."""
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        reason = f"Redis is not answering ({type(exc).__name__})"
    else:
        # e.g. OutOfMemoryError (maxmemory with noeviction) or ReadOnlyError (a replica)
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        reason = f"Redis refused the command ({type(exc).__name__}: {detail})"
    return ServiceError(503, f"the job queue is unavailable: {reason}; predictions still work, retry jobs later")


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise unavailable(exc) from None


def ping() -> None:
    """Fail fast (before reading an upload) when Redis is down."""
    with redis_errors():
        get_state().redis.ping()


def enqueue(payload: JobPayload) -> Job:
    """Record the job in the recent-jobs list, then queue it; when either fails, neither stays.

    The job runs ``payload.function`` on ``payload.queue`` with the payload's fields as keyword
    arguments (plain values, see ``core.jobs``), which the worker validates back into the model.

    Queueing is the last step of a submission: once it succeeds nothing else can fail, so the
    caller may delete the upload on any exception without orphaning a queued job.
    """
    state = get_state()
    settings = state.settings
    retention = settings.job_retention_seconds
    job_id, kind, queue_name = payload.job_id, payload.kind, payload.queue
    with redis_errors():
        with state.redis.pipeline() as pipe:
            pipe.zadd(RECENT_JOBS_KEY, {job_id: time.time()})
            pipe.zremrangebyrank(RECENT_JOBS_KEY, 0, -RECENT_JOBS_KEEP - 1)
            pipe.execute()
        try:
            queue = Queue(queue_name, connection=state.redis)
            return queue.enqueue(payload.function, kwargs=payload.model_dump(mode="json"), job_id=job_id,
                                 job_timeout=settings.job_timeout_seconds,
                                 retry=Retry(max=settings.job_retries) if settings.job_retries else None,
                                 result_ttl=retention, failure_ttl=retention, ttl=retention,
                                 meta={"type": kind, "model": payload.model or settings.model_name,
                                       "progress": 0.0, "stage": "queued"},
                                 description=f"{kind} job {job_id}")
        except BaseException:
            _forget(queue_name, job_id)
            raise


def _forget(queue_name: str, job_id: str) -> None:
    """Best effort: undo a submission whose enqueue failed part-way (these commands free memory,
    so a full Redis still runs them; an unreachable one has stored nothing to undo)."""
    connection = get_state().redis
    with contextlib.suppress(redis.exceptions.RedisError), connection.pipeline() as pipe:
        pipe.zrem(RECENT_JOBS_KEY, job_id)
        pipe.lrem(Queue(queue_name, connection=connection).key, 0, job_id)
        pipe.delete(Job.key_for(job_id), Job.dependents_key_for(job_id))
        pipe.execute()


MAX_WAIT_SECONDS = 30
WAITERS_PER_PROCESS = 2  # a waiting request holds a gunicorn thread: never more than these per process
_WAIT_POLL_SECONDS = 0.2


def parse_wait(raw: str | None) -> float:
    """The ``?wait=<seconds>`` of a status request: 0 (answer at once) .. MAX_WAIT_SECONDS."""
    if raw is None or raw == "":
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds <= MAX_WAIT_SECONDS:  # also refuses nan and inf
        raise ServiceError(400, f"wait: expected seconds from 0 to {MAX_WAIT_SECONDS}, got {raw!r}")
    return seconds


def wait_until_final(job: Job, seconds: float) -> Job:
    """The job once it is finished, failed or canceled, or after ``seconds``, whichever is first.

    Long-polling holds a thread that predictions could use, so at most WAITERS_PER_PROCESS
    requests of a process wait; any further one gets the status as it is, at once.
    """
    # Per app (one per gunicorn worker process); setdefault is atomic, so threads share one.
    waiters = current_app.extensions.setdefault("mnist.jobs.waiters", threading.BoundedSemaphore(WAITERS_PER_PROCESS))
    if seconds <= 0 or public_status(job) in FINAL or not waiters.acquire(blocking=False):
        return job
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(_WAIT_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
            job = fetch(job.id)
            if public_status(job) in FINAL:
                break
        return job
    finally:
        waiters.release()


def fetch(job_id: str) -> Job:
    if not is_job_id(job_id):
        raise ServiceError(404, f"no job {job_id!r}: job ids are 32 hexadecimal characters")
    with redis_errors():
        try:
            return Job.fetch(job_id, connection=get_state().redis)
        except NoSuchJobError:
            raise ServiceError(404, f"no job {job_id!r} (unknown or expired)") from None


def workers_alive(connection: redis.Redis) -> dict[str, Any]:
    """The RQ workers registered and alive, in all and per queue (a Redis failure propagates).

    From RQ's worker registry: a worker registers when it starts and leaves when it stops; one
    that was killed keeps its registration until it expires (WORKER_MAINTENANCE_INTERVAL + 75 s
    after its last heartbeat), and an expired one is not counted.
    """
    per_queue = {name: Worker.all_keys(connection=connection, queue=Queue(name, connection=connection))
                 for name in QUEUES}
    keys = sorted(set().union(*per_queue.values()))
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.exists(key)
        alive = {key for key, exists in zip(keys, pipe.execute(), strict=True) if exists}
    return {"alive": len(alive), "queues": {name: len(alive & set(found)) for name, found in per_queue.items()}}


def recent_ids(limit: int) -> list[str]:
    with redis_errors():
        return [raw.decode() for raw in get_state().redis.zrevrange(RECENT_JOBS_KEY, 0, limit - 1)]


def fetch_many(job_ids: list[str]) -> list[Job]:
    with redis_errors():
        return [job for job in Job.fetch_many(job_ids, connection=get_state().redis) if job is not None]


def public_status(job: Job) -> str:
    """RQ's statuses folded into queued | started | finished | failed | canceled."""
    status = job.get_status(refresh=False)
    if status in (JobStatus.STOPPED, JobStatus.CANCELED):
        return "canceled"
    if status == JobStatus.FAILED:
        with redis_errors():
            return "canceled" if get_state().redis.exists(cancel_key(job.id)) else "failed"
    if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.CREATED):
        return "queued"
    return str(status.value if isinstance(status, JobStatus) else status)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def public_text(text: str) -> str:
    """``text`` without server paths: JOBS_DIR/MODELS_DIR/DATA_DIR by name, other paths by file name."""
    settings = get_state().settings
    named = (("JOBS_DIR", settings.jobs_dir), ("MODELS_DIR", settings.models_dir), ("DATA_DIR", settings.data_dir))
    # The longest first, so a folder nested in another gets its own name; whole path segments only,
    # so /srv/jobs2 is not JOBS_DIR + "2".
    for name, path in sorted(named, key=lambda item: len(str(item[1])), reverse=True):
        text = re.sub(re.escape(str(path)) + r"(?![^/\s'\"])", name, text)
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1) or "/", text)


def error_of(job: Job, status: str) -> str | None:
    if status not in ("failed", "canceled"):
        return None
    if job.meta.get("error"):
        return public_text(str(job.meta["error"]))
    if status == "canceled":
        return "canceled by request"
    with redis_errors():
        result = job.latest_result()
    text = (getattr(result, "exc_string", None) or "").strip()
    return public_text(text.splitlines()[-1]) if text else "the job failed"


def describe(job: Job) -> dict[str, Any]:
    status = public_status(job)
    meta = job.meta
    body: dict[str, Any] = {
        "job_id": job.id,
        "type": meta.get("type"),
        "status": status,
        "progress": 1.0 if status == "finished" else float(meta.get("progress", 0.0)),
        "stage": meta.get("stage", "queued") if status in ("queued", "started", "finished") else status,
        "created_at": _iso(job.created_at),
        "enqueued_at": _iso(job.enqueued_at),
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at) if status in FINAL else None,
        "retries_left": job.retries_left,
        "error": error_of(job, status),
    }
    for key in ("model", "model_version", "rows_scored", "rows_total", "produced_version", "promoted",
                "promotion_reason", "dev", "production_version", "production_dev", "epoch", "epochs",
                "last_epoch", "curve", "peak_rss_mb", "train_rows", "dev_rows", "test", "test_rows"):
        if key in meta:
            body[key] = meta[key]
    return body


def claim_cancel(job: Job) -> bool:
    """Record that ``job`` is to be canceled; True for the first request only (``SET NX``).

    The flag is what the job itself checks between chunks and epochs, so it alone cancels; the
    first request also stops a running work horse at once. A repeated or concurrent cancel (a
    double click, a retrying client) finds the flag set and sends nothing: every stop command is
    a signal to a worker's process, and one per job is all a job needs.
    """
    state = get_state()
    with redis_errors():
        return bool(state.redis.set(cancel_key(job.id), 1, nx=True, ex=state.settings.job_retention_seconds))


def cancel(job: Job) -> str:
    """Cancel a queued or running job whose cancel this request claimed (``claim_cancel``);
    returns the status to report ('canceled' or 'canceling')."""
    state = get_state()
    with redis_errors():
        if public_status(job) == "queued":
            with contextlib.suppress(InvalidJobOperation):
                job.cancel()
                return "canceled"
        with contextlib.suppress(InvalidJobOperation, NoSuchJobError):
            send_stop_job_command(state.redis, job.id)  # kills the work horse now
    return "canceling"
