"""The API's side of sharded scoring: plan, queue, describe and cancel one job made of shards.

An upload larger than SCORING_SHARD_BYTES is cut at line boundaries (a few short reads, no
pass over the file) into shard jobs that any worker takes, and the user's job id becomes the
join (``worker.shards.join_shards``), which RQ starts once every shard has ended. The user
sees one job: its status and progress add up the shards' while they run, and a cancel
reaches every shard. The model version is pinned at submission, so a promotion while the
shards run cannot mix versions in one result.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Dependency, Job, JobStatus

from core.csv_ranges import split_at_lines
from core.jobs import (
    RECENT_JOBS_KEEP,
    RECENT_JOBS_KEY,
    JoinJob,
    ScoreJob,
    ShardJob,
    cancel_key,
    new_job_id,
)
from core.registry import RegistryError
from service.jobs.queue import _forget, _iso, redis_errors
from service.state import get_state

SHARD_KIND = ShardJob.kind


def plan(upload: Path) -> list[tuple[int, int]] | None:
    """The shards' byte ranges, or None when the upload stays one job (small, or sharding off)."""
    shard_bytes = get_state().settings.scoring_shard_bytes
    if not shard_bytes or upload.stat().st_size <= shard_bytes:
        return None
    ranges = split_at_lines(upload, shard_bytes)
    return ranges if len(ranges) > 1 else None


def pin_version(payload: ScoreJob) -> ScoreJob:
    """The payload with its alias or production resolved to a version number now; an unknown one
    is left as it is, for the shards to report exactly as the unsharded job would."""
    state = get_state()
    name = getattr(payload, "model", None) or state.settings.model_name
    try:
        version = state.registry.resolve(name, payload.version, payload.alias)
    except (RegistryError, OSError, ValueError):
        return payload
    return payload.model_copy(update={"version": version, "alias": None})


def enqueue_sharded(payload: ScoreJob, ranges: list[tuple[int, int]]) -> Job:
    """Queue one shard job per range, then the user's job id as their join; all or nothing."""
    state = get_state()
    settings = state.settings
    retention = settings.job_retention_seconds
    payload = pin_version(payload)
    job_id = payload.job_id
    shard_ids = [new_job_id() for _ in ranges]
    common: dict[str, Any] = {"result_ttl": retention,
                              "failure_ttl": retention, "ttl": retention,
                              "retry": Retry(max=settings.job_retries) if settings.job_retries else None}
    fields = payload.model_dump(mode="json", exclude={"job_id"})
    with redis_errors():
        with state.redis.pipeline() as pipe:
            pipe.zadd(RECENT_JOBS_KEY, {job_id: time.time()})
            pipe.zremrangebyrank(RECENT_JOBS_KEY, 0, -RECENT_JOBS_KEEP - 1)
            pipe.execute()
        queue = Queue(payload.queue, connection=state.redis)
        try:
            queue.enqueue_many([
                Queue.prepare_data(ShardJob.function, job_id=shard_id,
                                   description=f"{SHARD_KIND} {index} of job {job_id}",
                                   kwargs=ShardJob(job_id=shard_id, parent=job_id, index=index, start=start, end=end,
                                                   **fields).model_dump(mode="json"),
                                   meta={"type": SHARD_KIND, "parent": job_id, "index": index, "progress": 0.0,
                                         "stage": "queued"}, timeout=settings.job_timeout_seconds, **common)
                for index, (shard_id, (start, end)) in enumerate(zip(shard_ids, ranges, strict=True))])
            join = JoinJob(job_id=job_id, shards=shard_ids, **fields)
            # allow_failure: a shard that failed for good still wakes the join, which reports it
            return queue.enqueue(join.function, kwargs=join.model_dump(mode="json"), job_id=job_id,
                                 depends_on=Dependency(jobs=shard_ids, allow_failure=True, enqueue_at_front=True),
                                 meta={"type": payload.kind, "progress": 0.0, "stage": "queued", "shards": shard_ids,
                                       "shard_bytes": [end - start for start, end in ranges]},
                                 description=f"{payload.kind} job {job_id} in {len(ranges)} shards",
                                 job_timeout=settings.job_timeout_seconds, **common)
        except BaseException:
            for stale in (job_id, *shard_ids):
                _forget(payload.queue, stale)
            raise


def is_sharded(job: Job) -> bool:
    return bool(job.meta.get("shards"))


def aggregate(job: Job, body: dict[str, Any]) -> None:
    """Fold the shards' progress into the user's job while the join waits for them (RQ: deferred)."""
    ids: list[str] = job.meta["shards"]
    weights: list[int] = job.meta.get("shard_bytes") or [1] * len(ids)
    if body["status"] != "queued":
        body["shards"] = {"total": len(ids)}
        return
    with redis_errors():
        shards = Job.fetch_many(ids, connection=get_state().redis)
    counts = {"total": len(ids), "queued": 0, "running": 0, "finished": 0, "failed": 0}
    done_weight = 0.0
    rows = 0
    started: list[Any] = []
    for shard, weight in zip(shards, weights, strict=False):
        status = shard.get_status(refresh=False) if shard is not None else JobStatus.FAILED
        if status == JobStatus.FINISHED:
            counts["finished"] += 1
            done_weight += weight
        elif status == JobStatus.STARTED:
            counts["running"] += 1
            done_weight += weight * float(shard.meta.get("progress", 0.0))
        elif status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            counts["failed"] += 1
        else:
            counts["queued"] += 1
        if shard is not None:
            rows += int(shard.meta.get("rows_scored", 0))
            if shard.started_at is not None:
                started.append(shard.started_at)
            if "model_version" in shard.meta:
                body["model_version"] = shard.meta["model_version"]
    body["shards"] = counts
    if counts["queued"] == counts["total"]:
        return
    # The join is still to come: a job whose shards are all done reads 0.99, not 1.0.
    body.update(status="started", progress=round(min(done_weight / max(sum(weights), 1), 0.99), 4),
                stage=f"scoring: {counts['finished']} of {counts['total']} shards done, {counts['running']} running",
                started_at=_iso(min(started)) if started else None, rows_scored=rows)


def cancel(job: Job) -> str:
    """Cancel the user's job (its cancel claimed by this request: ``queue.claim_cancel``) and every
    shard: flags first (a shard checks them between chunks), queued shards leave the queue,
    running ones are stopped. 'canceled' unless the join runs."""
    state = get_state()
    ids: list[str] = job.meta["shards"]
    retention = state.settings.job_retention_seconds
    with redis_errors():
        with state.redis.pipeline() as pipe:
            for job_id in ids:
                pipe.set(cancel_key(job_id), 1, ex=retention)
            pipe.execute()
        for shard in Job.fetch_many(ids, connection=state.redis):
            if shard is None:
                continue
            status = shard.get_status(refresh=False)
            if status == JobStatus.STARTED:
                with contextlib.suppress(InvalidJobOperation, NoSuchJobError):
                    send_stop_job_command(state.redis, shard.id)
            elif status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.CREATED):
                with contextlib.suppress(InvalidJobOperation):
                    shard.cancel()
        if job.get_status(refresh=True) == JobStatus.STARTED:  # the join itself is running
            with contextlib.suppress(InvalidJobOperation, NoSuchJobError):
                send_stop_job_command(state.redis, job.id)
            return "canceling"
        with contextlib.suppress(InvalidJobOperation):
            job.cancel()
    return "canceled"
