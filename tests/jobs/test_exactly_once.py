"""A job runs exactly once at a time, publishes exactly once, and its final status never changes.

The failure these tests reproduce: the worker's main process is SIGKILLed while its work horse
keeps running. The job's heartbeat expires, another worker's maintenance retries it, and two
executions of one job id overlap (two versions published for one retrain; a scoring retry
deleting the live run's temporary result, status going failed -> finished). Only the main
process is killed here, the horse is left to whatever the worker arranged for it.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import redis
from rq import Queue
from rq.job import Job

from core.datasets import PIXEL_COLUMNS
from core.jobs import done_key, new_job_id
from core.registry import ModelRegistry
from core.settings import Settings
from tests.jobs.conftest import Stack, StatusWatch, horse_pids, save_npz, write_kaggle_csv
from tests.support import wait_until
from worker.fence import ExecutionFenced, JobFence
from worker.rq_worker import JobWorker

SCORING_ROWS = 300_000
# Slow enough to kill mid-run and to let the retry start while the first horse would still run:
# one run lasts well over the ORPHAN_WINDOW_S an orphan is given to die (about 15 s here, 0.1 s an
# epoch; a 784-32 net on 800 rows had finished 100 epochs in about a second on a quiet machine),
# and the retry runs it whole again, so each epoch more is paid twice.
LONG_TRAIN = {"hidden": [256], "epochs": 150, "dropout": 0.0, "augment_shift": 0, "early_stopping": 0, "batch_size": 64}
# PR_SET_PDEATHSIG kills an orphaned horse within milliseconds: one still running after this long
# outlived its worker.
ORPHAN_WINDOW_S = 5


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory, mnist) -> Path:
    """300,000 real MNIST digits (the 10,000 test digits repeated) in the Kaggle test.csv layout."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    block = io.BytesIO()
    np.savetxt(block, mnist.X.astype(np.int64), fmt="%d", delimiter=",")
    body = block.getvalue()
    with open(path, "wb") as fh:
        fh.write((",".join(PIXEL_COLUMNS) + "\n").encode())
        for _ in range(SCORING_ROWS // len(mnist.X)):
            fh.write(body)
    return path


def _queue_idle(stack: Stack, queue: str) -> bool:
    client = stack.redis()
    return client.llen(f"rq:queue:{queue}") == 0 and client.zcard(f"rq:wip:{queue}") == 0


@contextlib.contextmanager
def kill_main_process_only(stack: Stack, worker: str) -> Iterator[dict[str, Any]]:
    """SIGKILL the worker's main process, not its horse; yields what happened to the horse.

    On exit, any horse still running is killed (by its pid) so a failing test leaves nothing behind.
    """
    proc = stack.workers[worker]
    horses = horse_pids(proc.pid)
    assert horses, "the worker has no work horse to orphan"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    seen: dict[str, Any] = {"horses": horses}
    try:
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not any(_alive(pid) for pid in horses), ORPHAN_WINDOW_S, "the orphaned horse to die")
        seen["orphans_after_window"] = [pid for pid in horses if _alive(pid)]
        yield seen
    finally:
        for pid in horses:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _settle(stack: Stack, job_id: str, queue: str, seen: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Wait for the final status, then for every execution of the job to be over (an orphan horse
    included), then a little longer, so that a late overwrite of the status would be caught."""
    final = stack.wait(job_id, timeout=timeout)
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not any(_alive(pid) for pid in seen["horses"]) and _queue_idle(stack, queue), timeout,
                   "every execution of the job to end")
    time.sleep(4)  # > heartbeat grace + maintenance interval: a late retry would have started by now
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: _queue_idle(stack, queue), timeout, "the queue to be idle again")
    return final


def test_killed_worker_main_process_scoring_runs_once(make_stack, big_csv: Path):
    stack = make_stack(workers=0)
    first = stack.start_worker("scoring")
    response = stack.submit_csv(big_csv)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    watch = StatusWatch(stack, job_id)
    stack.wait(job_id, ("started",), timeout=120, until=lambda s: s.get("rows_scored", 0) >= 20_000)
    stack.start_worker("scoring")  # alive to find the abandoned job and retry it
    with kill_main_process_only(stack, first) as seen:
        status = _settle(stack, job_id, "scoring", seen, timeout=300)
    statuses = watch.stop()
    directory = stack.jobs_dir / job_id
    files = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
    observed = f"statuses {statuses}, final {status}, files {files}, horse(s) {seen}"

    assert seen["orphans_after_window"] == [], f"the orphaned horse kept running: {observed}"
    assert not watch.left_a_final_state(), f"the status left a final state: {observed}"
    assert status["status"] == "finished" and status["rows_scored"] == SCORING_ROWS, observed
    assert files == ["result.csv"], f"one result, no temporary, no upload left: {observed}"
    with open(directory / "result.csv", "rb") as fh:
        lines = sum(1 for _ in fh)
        fh.seek(-64, os.SEEK_END)
        last = fh.read().splitlines()[-1].decode()
    assert lines == SCORING_ROWS + 1 and last.startswith(f"{SCORING_ROWS},"), (lines, last)


def test_killed_worker_main_process_retrain_publishes_one_version(make_stack, mnist):
    stack = make_stack(workers=0)
    save_npz(stack.data_dir / "digits.npz", mnist, 4000)
    first = stack.start_worker("training")
    job_id = stack.submit_train({"dataset": "digits.npz", "promote": "never", "config": LONG_TRAIN}).json()["job_id"]
    watch = StatusWatch(stack, job_id)
    stack.wait(job_id, ("started",), until=lambda s: s.get("epoch", 0) >= 2)
    stack.start_worker("training")
    with kill_main_process_only(stack, first) as seen:
        status = _settle(stack, job_id, "training", seen, timeout=300)
    statuses = watch.stop()
    registry = ModelRegistry(stack.models_dir)
    made_by_job = [v for v in registry.versions("mnist") if registry.manifest("mnist", v).get("job_id") == job_id]
    observed = f"statuses {statuses}, final {status}, versions of the job {made_by_job}, horse(s) {seen}"

    assert seen["orphans_after_window"] == [], f"the orphaned horse kept running: {observed}"
    assert not watch.left_a_final_state(), f"the status left a final state: {observed}"
    assert status["status"] == "finished", observed
    assert made_by_job == [status["produced_version"]], f"exactly one version for the job: {observed}"
    assert not [p for p in (stack.models_dir / "mnist").iterdir() if p.name.startswith(".tmp")]


def test_two_executions_of_one_job_never_overlap(make_stack, mnist, tmp_path: Path):
    """The second line of defence, without any killed process: the same job id dequeued by two
    workers at once (a duplicate queue entry). The second execution waits for the first's lock,
    finds the job finished, and neither runs it again nor touches its status or files."""
    stack = make_stack(workers=0)
    csv_path = write_kaggle_csv(tmp_path / "t.csv", np.tile(mnist.X, (5, 1)))
    job_id = stack.submit_csv(csv_path).json()["job_id"]
    stack.redis().rpush("rq:queue:scoring", job_id)  # the same job queued twice
    watch = StatusWatch(stack, job_id)
    workers = [stack.start_worker("scoring"), stack.start_worker("scoring")]
    status = stack.wait(job_id, timeout=120)
    wait_until(lambda: _queue_idle(stack, "scoring"), 60, "both executions to end")
    time.sleep(2)
    statuses = watch.stop()
    directory = stack.jobs_dir / job_id
    files = sorted(p.name for p in directory.iterdir())
    logs = "".join(stack.worker_log(name) for name in workers)
    observed = f"statuses {statuses}, final {status}, files {files}"

    assert status["status"] == "finished" and status["rows_scored"] == 50_000, observed
    assert not watch.left_a_final_state(), observed
    assert files == ["result.csv"], observed
    assert logs.count(f"job {job_id} is already finished; this execution does nothing") == 1, logs[-4000:]
    assert len((directory / "result.csv").read_text().splitlines()) == 50_001


def test_fence_one_holder_fenced_writes_final_status_once(redis_server):
    """The lock's rules on a real Redis: one holder; only the holder extends, releases, writes meta
    and claims the final status; a waiter finds the job ended; a lost lock publishes nothing."""
    client = redis.Redis.from_url(redis_server.url)
    job = Job.create(print, id=new_job_id(), connection=client, meta={"stage": "queued"})
    job.save()
    first = JobFence(client, job.id, ttl_seconds=30, done_ttl_seconds=60)
    second = JobFence(client, job.id, ttl_seconds=30, done_ttl_seconds=60)
    assert first.try_acquire() and not second.try_acquire()
    assert second.acquire(wait_seconds=0.3) is False  # held: the bounded wait runs out
    first.check()
    job.meta["stage"] = "scoring"
    first.save_meta(job)
    second.token = "not-the-holder"
    with pytest.raises(ExecutionFenced):
        second.save_meta(job)
    second.release()  # not the holder: no effect
    assert first.owner() == first.token
    assert first.claim_final("finished")
    assert not first.claim_final("failed")  # once only
    with pytest.raises(ExecutionFenced):
        first.check()  # the job has ended: nothing more is published, even by the holder
    first.release()
    assert first.owner() is None
    assert JobFence(client, job.id, 30, 60).acquire(wait_seconds=5) is None  # ended: nothing to run
    assert client.get(done_key(job.id)) == b"finished"
    assert Job.fetch(job.id, connection=client).meta["stage"] == "scoring"


def test_success_after_a_watch_conflict_leaves_nothing_in_the_started_registry(redis_server, tmp_path: Path):
    """RQ's end of a successful job is one transaction, started over when a watched key changes
    meanwhile: a shard's dependents check watches every sibling shard, and a running sibling's
    heartbeat writes its key each second. Every attempt must remove the execution from the started
    registry; one that did not left the finished shard there to expire, and RQ's cleanup then
    retried a job that had finished (caught on a loaded machine as a second shard retried)."""
    client = redis.Redis.from_url(redis_server.url)
    queue = Queue(f"watch-{new_job_id()[:8]}", connection=client)
    done, sibling = queue.enqueue(print, job_id=new_job_id()), queue.enqueue(print, job_id=new_job_id())
    join = queue.enqueue(print, job_id=new_job_id(), depends_on=[done, sibling])
    settings = Settings(jobs_dir=tmp_path, models_dir=tmp_path / "models", redis_url=redis_server.url)
    worker = JobWorker([queue], connection=client, context=SimpleNamespace(settings=settings),
                       name=f"w-{new_job_id()[:8]}")
    worker.prepare_execution(done)
    worker.prepare_job_execution(done)
    registry = queue.started_job_registry
    assert registry.get_job_ids() == [done.id]

    attempts = []
    enqueue_dependents = queue.enqueue_dependents

    def sibling_beats_during_the_first_attempt(job: Job, **kwargs: Any) -> None:
        enqueue_dependents(job, **kwargs)  # watches the join's dependencies, the sibling included
        attempts.append(job.id)
        if len(attempts) == 1:
            redis.Redis.from_url(redis_server.url).hset(sibling.key, "last_heartbeat", "now")

    queue.enqueue_dependents = sibling_beats_during_the_first_attempt  # type: ignore[method-assign]
    done.ended_at = datetime.now(UTC)
    worker.handle_job_success(done, queue, registry)

    assert len(attempts) == 2, "the injected write did not make RQ start the transaction over"
    assert client.zrange(registry.key, 0, -1) == [], "the finished job is still in the started registry"
    assert Job.fetch(done.id, connection=client).get_status() == "finished"
    assert Job.fetch(join.id, connection=client).get_status() == "deferred"  # its sibling has not ended
