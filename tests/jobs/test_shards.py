"""Sharded scoring: one user job over shards that several real workers take, joined in row order.

The reference for "identical" is always the unsharded job (SCORING_SHARD_BYTES=0) or the same
model scoring the same rows in this process, never a stored figure.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import requests
from rq.job import Job

from core.datasets import PIXEL_COLUMNS
from core.jobs import done_key
from core.registry import ModelRegistry
from tests.jobs.conftest import FINAL, Stack, StatusWatch, kill_worker_and_horse, write_kaggle_csv
from tests.support import wait_until
from worker.scoring import format_rows, result_header

SHARD_BYTES = "400000"  # about 200 rows of MNIST digits per shard


def _result(stack: Stack, job_id: str) -> bytes:
    response = requests.get(f"{stack.url}/v1/jobs/{job_id}/result", timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def _submit(stack: Stack, path: Path, **params: str) -> str:
    response = stack.submit_csv(path, **params)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def _shard_jobs(stack: Stack, job_id: str) -> list[Job]:
    parent = Job.fetch(job_id, connection=stack.redis())
    return [Job.fetch(shard_id, connection=stack.redis()) for shard_id in parent.meta["shards"]]


def _expected(models_dir: Path, pixels: np.ndarray, probabilities: bool = False) -> bytes:
    model = ModelRegistry(models_dir).load("mnist")
    labels, probs = model.predict(pixels.astype(np.float32))
    return (result_header(probabilities) + format_rows(1, labels, probs if probabilities else None)).encode()


def _repeat_csv(path: Path, pixels: np.ndarray, times: int) -> Path:
    block = io.BytesIO()
    np.savetxt(block, pixels.astype(np.int64), fmt="%d", delimiter=",")
    with open(path, "wb") as fh:
        fh.write((",".join(PIXEL_COLUMNS) + "\n").encode())
        for _ in range(times):
            fh.write(block.getvalue())
    return path


def test_sharded_result_is_byte_identical_to_the_unsharded_job(make_stack, mnist, tmp_path: Path):
    path = write_kaggle_csv(tmp_path / "test.csv", mnist.X[:2500])
    sharded = make_stack(workers=2, SCORING_SHARD_BYTES=SHARD_BYTES, SCORING_CHUNK_ROWS="64")
    whole = make_stack(workers=1, SCORING_SHARD_BYTES="0")
    for params in ({}, {"probabilities": "true"}):
        job_a, job_b = _submit(sharded, path, **params), _submit(whole, path, **params)
        status = sharded.wait(job_a, timeout=120)
        assert status["status"] == "finished", status
        assert status["shards"]["total"] == len(_shard_jobs(sharded, job_a)) > 5
        assert status["rows_scored"] == 2500 and status["progress"] == 1.0
        assert whole.wait(job_b, timeout=120)["status"] == "finished"
        assert "shards" not in whole.status(job_b)
        got, want = _result(sharded, job_a), _result(whole, job_b)
        if not params:
            assert got == want  # the Kaggle submission, byte for byte
        else:
            # float32 matrix products round differently with the batch's size (already between two
            # SCORING_CHUNK_ROWS settings of the unsharded job), so p0..p9 may differ in the 6th
            # decimal; ImageId and Label are the same bytes
            a, b = (np.loadtxt(io.BytesIO(text), delimiter=",", skiprows=1) for text in (got, want))
            assert got.splitlines()[0] == want.splitlines()[0]
            assert (a[:, :2] == b[:, :2]).all() and np.abs(a[:, 2:] - b[:, 2:]).max() <= 1.01e-6
    # both workers took shards: the job really ran on more than one worker
    assert len({shard.worker_name for shard in _shard_jobs(sharded, job_a)}) == 2
    # the parts are gone once joined; the upload is gone once the job ended
    assert sorted(p.name for p in (sharded.jobs_dir / job_a).iterdir()) == ["result.csv"]


def test_small_upload_stays_one_job(make_stack, mnist, tmp_path: Path):
    stack = make_stack(workers=1, SCORING_SHARD_BYTES=SHARD_BYTES)
    path = write_kaggle_csv(tmp_path / "small.csv", mnist.X[:50])
    job_id = _submit(stack, path)
    assert stack.wait(job_id)["status"] == "finished"
    assert "shards" not in Job.fetch(job_id, connection=stack.redis()).meta
    assert _result(stack, job_id) == _expected(stack.models_dir, mnist.X[:50])


def test_bad_row_is_named_by_its_line_in_the_original_file(make_stack, mnist, tmp_path: Path):
    path = write_kaggle_csv(tmp_path / "bad.csv", mnist.X[:2000])
    lines = path.read_text().splitlines(keepends=True)
    bad_line = 1700  # 1-based file line, deep in a later shard
    cells = lines[bad_line - 1].split(",")
    cells[5] = "x"
    lines[bad_line - 1] = ",".join(cells)
    path.write_text("".join(lines))
    sharded = make_stack(workers=2, SCORING_SHARD_BYTES=SHARD_BYTES)
    whole = make_stack(workers=1, SCORING_SHARD_BYTES="0")
    job_a, job_b = _submit(sharded, path), _submit(whole, path)
    failed = sharded.wait(job_a, timeout=120)
    assert failed["status"] == "failed", failed
    assert f"line {bad_line}, column 6 (pixel5): 'x' is not a number" in failed["error"], failed
    assert failed["error"] == whole.wait(job_b, timeout=120)["error"]
    # the shard with the bad row failed at once (no retry of bad data); the others finished
    statuses = [shard.get_status() for shard in _shard_jobs(sharded, job_a)]
    assert statuses.count("failed") == 1 and statuses.count("finished") == len(statuses) - 1, statuses


def test_cancel_reaches_every_shard(make_stack, mnist, tmp_path: Path):
    path = write_kaggle_csv(tmp_path / "slow.csv", mnist.X[:1200])
    # Tiny chunks: each shard takes seconds, so the cancel lands while they run or wait.
    stack = make_stack(workers=1, SCORING_SHARD_BYTES=SHARD_BYTES, SCORING_CHUNK_ROWS="2")
    job_id = _submit(stack, path)
    stack.wait(job_id, statuses=("started",), until=lambda s: s["shards"]["running"] == 1)
    response = requests.delete(f"{stack.url}/v1/jobs/{job_id}", timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "canceled", response.text
    assert stack.wait(job_id)["status"] == "canceled"

    def all_shards_ended() -> bool:
        return all(shard.get_status() in ("canceled", "stopped", "failed") for shard in _shard_jobs(stack, job_id))

    wait_until(all_shards_ended, 30, "every shard to end canceled")
    client = stack.redis()
    assert client.llen("rq:queue:scoring") == 0
    assert not (stack.jobs_dir / job_id).exists()


def test_killed_worker_mid_shard_retries_that_shard_alone(make_stack, mnist, tmp_path: Path):
    path = write_kaggle_csv(tmp_path / "kill.csv", mnist.X[:1200])
    stack = make_stack(workers=2, SCORING_SHARD_BYTES=SHARD_BYTES, SCORING_CHUNK_ROWS="4")
    job_id = _submit(stack, path)
    victim: dict[str, Job] = {}

    def a_shard_half_done() -> bool:
        for shard in _shard_jobs(stack, job_id):
            if shard.get_status() == "started" and shard.meta.get("progress", 0) > 0.2:
                victim["shard"] = shard
                return True
        return False

    wait_until(a_shard_half_done, 120, "a shard to be part-way through")
    shard = victim["shard"]
    worker = next(name for name in stack.workers if shard.worker_name and name in shard.worker_name)
    kill_worker_and_horse(stack.workers[worker])
    stack.start_worker()  # the machine's replacement; the other worker also takes shards meanwhile
    status = stack.wait(job_id, timeout=240)
    assert status["status"] == "finished", status
    assert _result(stack, job_id) == _expected(stack.models_dir, mnist.X[:1200])
    client = stack.redis()
    shards = _shard_jobs(stack, job_id)
    retried = [s.id for s in shards if s.retries_left != int(stack.env["JOB_RETRIES"])]
    logs = "".join(stack.worker_log(name) for name in stack.workers).splitlines()
    why = "\n".join(line for line in logs if any(other in line for other in set(retried) - {shard.id}))
    assert retried == [shard.id], f"only the shard whose worker was killed runs again; the others' log:\n{why}"
    assert all(client.get(done_key(s.id)) == b"finished" for s in shards)


def test_duplicate_entry_of_the_join_waits_for_its_shards(make_stack, mnist, tmp_path: Path):
    """A duplicate queue entry of the user's job id (a double enqueue, an operator requeue) is taken
    while its shards are still queued: that execution puts the join back among the deferred jobs and
    ends, and RQ starts the join once, when the last shard ends. One worker does it all."""
    path = write_kaggle_csv(tmp_path / "dup.csv", mnist.X[:1200])
    # Small chunks: seconds per shard, so the second duplicate lands while shards still wait.
    stack = make_stack(workers=0, SCORING_SHARD_BYTES=SHARD_BYTES, SCORING_CHUNK_ROWS="4")
    whole = make_stack(workers=1, SCORING_SHARD_BYTES="0")
    job_id, reference = _submit(stack, path), _submit(whole, path)
    client = stack.redis()
    client.lpush("rq:queue:scoring", job_id)  # at the head: taken before any of its shards
    watch = StatusWatch(stack, job_id)
    worker = stack.start_worker()
    # a second duplicate once some shards have finished and others wait
    stack.wait(job_id, statuses=("started", *FINAL), timeout=120,
               until=lambda s: s["status"] in FINAL or s["shards"]["finished"] >= 2)
    client.lpush("rq:queue:scoring", job_id)
    status = stack.wait(job_id, timeout=120)
    wait_until(lambda: client.llen("rq:queue:scoring") == 0, 30, "the queue to drain")
    time.sleep(1)
    statuses = watch.stop()
    log = stack.worker_log(worker)
    observed = f"statuses {statuses}, final {status}, log:\n{log[-3000:]}"

    assert status["status"] == "finished" and status["rows_scored"] == 1200, observed
    assert "failed" not in statuses and not watch.left_a_final_state(), observed
    assert whole.wait(reference, timeout=120)["status"] == "finished"
    assert _result(stack, job_id) == _result(whole, reference)
    assert log.count(f"job {job_id} waits for") == 2, observed  # both duplicates deferred, neither failed
    assert log.count(f"Job OK ({job_id})") == 1, observed  # the join ran once
    assert client.get(done_key(job_id)) == b"finished"
    assert client.zcard("rq:deferred:scoring") == 0, "nothing left deferred"
    assert stack.status(job_id)["status"] == "finished"


def test_status_adds_up_the_shards_while_they_run(make_stack, mnist, tmp_path: Path):
    path = write_kaggle_csv(tmp_path / "progress.csv", mnist.X[:1200])
    stack = make_stack(workers=1, SCORING_SHARD_BYTES=SHARD_BYTES, SCORING_CHUNK_ROWS="4")
    job_id = _submit(stack, path)
    running = stack.wait(job_id, statuses=("started",), until=lambda s: s["shards"]["finished"] >= 1)
    assert 0 < running["progress"] < 1 and running["rows_scored"] > 0 and running["started_at"]
    assert running["shards"]["total"] == running["shards"]["finished"] + running["shards"]["running"] \
        + running["shards"]["queued"] + running["shards"]["failed"]
    metrics = _metrics(stack)
    assert metrics["mnist_jobs_redis_up"] == 1 and metrics["mnist_jobs_workers_total"] == 1
    assert metrics['mnist_jobs_workers{queue="scoring"}'] == 1
    # One worker: one shard at a time (none for a moment between two shards, so it is awaited).
    in_flight: list[float] = []

    def one_in_flight() -> bool:
        in_flight.append(_metrics(stack)["mnist_jobs_shards_in_flight"])
        return in_flight[-1] == 1

    wait_until(one_in_flight, 10, "a shard in flight")
    assert max(in_flight) == 1, in_flight
    # the shards still queued (the join waits aside, deferred); one may have started since the status
    assert 1 <= metrics['mnist_jobs_queue_depth{queue="scoring"}'] <= running["shards"]["queued"]
    requests.delete(f"{stack.url}/v1/jobs/{job_id}", timeout=10)
    stack.wait(job_id)
    wait_until(lambda: _metrics(stack)["mnist_jobs_shards_in_flight"] == 0, 30, "no shard in flight")
    assert _metrics(stack)['mnist_jobs_queue_depth{queue="scoring"}'] == 0


def _metrics(stack: Stack) -> dict[str, float]:
    text = requests.get(f"{stack.url}/metrics", timeout=10).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("mnist_jobs_")}
