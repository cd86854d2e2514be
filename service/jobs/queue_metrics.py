"""The job queues in ``/metrics``: queue depth, jobs and shards in flight, workers, read from Redis.

These are facts about Redis, not about one API process, so they are read at scrape time (two
pipelined round trips) rather than counted in the multiprocess files: every API process would
report the same numbers. When Redis does not answer, ``mnist_jobs_redis_up`` says 0 and the
rest is left out; the scrape itself never fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from rq import Queue
from rq.job import Job
from rq.registry import StartedJobRegistry

from core.jobs import QUEUES, ShardJob
from service.jobs.queue import workers_alive
from service.state import get_state


class JobQueueCollector(Collector):
    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("mnist_jobs_redis_up", "Whether Redis answered this scrape (1) or not (0)")
        try:
            families = self._read()
        except redis.exceptions.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> list[GaugeMetricFamily]:
        depth = GaugeMetricFamily("mnist_jobs_queue_depth", "Jobs waiting in a queue", labels=["queue"])
        running = GaugeMetricFamily("mnist_jobs_started", "Jobs being run by a worker", labels=["queue"])
        workers = GaugeMetricFamily("mnist_jobs_workers", "Workers alive (RQ's registry), by queue they listen to",
                                    labels=["queue"])
        shards = GaugeMetricFamily("mnist_jobs_shards_in_flight", "Shards of sharded scoring jobs being scored")
        total = GaugeMetricFamily("mnist_jobs_workers_total", "Workers alive (RQ's registry), as /readyz counts them")
        with self.connection.pipeline(transaction=False) as pipe:
            for name in QUEUES:
                pipe.llen(Queue(name, connection=self.connection).key)
                pipe.zrange(StartedJobRegistry(name, connection=self.connection).key, 0, -1)
            replies = pipe.execute()
        alive = workers_alive(self.connection)
        started_ids: list[str] = []
        for index, name in enumerate(QUEUES):
            length, entries = replies[2 * index: 2 * index + 2]
            # RQ 2 keeps one entry per execution ("<job id>:<execution id>") in the started registry
            ids = {raw.decode().split(":")[0] for raw in entries}
            depth.add_metric([name], length)
            running.add_metric([name], len(ids))
            workers.add_metric([name], alive["queues"][name])
            started_ids += sorted(ids)
        total.add_metric([], alive["alive"])
        with self.connection.pipeline(transaction=False) as pipe:
            for job_id in started_ids:
                pipe.hget(Job.key_for(job_id), "description")
            descriptions = pipe.execute()
        prefix = f"{ShardJob.kind} ".encode()
        shards.add_metric([], sum(1 for text in descriptions if text and text.startswith(prefix)))
        return [depth, running, shards, workers, total]


def exposition() -> bytes:
    """The queue metrics in Prometheus text format, to append to the process metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobQueueCollector(get_state().redis))
    return generate_latest(registry)
