"""RQ's forking ``Worker`` adapted to this service.

- Heartbeats: RQ marks a running job abandoned only after ``job_monitoring_interval + 60`` s
  without a heartbeat. ``get_heartbeat_ttl`` replaces that fixed minute with a configured
  grace, so a job whose worker was SIGKILLed is found by another worker's maintenance
  (``StartedJobRegistry.cleanup``) within seconds and retried through its ``Retry``.
- One execution at a time (``worker.exclusive``): the work horse dies with the worker's main
  process, takes the job's fencing lock before running it, and skips a job that already has a
  final status; the final status is claimed once; a job's upload is deleted when it ends.
- Maintenance: an idle worker also deletes uploads and results older than the retention.
- Models: before forking the work horse, the parent resolves the model the job's typed
  payload names (``worker.payloads.payload_of``), so the horse inherits it loaded; the
  parent's ``Predictor`` swaps versions when the registry changes, and no job loads weights
  the process already holds.
- Stopping: the thread that listens for commands polls every ``COMMAND_POLL_SECONDS``, so a
  warm shutdown never waits on it (RQ polls every 60 s, and redis-py 8 joins that thread
  without a timeout when the worker unsubscribes: an idle worker took up to a minute to exit).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from rq import Queue
from rq.job import Job

from core.jobs import expire_job_dirs
from core.registry import RegistryError
from worker.context import WorkerContext
from worker.exclusive import ExclusiveWorker
from worker.payloads import payload_of

log = logging.getLogger(__name__)

# How long the command listener waits for a message before looking at its stop flag: a bound on
# how long a stopping worker waits for it. Two wake-ups a second of an idle thread cost nothing.
COMMAND_POLL_SECONDS = 0.5



class JobWorker(ExclusiveWorker):
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

    def subscribe(self) -> None:
        """RQ's command listener (stop-job, shutdown, kill-horse) with a short poll (see above)."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(sleep_time=COMMAND_POLL_SECONDS, daemon=True,
                                                       exception_handler=self._pubsub_exception_handler)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        settings = self.context.settings
        removed = expire_job_dirs(settings.jobs_dir, settings.job_retention_seconds)
        if removed:
            log.info("removed %d expired job directories", len(removed))
        self.close_abandoned_failures()

    def execute_job(self, job: Job, queue: Queue) -> None:
        # The model the job's payload names: a scoring job's version or alias, production for
        # retraining (which compares against it) and for a job this release cannot read. A bad
        # version is not an error here: the job itself reports it under its own id.
        payload = payload_of(job)
        with contextlib.suppress(RegistryError):
            self.context.predictor.get(*(payload.model_target() if payload is not None else (None, None)))
        super().execute_job(job, queue)
