"""What happens when a job ends for good: its upload goes, and a failure is said in user terms.

A job's upload is deleted when the job ends (not while a retry is to come), before its final
status is written, so a client that reads the status finds it gone. An unexpected exception
becomes a short message in the job's terms (what failed, where to look), with the traceback in
the worker log. A job failed for good by RQ's abandoned-job cleanup (its worker was killed and no
retry was left) gets both from the next maintenance pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import redis
from rq import Queue
from rq.job import Job
from rq.timeouts import JobTimeoutException

from core.jobs import delete_upload, done_key

log = logging.getLogger(__name__)


class LockWaitExpired(Exception):
    """Another execution held the job's lock for longer than the job may run."""


def _doing(job: Job) -> str:
    return "retraining" if job.meta.get("type") == "train" else "scoring"


def job_ended(jobs_dir: Path, job: Job) -> None:
    """The job will not run again: its upload is no longer needed (the result stays)."""
    try:
        if delete_upload(jobs_dir, job.id):
            log.info("job %s ended; its upload was deleted", job.id)
    except (ValueError, OSError) as exc:
        log.warning("job %s: could not delete its upload (%s)", job.id, exc)


def describe_failure(job: Job, error: BaseException | None) -> None:
    """A message for the user in place of the exception: what failed, and where to look.
    The traceback is in this worker's log (RQ logs it as the job fails). Called only by the
    execution that claimed the job's final status."""
    where = f"see the worker log, job id {job.id}"
    if isinstance(error, LockWaitExpired):
        message = f"{error}; {where}"
    elif isinstance(error, JobTimeoutException):
        message = f"{_doing(job)} took longer than the job timeout ({job.timeout} s); {where}"
    elif error is not None:
        message = f"internal error while {_doing(job)}; {where}"
        log.error("job %s failed: %s: %s", job.id, type(error).__name__, error)
    else:
        message = (f"the worker process running the job ended unexpectedly (killed, or out of memory) while "
                   f"{_doing(job)}; {where}")
    try:
        job.get_meta(refresh=True)  # the main process's copy is stale: the horse wrote progress since
        job.meta.update(error=message, stage="failed")
        job.save_meta()  # unfenced: this execution has just claimed the job's final status
    except redis.RedisError as exc:
        log.warning("job %s: could not record its error message (%s)", job.id, exc)


def close_abandoned_failures(connection: redis.Redis, queues: Iterable[Queue], jobs_dir: Path,
                             retention_seconds: int) -> None:
    """Finish what RQ's abandoned-job cleanup leaves undone when it fails a job for good (no retry
    left): it writes the status without passing through the worker's failure handling, so the
    final status is marked here, the user gets a message in place of RQ's internal one, and the
    upload is deleted. A failed job already marked is skipped."""
    for queue in queues:
        for job_id in queue.failed_job_registry.get_job_ids():
            if not connection.set(done_key(job_id), "failed", nx=True, ex=retention_seconds):
                continue
            job = queue.fetch_job(job_id)
            if job is None:
                continue
            result = job.latest_result()
            if "AbandonedJobError" in (getattr(result, "exc_string", None) or "") and not job.meta.get("error"):
                job.meta["error"] = (f"the worker running the job stopped before it ended (killed, or out of "
                                     f"memory) and no retry was left; see the worker logs, job id {job.id}")
                job.save_meta()
            job_ended(jobs_dir, job)
