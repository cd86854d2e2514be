"""Progress, cancellation and clean failures for a running job, all through ``job.meta``.

The API reads ``progress`` (0..1), ``stage`` and the job's figures from the meta; it sets a
separate cancel flag that a job checks between chunks or epochs. In a worker, meta writes go
through the job's fence: an execution that no longer owns its job stops at its next update.
"""

from __future__ import annotations

import os
import re
from typing import Any

import redis
from rq.job import Job, get_current_job

from core.jobs import cancel_key
from worker.fence import current_fence


class JobFailed(Exception):
    """A failure that retrying cannot fix (bad data, unknown version, canceled): fail at once."""


class JobReporter:
    """Writes progress into the current job's meta; a no-op outside RQ (direct calls, tests)."""

    def __init__(self, connection: redis.Redis, job_id: str) -> None:
        self.connection = connection
        self.job_id = job_id
        self.job: Job | None = get_current_job()

    def update(self, progress: float | None = None, stage: str | None = None, **fields: Any) -> None:
        if self.job is None:
            return
        if progress is not None:
            self.job.meta["progress"] = round(min(max(progress, 0.0), 1.0), 4)
        if stage is not None:
            self.job.meta["stage"] = stage
        self.job.meta.update(fields)
        fence = current_fence()
        if fence is not None:
            fence.save_meta(self.job)  # raises ExecutionFenced when another execution owns the job
        else:
            self.job.save_meta()

    def canceled(self) -> bool:
        return bool(self.connection.exists(cancel_key(self.job_id)))

    def check_canceled(self) -> None:
        if self.canceled():
            self.fail("canceled by request")

    def fail(self, message: str) -> JobFailed:
        """Record ``message`` as the job's error, switch retries off, and raise."""
        if self.job is not None:
            # RQ retries while retries_left > 0; the horse's in-memory job is what its failure
            # handler reads, so zeroing it here keeps a bad CSV from being scored three times.
            self.job.retries_left = 0
            self.update(stage="failed", error=message)
        raise JobFailed(message)


def peak_rss_mb() -> float | None:
    """This process's peak resident set size (VmHWM) in MiB, from /proc."""
    try:
        with open(f"/proc/{os.getpid()}/status") as fh:
            match = re.search(r"^VmHWM:\s+(\d+) kB", fh.read(), re.MULTILINE)
    except OSError:
        return None
    return round(int(match.group(1)) / 1024, 1) if match else None
