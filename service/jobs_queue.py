"""The API's side of RQ: enqueue by function path, read a job's status, cancel it.

Every Redis call goes through ``redis_errors()``, which turns any Redis failure (down,
timed out, full under ``noeviction``, a read-only replica) into a quick 503 (the
connection's timeouts are short, see ``service.state``), so the job endpoints fail clearly
while predictions, which never touch Redis, keep working.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from core.jobs import RECENT_JOBS_KEEP, RECENT_JOBS_KEY, cancel_key, is_job_id
from service.errors import ApiError
from service.state import get_state

FINAL = ("finished", "failed", "canceled")


def unavailable(exc: redis.exceptions.RedisError) -> ApiError:
    """The 503 for a Redis failure: what Redis said, and that predictions are unaffected."""
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        reason = f"Redis is not answering ({type(exc).__name__})"
    else:
        # e.g. OutOfMemoryError (maxmemory with noeviction) or ReadOnlyError (a replica)
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        reason = f"Redis refused the command ({type(exc).__name__}: {detail})"
    return ApiError(503, f"the job queue is unavailable: {reason}; predictions still work, retry jobs later")


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


def enqueue(queue_name: str, function: str, job_id: str, kind: str, kwargs: dict[str, Any]) -> Job:
    """Record the job in the recent-jobs list, then queue it; when either fails, neither stays.

    Queueing is the last step of a submission: once it succeeds nothing else can fail, so the
    caller may delete the upload on any exception without orphaning a queued job.
    """
    state = get_state()
    settings = state.settings
    retention = settings.job_retention_seconds
    with redis_errors():
        with state.redis.pipeline() as pipe:
            pipe.zadd(RECENT_JOBS_KEY, {job_id: time.time()})
            pipe.zremrangebyrank(RECENT_JOBS_KEY, 0, -RECENT_JOBS_KEEP - 1)
            pipe.execute()
        try:
            queue = Queue(queue_name, connection=state.redis)
            return queue.enqueue(function, kwargs=kwargs, job_id=job_id, job_timeout=settings.job_timeout_seconds,
                                 retry=Retry(max=settings.job_retries) if settings.job_retries else None,
                                 result_ttl=retention, failure_ttl=retention, ttl=retention,
                                 meta={"type": kind, "progress": 0.0, "stage": "queued"},
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


def fetch(job_id: str) -> Job:
    if not is_job_id(job_id):
        raise ApiError(404, f"no job {job_id!r}: job ids are 32 hexadecimal characters")
    with redis_errors():
        try:
            return Job.fetch(job_id, connection=get_state().redis)
        except NoSuchJobError:
            raise ApiError(404, f"no job {job_id!r} (unknown or expired)") from None


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


def error_of(job: Job, status: str) -> str | None:
    if status not in ("failed", "canceled"):
        return None
    if job.meta.get("error"):
        return str(job.meta["error"])
    if status == "canceled":
        return "canceled by request"
    with redis_errors():
        result = job.latest_result()
    text = (getattr(result, "exc_string", None) or "").strip()
    return text.splitlines()[-1] if text else "the job failed"


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
    for key in ("model_version", "rows_scored", "rows_total", "produced_version", "promoted", "promotion_reason",
                "dev", "production_dev", "epoch", "epochs", "last_epoch", "peak_rss_mb"):
        if key in meta:
            body[key] = meta[key]
    return body


def cancel(job: Job) -> str:
    """Cancel a queued or running job; returns the status to report ('canceled' or 'canceling')."""
    state = get_state()
    status = public_status(job)
    if status in FINAL:
        raise ApiError(409, f"job {job.id} is already {status}")
    with redis_errors():
        # The flag first: whatever state the job moves to next, it sees the request.
        state.redis.set(cancel_key(job.id), 1, ex=state.settings.job_retention_seconds)
        if status == "queued":
            with contextlib.suppress(InvalidJobOperation):
                job.cancel()
                return "canceled"
        with contextlib.suppress(InvalidJobOperation, NoSuchJobError):
            send_stop_job_command(state.redis, job.id)  # kills the work horse now
    return "canceling"
