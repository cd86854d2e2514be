"""Exactly one execution of a job at a time, and a final status that never changes.

Four lines, from the root cause outwards:

1. The work horse dies with its worker, and the worker signals nothing but its horse
   (``worker.horse``): a SIGKILLed worker used to leave its horse running while another worker
   retried the job, and a late stop command used to SIGKILL the worker's own process group.
2. A fencing lock per job id (``worker.fence``), taken before the job runs and kept alive by
   the horse. A second execution waits for it, bounded by the job's timeout (the holder cannot
   run longer: its own timeout ends it); when the holder ends the job, the waiter does nothing.
   Waiting rather than failing at once matters for the ordinary case of (1): the killed
   horse's lock lives on for one TTL (about the heartbeat grace), and the retry just waits it
   out instead of spending a retry on it. Every visible step checks the lock first.
3. The final status is claimed once (``done_key``): an execution that finds the job final
   when it starts, or loses the claim when it ends, writes no status, result or meta. Stopping
   a horse is a handshake with that claim (``JobFence.revoke``): a horse that claimed its
   job's end is left to record it, and one stopped before its claim can claim nothing, so the
   worker records the end itself, once, whether the signal or the horse's own exit came first.
4. A job runs only once the jobs it depends on have ended. RQ queues a dependent job (the join
   of a sharded scoring job) when its last dependency ends; a second entry of its id in a
   queue (a double enqueue, an operator's requeue) used to run it early, and the join failed
   the whole job over a shard that was still queued. Such an execution now puts the job back
   among its queue's deferred jobs, exactly as RQ left it, and ends without a status: RQ's own
   dependents mechanism still queues it, once, when the last dependency ends, and no worker
   waits on another's work.

Also here: a job's upload is deleted when the job ends for good (not while a retry is to
come), and an unexpected exception becomes a short message in user terms, with the
traceback in the worker log.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

import redis
from redis.exceptions import WatchError
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry
from rq.timeouts import JobTimeoutException
from rq.utils import now

from core.jobs import cancel_key, delete_upload, done_key
from worker.fence import RQ_FINAL, ExecutionFenced, JobFence, new_token, set_current_fence
from worker.horse import die_with_parent, signal_horse
from worker.progress import JobFailed

log = logging.getLogger(__name__)

# RQ kills a horse whose working time passes its job timeout + 60 s; waiting for the lock counts.
MAX_LOCK_WAIT_SECONDS = 50
_RQ_STATUS = {"finished": JobStatus.FINISHED, "failed": JobStatus.FAILED, "canceled": JobStatus.STOPPED}


class LockWaitExpired(Exception):
    """Another execution held the job's lock for longer than the job may run."""


def _doing(job: Job) -> str:
    return "retraining" if job.meta.get("type") == "train" else "scoring"


class ExclusiveWorker(Worker):
    """RQ's forking worker with the three lines above. Subclasses set ``self.context``."""

    context: Any
    _fence: JobFence | None = None
    _parent_pid: int = 0
    _horse_token: str = ""  # the lock token of the current horse, chosen before the fork
    _horse_job: Job | None = None
    _keep_execution: bool = False

    def _new_fence(self, job: Job) -> JobFence:
        settings = self.context.settings
        return JobFence(self.connection, job.id, self.get_heartbeat_ttl(job), settings.job_retention_seconds)

    # ------------------------------------------------------------ the horse's life

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        self._parent_pid = os.getpid()
        self._horse_token, self._horse_job = new_token(), job
        super().fork_work_horse(job, queue)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop the work horse, if this worker has one and its job's end is not claimed yet.

        Called by RQ for a stop command (a cancel), a job past its timeout, and a cold shutdown.
        The lock is revoked first (see line 3 above); a pid that is not this worker's child
        (0, 1, a reaped horse's) is never signalled: the command is logged and does nothing.
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

    def execute_job(self, job: Job, queue: Queue) -> None:
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

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        die_with_parent(self._parent_pid)  # first thing in the child, before any work
        super().main_work_horse(job, queue)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        """In the horse: take the job's lock (or find the job over), run it, release the lock."""
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
            if self._defer_until_dependencies_end(job, queue):
                return True
            fence.start_heartbeat()
            self._fence = fence
            set_current_fence(fence)
            return super().perform_job(job, queue)
        finally:
            set_current_fence(None)
            self._fence = None
            fence.release()

    def _defer_until_dependencies_end(self, job: Job, queue: Queue) -> bool:
        """When a job this one depends on has not ended (queued, started, deferred, scheduled, or
        failed with a retry to come), put this one back among the deferred jobs and drop this
        execution: True. False when it may run now (no dependency pending, or it is being canceled:
        the job then ends itself as canceled)."""
        dependencies = job.dependency_ids  # RQ's set of them; empty for most jobs
        if not dependencies:
            return False
        keys = [Job.key_for(dependency) for dependency in dependencies]
        with self.connection.pipeline() as pipeline:
            while True:
                try:
                    # A dependency that ends meanwhile writes its status to a watched key, and the
                    # transaction starts over: either RQ queued this job already (it then runs
                    # here, and the queued entry finds it final), or RQ queues it after this
                    # transaction, from the deferred registry it is back in.
                    pipeline.watch(cancel_key(job.id), *keys)
                    statuses = [pipeline.hget(key, "status") for key in keys]
                    pending = [dependency for dependency, raw in zip(dependencies, statuses, strict=True)
                               if raw is not None and raw.decode() not in RQ_FINAL]  # an expired one has ended
                    if not pending or pipeline.exists(cancel_key(job.id)):
                        pipeline.reset()
                        return False
                    pipeline.multi()
                    job.set_status(JobStatus.DEFERRED, pipeline=pipeline)
                    DeferredJobRegistry(job.origin, connection=self.connection, job_class=self.job_class,
                                        serializer=self.serializer).add(job, pipeline=pipeline)
                    pipeline.execute()
                    break
                except WatchError:
                    continue
        log.info("job %s waits for %d of its %d dependencies (%s); back among the deferred jobs, RQ queues it "
                 "when they end", job.id, len(pending), len(dependencies), ", ".join(sorted(pending)[:3]))
        self._drop_execution(job, queue)
        return True

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

    # ------------------------------------------------------------ the job's end

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any) -> None:
        fence = self._fence
        if fence is not None and not fence.claim_final("finished"):
            log.warning("job %s: finished here, but the job is owned or ended elsewhere; nothing recorded", job.id)
            self._drop_execution(job)
            return
        self._job_ended(job)  # before the status: a client that reads 'finished' finds the upload gone
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
        # in the main process (horse killed or stopped) there is none.
        error = sys.exc_info()[1]
        fence = self._fence or self._new_fence(job)  # token None in the main process: status check only
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
            self._describe_failure(job, error)
        if final:  # claimed: it never runs again, so its upload goes before a client can read the status
            self._job_ended(job)
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)

    def _describe_failure(self, job: Job, error: BaseException | None) -> None:
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

    def close_abandoned_failures(self) -> None:
        """Finish what RQ's abandoned-job cleanup leaves undone when it fails a job for good (no
        retry left): it writes the status without passing through this class, so the final
        status is marked here, the user gets a message in place of RQ's internal one, and the
        upload is deleted. Run by maintenance; a failed job already marked is skipped."""
        retention = self.context.settings.job_retention_seconds
        for queue in self.queues:
            for job_id in queue.failed_job_registry.get_job_ids():
                if not self.connection.set(done_key(job_id), "failed", nx=True, ex=retention):
                    continue
                job = queue.fetch_job(job_id)
                if job is None:
                    continue
                result = job.latest_result()
                if "AbandonedJobError" in (getattr(result, "exc_string", None) or "") and not job.meta.get("error"):
                    job.meta["error"] = (f"the worker running the job stopped before it ended (killed, or out of "
                                         f"memory) and no retry was left; see the worker logs, job id {job.id}")
                    job.save_meta()
                self._job_ended(job)

    def _job_ended(self, job: Job) -> None:
        """The job will not run again: its upload is no longer needed (the result stays)."""
        try:
            if delete_upload(self.context.settings.jobs_dir, job.id):
                log.info("job %s ended; its upload was deleted", job.id)
        except (ValueError, OSError) as exc:
            log.warning("job %s: could not delete its upload (%s)", job.id, exc)
