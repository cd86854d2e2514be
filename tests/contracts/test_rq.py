"""rq: the Worker methods worker/rq_worker.py overrides, and the private state they use.

``JobWorker`` overrides ``fork_work_horse``, ``kill_horse``, ``execute_job``,
``main_work_horse``, ``perform_job``, ``handle_job_success``, ``cleanup_execution`` and
``handle_job_failure``, reads and writes ``_stopped_job_id``, and overrides ``__init__``'s
defaults, ``get_heartbeat_ttl``, ``subscribe`` (passing RQ's private
``_pubsub_exception_handler``) and ``run_maintenance_tasks``; ``python -m worker`` reads
``_shutdown_requested_date``. What they rely on RQ doing: a stop command sets ``_stopped_job_id``
and calls ``kill_horse()``; ``unsubscribe`` stops the listener thread ``subscribe`` started;
``monitor_work_horse`` sets ``_horse_pid`` back to 0 and leaves the end of a stopped job whose
horse exited cleanly to the worker; ``cleanup_execution`` drops ``self.execution``; the started
registry holds ``<job id>:<execution id>``; a job's status is the ``status`` field of its hash.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import pytest
import redis
from rq import Worker
from rq.command import handle_stop_job_command, send_command
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, StartedJobRegistry

from core.settings import Settings
from tests.contracts.contract import Contract
from tests.support import RedisServer, wait_until
from worker.context import WorkerContext
from worker.fence import RQ_FINAL
from worker.rq_worker import COMMAND_POLL_SECONDS, JobWorker

RQ = Contract("rq")


@pytest.fixture()
def connection(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


@pytest.fixture()
def queue_name() -> str:
    return f"contract-{uuid.uuid4().hex[:8]}"  # the session's Redis is shared: names of this test's own


def _job_worker(connection: redis.Redis, queue_name: str) -> JobWorker:
    with RQ.behaviour("building the project's JobWorker (rq.Worker.__init__ with its keywords)"):
        return JobWorker([queue_name], connection=connection, context=WorkerContext(Settings(), None, connection))


def _job(connection: redis.Redis, queue_name: str) -> Job:
    with RQ.behaviour("Job.create(func, connection=, origin=) then save()"):
        job = Job.create(func=print, connection=connection, origin=queue_name)
        job.save()
        return job


def test_the_names_the_project_uses_from_rq() -> None:
    RQ.names_used("rq")


def test_worker_methods_the_project_overrides_or_calls() -> None:
    for name, expected in [
        ("fork_work_horse", "(self, job, queue)"), ("kill_horse", "(self, sig=…)"),
        ("execute_job", "(self, job, queue)"), ("main_work_horse", "(self, job, queue)"),
        ("perform_job", "(self, job, queue)"),
        ("handle_job_success", "(self, job, queue, started_job_registry)"),
        ("cleanup_execution", "(self, job, pipeline)"),
        ("handle_job_failure", "(self, job, queue, started_job_registry=…, exc_string=…)"),
        ("get_heartbeat_ttl", "(self, job)"), ("subscribe", "(self)"), ("run_maintenance_tasks", "(self)"),
        ("monitor_work_horse", "(self, job, queue)"), ("request_stop", "(self, signum, frame)"),
        ("_pubsub_exception_handler", "(self, exc, pubsub, pubsub_thread)"), ("handle_payload", "(self, message)"),
    ]:
        RQ.signature(Worker, name, expected)
    RQ.accepts(Worker, "__init__", ["queues", "name", "connection", "worker_ttl", "maintenance_interval",
                                    "job_monitoring_interval"])
    RQ.accepts(Worker, "all_keys", ["connection", "queue"])  # service/jobs/queue.py: workers alive per queue
    RQ.accepts(DeferredJobRegistry, "__init__", ["name", "connection", "job_class", "serializer"])
    RQ.accepts(DeferredJobRegistry, "add", ["job", "pipeline"])
    RQ.accepts(Job, "set_status", ["status", "pipeline"])
    RQ.accepts(Job, "get_status", ["refresh"])
    RQ.accepts(Job, "get_meta", ["refresh"])


def test_a_worker_has_the_state_the_project_reads(connection: redis.Redis, queue_name: str) -> None:
    worker = _job_worker(connection, queue_name)
    for name, value in [("_stopped_job_id", None), ("_shutdown_requested_date", None), ("_horse_pid", 0),
                        ("horse_pid", 0), ("execution", None), ("current_job_working_time", 0)]:
        RQ.check(RQ.attribute(worker, name, f"Worker().{name}") == value,
                 f"a new Worker's {name} is {getattr(worker, name)!r}, not {value!r}")
    settings = worker.context.settings
    RQ.check(worker.job_monitoring_interval == settings.job_monitoring_interval,
             "Worker(job_monitoring_interval=) is not kept as job_monitoring_interval")
    RQ.check(worker.worker_ttl == settings.worker_maintenance_interval + 15, "Worker(worker_ttl=) is not worker_ttl")
    for name in ("pubsub_channel_name", "job_class", "serializer", "queues", "connection", "name"):
        RQ.attribute(worker, name, f"Worker().{name}")
    RQ.check(isinstance(RQ.attribute(worker.queues[0], "intermediate_queue_key", "Queue().intermediate_queue_key"),
                        str), "Queue().intermediate_queue_key is not a key")
    job = _job(connection, queue_name)
    for name in ("dependency_ids", "should_retry", "timeout", "meta", "origin", "ended_at"):
        RQ.attribute(job, name, f"Job().{name}")
    RQ.check(callable(RQ.attribute(job, "latest_result", "Job().latest_result")), "Job().latest_result is no method")


def test_a_stop_command_marks_the_job_stopped_and_kills_the_horse(connection: redis.Redis, queue_name: str) -> None:
    worker = Worker([queue_name], connection=connection)
    killed: list[tuple[Any, ...]] = []
    worker.get_current_job_id = lambda pipeline=None: "job-1"  # type: ignore[method-assign]
    worker.kill_horse = lambda *args: killed.append(args)  # type: ignore[method-assign]
    with RQ.behaviour("rq.command.handle_stop_job_command(worker, {'job_id': ...})"):
        handle_stop_job_command(worker, {"job_id": "job-1"})
    RQ.check(worker._stopped_job_id == "job-1", "a stop command no longer sets worker._stopped_job_id")
    RQ.check(killed == [()], f"a stop command called kill_horse{killed} instead of kill_horse() once")


def test_the_command_listener_of_job_worker_hears_commands_and_stops_within_its_poll(
        connection: redis.Redis, queue_name: str) -> None:
    """JobWorker.subscribe replaces RQ's: RQ's commands reach it, and RQ's unsubscribe stops it at once."""
    worker = _job_worker(connection, queue_name)
    killed: list[tuple[Any, ...]] = []
    worker.get_current_job_id = lambda pipeline=None: "job-2"  # type: ignore[method-assign]
    worker.kill_horse = lambda *args: killed.append(args)  # type: ignore[method-assign]
    with RQ.behaviour("JobWorker.subscribe() (pubsub, run_in_thread with RQ's _pubsub_exception_handler)"):
        worker.subscribe()
    try:
        with RQ.behaviour("rq.command.send_command(connection, worker name, 'stop-job', job_id=...)"):
            send_command(connection, worker.name, "stop-job", job_id="job-2")
            wait_until(lambda: bool(killed), 5, "the stop command")
        RQ.check(worker._stopped_job_id == "job-2", "the stop command did not set _stopped_job_id")
    finally:
        started = time.monotonic()
        with RQ.behaviour("Worker.unsubscribe() after JobWorker.subscribe()"):
            worker.unsubscribe()
        took = time.monotonic() - started
        thread = worker.pubsub_thread
    RQ.check(took < COMMAND_POLL_SECONDS + 1.5, f"unsubscribe took {took:.1f} s (the listener polls every "
             f"{COMMAND_POLL_SECONDS} s)")
    thread.join(COMMAND_POLL_SECONDS + 1.5)
    RQ.check(not thread.is_alive(), "the command listener thread is still running after unsubscribe")


def test_unsubscribe_stops_the_listener_thread(connection: redis.Redis, queue_name: str) -> None:
    calls: list[str] = []

    class Recorder:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: calls.append(name)

    worker = Worker([queue_name], connection=connection)
    worker.pubsub, worker.pubsub_thread = Recorder(), Recorder()
    with RQ.behaviour("Worker.unsubscribe() with a listener"):
        worker.unsubscribe()
    RQ.check("stop" in calls, f"Worker.unsubscribe no longer calls pubsub_thread.stop() (it called {calls})")


def test_request_stop_records_when_the_shutdown_was_asked_for(connection: redis.Redis, queue_name: str) -> None:
    worker = Worker([queue_name], connection=connection)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # An idle worker ends its loop by raising (StopRequested): only the recorded date matters here.
        try:
            worker.request_stop(signal.SIGTERM, None)
        except Exception as exc:
            RQ.check(type(exc).__name__ == "StopRequested", f"request_stop raised {type(exc).__name__}: {exc}")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    RQ.check(worker._shutdown_requested_date is not None,
             "Worker.request_stop no longer sets _shutdown_requested_date (python -m worker reads it)")


def test_monitor_work_horse_forgets_the_horse_and_leaves_a_clean_exit_to_the_worker(
        connection: redis.Redis, queue_name: str) -> None:
    """After the horse is reaped, ``_horse_pid`` is 0 (worker/horse.py's guard against signalling a
    reaped pid). A stopped job whose horse exited cleanly gets no failure from RQ and keeps
    ``_stopped_job_id``: JobWorker.execute_job records that end itself."""
    worker = Worker([queue_name], connection=connection)
    job = _job(connection, queue_name)
    failures: list[Any] = []
    worker.handle_job_failure = lambda *args, **kwargs: failures.append(args)  # type: ignore[method-assign]
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # the horse: done at once
    worker._horse_pid = pid
    worker._stopped_job_id = job.id
    with RQ.behaviour("Worker.monitor_work_horse(job, queue) over a horse that exits with 0"):
        worker.monitor_work_horse(job, worker.queues[0])
    RQ.check(worker._horse_pid == 0 and worker.horse_pid == 0,
             f"monitor_work_horse left _horse_pid at {worker._horse_pid} after reaping the horse")
    RQ.check(not failures, "monitor_work_horse now fails a stopped job whose horse exited cleanly")
    RQ.check(worker._stopped_job_id == job.id, "monitor_work_horse cleared _stopped_job_id after a clean exit")


def test_an_execution_in_the_started_registry_and_its_cleanup(connection: redis.Redis, queue_name: str) -> None:
    worker = Worker([queue_name], connection=connection)
    job = _job(connection, queue_name)
    registry = StartedJobRegistry(queue_name, connection=connection)
    with RQ.behaviour("Worker.prepare_execution(job)"):
        execution = worker.prepare_execution(job)
    entries = [raw.decode() for raw in connection.zrange(registry.key, 0, -1)]
    RQ.check(entries == [f"{job.id}:{execution.id}"],
             f"the started registry holds {entries}, not '<job id>:<execution id>' (service/jobs/queue_metrics.py)")
    with RQ.behaviour("Worker.cleanup_execution(job, pipeline=)"), connection.pipeline() as pipeline:
        worker.cleanup_execution(job, pipeline=pipeline)
        # JobWorker.cleanup_execution keeps the execution that RQ drops here (rq/rq#2424)
        RQ.check(worker.execution is None, "cleanup_execution no longer clears worker.execution: "
                 "JobWorker.cleanup_execution's work-around may be obsolete")
        pipeline.execute()
    RQ.check(connection.zcard(registry.key) == 0, "cleanup_execution left the execution in the started registry")


def test_a_job_status_is_the_status_field_of_its_hash(connection: redis.Redis, queue_name: str) -> None:
    # worker/fence.py's Lua scripts read it there, and compare it with these names.
    values = {status.value for status in JobStatus}
    RQ.check(set(RQ_FINAL) <= values, f"JobStatus no longer has {sorted(set(RQ_FINAL) - values)}")
    job = _job(connection, queue_name)
    with RQ.behaviour("Job.set_status(JobStatus.STOPPED)"):
        job.set_status(JobStatus.STOPPED)
    raw = connection.hget(Job.key_for(job.id), "status")
    RQ.check(raw == b"stopped", f"HGET {Job.key_for(job.id)} status is {raw!r} after set_status(STOPPED)")



def test_an_abandoned_job_fails_with_abandoned_job_error_in_its_result(connection: redis.Redis,
                                                                        queue_name: str) -> None:
    # JobWorker.close_abandoned_failures finds the jobs RQ's cleanup failed for good this way.
    worker = Worker([queue_name], connection=connection)
    job = _job(connection, queue_name)
    with RQ.behaviour("StartedJobRegistry.cleanup(timestamp) of an execution whose heartbeat expired"):
        worker.prepare_execution(job)
        StartedJobRegistry(queue_name, connection=connection).cleanup(timestamp=time.time() + 100_000)
        failed = worker.queues[0].failed_job_registry.get_job_ids()
        result = job.latest_result()
    RQ.check(job.id in failed, "an abandoned job with no retry left is not in the queue's failed_job_registry")
    exc_string = getattr(result, "exc_string", None) or ""
    RQ.check("AbandonedJobError" in exc_string, f"an abandoned job's latest result says {exc_string!r}, which does "
             "not name AbandonedJobError")
