"""RQ's forking ``Worker`` adapted to this service: the only module that overrides RQ's methods.

Each override hands over to the module beside it that holds the logic; porting to another RQ
major means this file (and ``tests/contracts/``, which pins every RQ name it uses).

- One execution at a time, and a final status that never changes (docs/jobs.md, "Exactly one
  execution at a time"): the horse dies with the worker and only the horse is ever signalled
  (``worker.horse``); it takes the job's fencing lock before running it and every visible step
  checks it (``worker.fence``); the final status is claimed once, and stopping a horse is a
  handshake with that claim (``JobFence.revoke``); a job runs only once the jobs it depends on
  have ended (``worker.dependencies``); an ended job's upload goes and a failure is said in user
  terms (``worker.endings``).
- Heartbeats: RQ marks a running job abandoned only after ``job_monitoring_interval + 60`` s
  without one; ``get_heartbeat_ttl`` replaces that minute with a configured grace, so a job whose
  worker was SIGKILLed is retried by another worker within seconds.
- Maintenance: an idle worker also deletes expired job directories and closes abandoned failures.
- Models: before forking the horse, the worker resolves the model the job's payload names, so the
  horse inherits it loaded and no job loads weights the process already holds.
- Stopping: the command listener polls every ``COMMAND_POLL_SECONDS``, so a warm shutdown never
  waits for it (RQ polls every 60 s, and redis-py 8 joins that thread without a timeout when the
  worker unsubscribes: an idle worker took up to a minute to exit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import Any

import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.utils import now

from core.jobs import cancel_key, expire_job_dirs
from core.registry import RegistryError
from worker.context import WorkerContext
from worker.dependencies import defer_until_dependencies_end
from worker.endings import LockWaitExpired, close_abandoned_failures, describe_failure, job_ended
from worker.fence import RQ_FINAL, ExecutionFenced, JobFence, new_token, set_current_fence
from worker.horse import die_with_parent, signal_horse
from worker.payloads import payload_of
from worker.progress import JobFailed

log = logging.getLogger(__name__)

# How long the command listener waits for a message before looking at its stop flag: a bound on
# how long a stopping worker waits for it. Two wake-ups a second of an idle thread cost nothing.
COMMAND_POLL_SECONDS = 0.5
# RQ kills a horse whose working time passes its job timeout + 60 s; waiting for the lock counts.
MAX_LOCK_WAIT_SECONDS = 50
_RQ_STATUS = {"finished": JobStatus.FINISHED, "failed": JobStatus.FAILED, "canceled": JobStatus.STOPPED}


class JobWorker(Worker):
    _fence: JobFence | None = None  # in the horse: this execution's lock
    _parent_pid: int = 0
    _horse_token: str = ""  # the lock token of the current horse, chosen before the fork
    _horse_job: Job | None = None
    _keep_execution: bool = False

    def __init__(self, *args: Any, context: WorkerContext, **kwargs: Any) -> None:
        settings = context.settings
        kwargs.setdefault("job_monitoring_interval", settings.job_monitoring_interval)
        kwargs.setdefault("maintenance_interval", settings.worker_maintenance_interval)
        # An idle worker only runs maintenance between blocking dequeues of worker_ttl - 15 s.
        kwargs.setdefault("worker_ttl", settings.worker_maintenance_interval + 15)
        super().__init__(*args, **kwargs)
        self.context = context

    def _new_fence(self, job: Job) -> JobFence:
        retention = self.context.settings.job_retention_seconds
        return JobFence(self.connection, job.id, self.get_heartbeat_ttl(job), retention)

    # ------------------------------------------------------------ the worker's own life

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
        close_abandoned_failures(self.connection, self.queues, settings.jobs_dir, settings.job_retention_seconds)

    # ------------------------------------------------------------ the horse's life (in the worker)

    def execute_job(self, job: Job, queue: Queue) -> None:
        # The model the job's payload names: a scoring job's version or alias, production for
        # retraining (which compares against it) and for a job this release cannot read. A bad
        # version is not an error here: the job itself reports it under its own id.
        payload = payload_of(job)
        with contextlib.suppress(RegistryError):
            self.context.predictor.get(*(payload.model_target() if payload is not None else (None, None)))
        super().execute_job(job, queue)
        self._horse_job = None
        if self._stopped_job_id == job.id:
            # Stopped, yet the horse exited on its own: the stop revoked its lock while it ended the
            # job, so it recorded nothing, and RQ handles only a killed horse's end. Record it here.
            if self._new_fence(job).is_final():
                self._stopped_job_id = None
            else:
                log.warning("job %s was stopped while its work horse ended it; recording its end", job.id)
                job.ended_at = job.ended_at or now()
                self.handle_job_failure(job, queue, exc_string="Job stopped by user, work-horse ended.")

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        self._parent_pid = os.getpid()
        self._horse_token, self._horse_job = new_token(), job
        super().fork_work_horse(job, queue)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop the work horse, if this worker has one and its job's end is not claimed yet.

        Called by RQ for a stop command (a cancel), a job past its timeout, and a cold shutdown.
        The lock is revoked first; a pid that is not this worker's child (0, 1, a reaped horse's) is
        never signalled: the command is logged and does nothing.
        """
        pid, job = self.horse_pid, self._horse_job
        if job is None or pid <= 1:
            log.info("worker %s: no work horse to signal (horse pid %s); nothing sent", self.name, pid)
            return
        try:
            if not self._new_fence(job).revoke(self._horse_token):
                log.info("job %s is ending: its work horse (pid %s) records the end it claimed; nothing sent",
                         job.id, pid)
                return
        except redis.RedisError as exc:  # the horse cannot claim anything either while Redis is away
            log.warning("job %s: could not revoke its lock (%s); stopping the horse anyway", job.id, exc)
        if signal_horse(pid, sig):
            log.info("worker %s: sent %s to work horse pid %s (job %s)", self.name, signal.Signals(sig).name, pid,
                     job.id)
        else:
            log.info("worker %s: no work horse to signal (pid %s is not a child of this worker); nothing sent",
                     self.name, pid)

    # ------------------------------------------------------------ in the horse

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        die_with_parent(self._parent_pid)  # first thing in the child, before any work
        super().main_work_horse(job, queue)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        """Take the job's lock (or find the job over), run it, release the lock."""
        fence = self._new_fence(job)
        timeout = job.timeout if job.timeout and job.timeout > 0 else self.context.settings.job_timeout_seconds
        # The holder is normally a horse killed with its worker, whose lock expires within one TTL.
        # RQ's monitor counts this wait as working time and kills a horse at timeout + 60 s, so the
        # wait stays under that minute: the job's own timeout then still applies in full.
        wait = min(timeout, fence.ttl_ms / 1000 + 5, MAX_LOCK_WAIT_SECONDS)
        acquired = fence.acquire(wait_seconds=wait, token=self._horse_token)
        if acquired is None:
            self._skip_ended_job(job, queue, fence)
            return True
        if not acquired:
            job.ended_at = now()
            try:
                raise LockWaitExpired(f"another execution still held the job's lock after {wait:.0f} s")
            except LockWaitExpired as exc:  # handled like a failure of the job: retried while retries remain
                log.error("job %s: %s; this attempt fails", job.id, exc)
                self.handle_job_failure(job, queue, exc_string=str(exc))
            return False
        try:
            if defer_until_dependencies_end(self.connection, job, self.job_class, self.serializer):
                self._drop_execution(job, queue)
                return True
            fence.start_heartbeat()
            self._fence = fence
            set_current_fence(fence)
            return super().perform_job(job, queue)
        finally:
            set_current_fence(None)
            self._fence = None
            fence.release()

    def _skip_ended_job(self, job: Job, queue: Queue, fence: JobFence) -> None:
        raw = job.get_status(refresh=True)
        rq_status = raw.value if isinstance(raw, JobStatus) else str(raw)
        final = fence.final_status() or ("canceled" if rq_status in ("stopped", "canceled") else rq_status)
        log.warning("job %s is already %s; this execution does nothing", job.id, final)
        with self.connection.pipeline() as pipeline:
            if len(self.queues) == 1:  # RQ moved it to the intermediate queue when dequeuing it
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            if rq_status not in RQ_FINAL and final in _RQ_STATUS:
                # A stale retry (an abandoned-job cleanup racing the end of the job) requeued it.
                job.set_status(_RQ_STATUS[final], pipeline=pipeline)
            self.cleanup_execution(job, pipeline=pipeline)
            pipeline.execute()

    def _drop_execution(self, job: Job, queue: Queue | None = None) -> None:
        """Forget this execution without touching the job's status (another one owns the job, or it
        waits for its dependencies); ``queue``: it has not started, so also take it off RQ's
        intermediate queue, as the start would have."""
        with self.connection.pipeline() as pipeline:
            if queue is not None and len(self.queues) == 1:
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            self.cleanup_execution(job, pipeline=pipeline)
            pipeline.execute()

    # ------------------------------------------------------------ the job's end (horse or worker)

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any) -> None:
        fence = self._fence
        if fence is not None and not fence.claim_final("finished"):
            log.warning("job %s: finished here, but the job is owned or ended elsewhere; nothing recorded", job.id)
            self._drop_execution(job)
            return
        job_ended(self.context.settings.jobs_dir, job)  # before the status: 'finished' means the upload is gone
        self._keep_execution = True
        try:
            super().handle_job_success(job, queue, started_job_registry)
        finally:
            self._keep_execution = False
            self.execution = None

    def cleanup_execution(self, job: Job, pipeline: Any) -> None:
        # RQ ends a successful job in one transaction that it starts over when a watched key changes
        # (its dependents check watches every sibling dependency, e.g. the other shards, whose
        # heartbeats write their keys each second). RQ's cleanup_execution queues the removal from
        # the started registry and clears self.execution at once, so a second attempt queued no
        # removal: the finished job stayed there, expired, and was "retried". Keep the execution
        # until handle_job_success is done, so every attempt queues its removal. (rq/rq#2424; the
        # upstream fix, rq/rq#2466, is not in the 2.x releases this project pins.)
        execution = self.execution
        super().cleanup_execution(job, pipeline=pipeline)
        if self._keep_execution:
            self.execution = execution

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None,
                           exc_string: str = "") -> None:
        # In the horse this runs inside RQ's ``except`` block, so sys.exc_info() is the job's error;
        # in the worker (horse killed or stopped) there is none.
        error = sys.exc_info()[1]
        fence = self._fence or self._new_fence(job)  # token None in the worker: status check only
        stopped = self._stopped_job_id == job.id
        final = stopped or not job.should_retry
        status = "canceled" if stopped or self.connection.exists(cancel_key(job.id)) else "failed"
        if isinstance(error, ExecutionFenced) or not fence.holds() or (final and not fence.claim_final(status)):
            log.warning("job %s: this execution failed, but the job is owned or ended elsewhere; its status "
                        "is left alone", job.id)
            if stopped:
                self._stopped_job_id = None
            self._drop_execution(job)
            return
        if final and not stopped and not isinstance(error, JobFailed):
            describe_failure(job, error)
        if final:  # claimed: it never runs again, so its upload goes before a client can read the status
            job_ended(self.context.settings.jobs_dir, job)
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)
