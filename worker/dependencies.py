"""A job runs only once the jobs it depends on have ended.

RQ queues a dependent job (the join of a sharded scoring job) when its last dependency ends; a
second entry of its id in a queue (a double enqueue, an operator's requeue) used to run it early,
and the join failed the whole job over a shard that was still queued. Such an execution puts the
job back among its queue's deferred jobs, exactly as RQ left it, and ends without a status: RQ's
own dependents mechanism still queues it, once, when the last dependency ends, and no worker
waits on another's work.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.exceptions import WatchError
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry

from core.jobs import cancel_key
from worker.fence import RQ_FINAL

log = logging.getLogger(__name__)


def defer_until_dependencies_end(connection: redis.Redis, job: Job, job_class: Any, serializer: Any) -> bool:
    """When a job ``job`` depends on has not ended (queued, started, deferred, scheduled, or failed
    with a retry to come), put ``job`` back among its queue's deferred jobs: True, and the caller
    drops this execution. False when it may run now (no dependency pending, or it is being
    canceled: the job then ends itself as canceled)."""
    dependencies = job.dependency_ids  # RQ's set of them; empty for most jobs
    if not dependencies:
        return False
    keys = [Job.key_for(dependency) for dependency in dependencies]
    with connection.pipeline() as pipeline:
        while True:
            try:
                # A dependency that ends meanwhile writes its status to a watched key, and the
                # transaction starts over: either RQ queued this job already (it then runs here,
                # and the queued entry finds it final), or RQ queues it after this transaction,
                # from the deferred registry it is back in.
                pipeline.watch(cancel_key(job.id), *keys)
                statuses = [pipeline.hget(key, "status") for key in keys]
                pending = [dependency for dependency, raw in zip(dependencies, statuses, strict=True)
                           if raw is not None and raw.decode() not in RQ_FINAL]  # an expired one has ended
                if not pending or pipeline.exists(cancel_key(job.id)):
                    pipeline.reset()
                    return False
                pipeline.multi()
                job.set_status(JobStatus.DEFERRED, pipeline=pipeline)
                DeferredJobRegistry(job.origin, connection=connection, job_class=job_class,
                                    serializer=serializer).add(job, pipeline=pipeline)
                pipeline.execute()
                break
            except WatchError:
                continue
    log.info("job %s waits for %d of its %d dependencies (%s); back among the deferred jobs, RQ queues it "
             "when they end", job.id, len(pending), len(dependencies), ", ".join(sorted(pending)[:3]))
    return True
