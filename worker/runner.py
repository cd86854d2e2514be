"""RQ's forking ``Worker`` adapted to this service.

- Heartbeats: RQ marks a running job abandoned only after ``job_monitoring_interval + 60`` s
  without a heartbeat. ``get_heartbeat_ttl`` replaces that fixed minute with a configured
  grace, so a job whose worker was SIGKILLed is found by another worker's maintenance
  (``StartedJobRegistry.cleanup``) within seconds and retried through its ``Retry``.
- Maintenance: an idle worker also deletes uploads and results older than the retention.
- Models: before forking the work horse, the parent resolves the model a scoring job asks
  for, so the horse inherits it loaded; the parent's ``Predictor`` swaps versions when the
  registry changes, and no job loads weights the process already holds.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from rq import Queue, Worker
from rq.job import Job

from core.jobs import SCORE_FUNCTION, expire_job_dirs
from core.registry import RegistryError
from worker.context import WorkerContext

log = logging.getLogger(__name__)


class JobWorker(Worker):
    def __init__(self, *args: Any, context: WorkerContext, **kwargs: Any) -> None:
        settings = context.settings
        kwargs.setdefault("job_monitoring_interval", settings.job_monitoring_interval)
        kwargs.setdefault("maintenance_interval", settings.worker_maintenance_interval)
        # An idle worker only runs maintenance between blocking dequeues of worker_ttl - 15 s.
        kwargs.setdefault("worker_ttl", settings.worker_maintenance_interval + 15)
        super().__init__(*args, **kwargs)
        self.context = context

    def get_heartbeat_ttl(self, job: Job) -> int:
        grace = self.context.settings.job_heartbeat_grace
        if job.timeout and job.timeout > 0:
            remaining = job.timeout - self.current_job_working_time
            return int(min(remaining, self.job_monitoring_interval)) + grace
        return self.job_monitoring_interval + grace

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        settings = self.context.settings
        removed = expire_job_dirs(settings.jobs_dir, settings.job_retention_seconds)
        if removed:
            log.info("removed %d expired job directories", len(removed))

    def execute_job(self, job: Job, queue: Queue) -> None:
        # A scoring job's model, or production (which retraining compares against); a bad
        # version is not an error here: the job itself reports it under its own id.
        wanted = job.kwargs if job.func_name == SCORE_FUNCTION else {}
        with contextlib.suppress(RegistryError):
            self.context.predictor.get(wanted.get("version"), wanted.get("alias"))
        super().execute_job(job, queue)
