"""Cancel (queued and running), a worker SIGKILLed mid-job, Redis going away and coming back, Redis full."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import requests
from rq.job import Job

from core.registry import ModelRegistry
from tests.conftest import API_KEY
from tests.jobs.conftest import kill_worker_and_horse, save_npz, write_kaggle_csv
from tests.support import RedisServer, wait_until

AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Many epochs on a small set: slow enough to act on mid-run, each epoch well under a second.
LONG = {"hidden": [32], "epochs": 400, "dropout": 0.0, "augment_shift": 0, "early_stopping": 0, "batch_size": 64}


def test_cancel_queued_job_never_runs(make_stack, mnist, tmp_path: Path):
    stack = make_stack(workers=0)
    job_id = stack.submit_csv(write_kaggle_csv(tmp_path / "t.csv", mnist.X[:50])).json()["job_id"]
    assert stack.status(job_id)["status"] == "queued"
    response = requests.delete(f"{stack.url}/v1/jobs/{job_id}", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "canceled", response.text
    stack.start_worker()
    # A second job submitted after it finishes proves the worker ran past the canceled one.
    later = stack.submit_csv(write_kaggle_csv(tmp_path / "u.csv", mnist.X[:50])).json()["job_id"]
    assert stack.wait(later)["status"] == "finished"
    assert stack.status(job_id)["status"] == "canceled"
    assert not (stack.jobs_dir / job_id / "result.csv").exists()
    again = requests.delete(f"{stack.url}/v1/jobs/{job_id}", timeout=5)
    assert again.status_code == 409 and "already canceled" in again.json()["error"]


def test_cancel_running_retrain_publishes_nothing(make_stack, mnist):
    stack = make_stack()
    save_npz(stack.data_dir / "digits.npz", mnist, 1000)
    job_id = stack.submit_train({"dataset": "digits.npz", "config": LONG}).json()["job_id"]
    stack.wait(job_id, ("started",), until=lambda s: s.get("epoch", 0) >= 2)
    assert requests.delete(f"{stack.url}/v1/jobs/{job_id}", timeout=5).status_code == 401  # training needs the key
    response = requests.delete(f"{stack.url}/v1/jobs/{job_id}", headers=AUTH, timeout=5)
    assert response.status_code == 202 and response.json()["status"] == "canceling", response.text
    status = stack.wait(job_id, timeout=30)
    assert status["status"] == "canceled", status
    assert status["epoch"] < LONG["epochs"]
    assert ModelRegistry(stack.models_dir).versions("mnist") == [1, 2]
    assert not [p for p in (stack.models_dir / "mnist").iterdir() if p.name.startswith(".tmp")]
    # The worker is free again afterwards.
    stack.submit_train({"dataset": "digits.npz", "config": {**LONG, "epochs": 1}, "promote": "never"})
    assert stack.wait(stack.status(job_id)["job_id"])["status"] == "canceled"


def test_worker_killed_mid_retrain_job_completes_exactly_once(make_stack, mnist):
    stack = make_stack(workers=0)
    save_npz(stack.data_dir / "digits.npz", mnist, 4000)
    first = stack.start_worker("training")
    # Wide enough that 12 epochs take seconds, not the ~60 ms in which a quiet machine finished the
    # whole job before the 0.1 s poll could see it running.
    job_id = stack.submit_train({"dataset": "digits.npz", "promote": "never",
                                 "config": {**LONG, "hidden": [256], "epochs": 12}}).json()["job_id"]
    stack.wait(job_id, ("started",), until=lambda s: s.get("epoch", 0) >= 2)
    assert Job.fetch(job_id, connection=stack.redis()).worker_name == first
    kill_worker_and_horse(stack.workers[first])
    second = stack.start_worker("training")  # its maintenance finds the abandoned job and retries it

    status = stack.wait(job_id, timeout=60)
    assert status["status"] == "finished", status
    assert Job.fetch(job_id, connection=stack.redis()).worker_name == second
    assert status["retries_left"] == 1  # one retry spent on the killed attempt
    registry = ModelRegistry(stack.models_dir)
    made_by_job = [v for v in registry.versions("mnist") if registry.manifest("mnist", v).get("job_id") == job_id]
    assert made_by_job == [status["produced_version"]] == [3]  # exactly one version, no partial one
    assert not [p for p in (stack.models_dir / "mnist").iterdir() if p.name.startswith(".tmp")]
    assert registry.manifest("mnist", 3)["best_epoch"] == 12


def _predict(url: str, pixels: np.ndarray) -> requests.Response:
    return requests.post(url + "/v1/models/mnist:predict", json={"instances": pixels.tolist()}, timeout=5)


def test_redis_down_jobs_503_predictions_work_both_recover(make_stack, mnist, redis_server: RedisServer,
                                                          tmp_path: Path):
    stack = make_stack()
    csv_path = write_kaggle_csv(tmp_path / "t.csv", mnist.X[:20])
    assert stack.wait(stack.submit_csv(csv_path).json()["job_id"])["status"] == "finished"
    redis_server.stop()
    try:
        started = time.monotonic()
        response = stack.submit_csv(csv_path)
        assert response.status_code == 503, response.text
        assert "Redis is not answering" in response.json()["error"]
        assert time.monotonic() - started < 10  # quick, not a hung request (generous bound for a busy box)
        assert requests.get(stack.url + "/v1/jobs", headers=AUTH, timeout=10).status_code == 503
        predicted = _predict(stack.url, mnist.X[:3])
        assert predicted.status_code == 200, predicted.text
        ready = requests.get(stack.url + "/readyz", timeout=10).json()
        assert ready["status"] == "ready" and ready["redis"] is False
    finally:
        redis_server.start()
    # Redis is back (empty: the test server keeps no data). Submission and the worker recover.
    wait_until(lambda: stack.submit_csv(csv_path).status_code == 202, 20, "job submission to recover")
    job_id = stack.submit_csv(csv_path).json()["job_id"]
    status = stack.wait(job_id, timeout=60)
    assert status["status"] == "finished" and status["rows_scored"] == 20, status
    assert _predict(stack.url, mnist.X[:3]).status_code == 200


def test_full_redis_jobs_503_nothing_half_submitted_predictions_work(make_stack, mnist, own_redis: RedisServer,
                                                                    tmp_path: Path):
    stack = make_stack(workers=0, redis_url=own_redis.url)
    save_npz(stack.data_dir / "digits.npz", mnist, 100)
    csv_path = write_kaggle_csv(tmp_path / "t.csv", mnist.X[:20])
    before = stack.submit_csv(csv_path).json()["job_id"]
    client = stack.redis()
    # maxmemory below what is in use, noeviction: every command that could grow memory is refused.
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        with open(csv_path, "rb") as fh:
            multipart = requests.post(stack.url + "/v1/jobs/score", files={"file": ("t.csv", fh)}, timeout=10)
        for response in (stack.submit_csv(csv_path), multipart, stack.submit_train({"dataset": "digits.npz"}),
                         requests.delete(f"{stack.url}/v1/jobs/{before}", timeout=10)):
            assert response.status_code == 503, response.text
            assert "Redis refused the command (OutOfMemoryError" in response.json()["error"], response.text
        # Nothing half-submitted: no upload, no queued job, no listed job besides the first one.
        assert [p.name for p in stack.jobs_dir.iterdir()] == [before]
        assert [raw.decode() for raw in client.lrange("rq:queue:scoring", 0, -1)] == [before]
        assert client.llen("rq:queue:training") == 0
        assert client.zrange("mnist:jobs:recent", 0, -1) == [before.encode()]
        assert stack.status(before)["status"] == "queued"  # plain reads still work
        # RQ reads many jobs in a MULTI transaction, which a full Redis refuses as a whole: a clear 503.
        listed = requests.get(stack.url + "/v1/jobs", headers=AUTH, timeout=10)
        assert listed.status_code == 503 and "OutOfMemoryError" in listed.json()["error"], listed.text
        assert _predict(stack.url, mnist.X[:3]).status_code == 200
    finally:
        client.config_set("maxmemory", "0")
    # Room again: submissions work and a worker runs both jobs.
    after = stack.submit_csv(csv_path)
    assert after.status_code == 202, after.text
    stack.start_worker("scoring")
    for job_id in (before, after.json()["job_id"]):
        assert stack.wait(job_id)["status"] == "finished"


def test_retrain_on_too_few_rows_fails_at_once_without_retries(make_stack, mnist):
    """Two rows with dev_fraction 0.8 leave no training row: a clear final failure, not a crash retried."""
    stack = make_stack()
    save_npz(stack.data_dir / "two.npz", mnist, 2)
    response = stack.submit_train({"dataset": "two.npz", "dev_fraction": 0.8, "config": {"epochs": 1}})
    assert response.status_code == 202, response.text
    status = stack.wait(response.json()["job_id"])
    assert status["status"] == "failed" and status["retries_left"] == 0, status
    assert "2 row(s) cannot be split into training and dev rows with dev fraction 0.8" in status["error"]
    assert str(stack.data_dir) not in status["error"]
    assert ModelRegistry(stack.models_dir).versions("mnist") == [1, 2]


def test_upload_deleted_when_the_job_ends_result_kept(make_stack, mnist, tmp_path: Path):
    """finished, failed on bad data, finished retrain from an upload: the input goes, the result stays."""
    stack = make_stack()
    good = stack.submit_csv(write_kaggle_csv(tmp_path / "good.csv", mnist.X[:30])).json()["job_id"]
    bad_path = write_kaggle_csv(tmp_path / "bad.csv", mnist.X[:30])
    lines = bad_path.read_text().splitlines()
    lines[3] = "abc" + lines[3][1:]
    bad_path.write_text("\n".join(lines) + "\n")
    bad = stack.submit_csv(bad_path).json()["job_id"]
    save_npz(tmp_path / "digits.npz", mnist, 300)
    with open(tmp_path / "digits.npz", "rb") as fh:
        trained = requests.post(stack.url + "/v1/jobs/train", headers=AUTH, timeout=30,
                                files={"file": ("digits.npz", fh)},
                                data={"config": '{"epochs": 1, "hidden": [16]}', "promote": "never"}).json()["job_id"]

    assert stack.wait(good)["status"] == "finished"
    assert sorted(p.name for p in (stack.jobs_dir / good).iterdir()) == ["result.csv"]
    failed = stack.wait(bad)
    assert failed["status"] == "failed" and "line 4, column 1 (pixel0)" in failed["error"], failed
    assert not (stack.jobs_dir / bad).exists()  # no result, no upload: nothing left
    assert stack.wait(trained, timeout=120)["status"] == "finished"
    assert not (stack.jobs_dir / trained).exists()
    assert requests.get(f"{stack.url}/v1/jobs/{good}/result", timeout=10).status_code == 200


def test_unexpected_error_says_what_failed_without_server_paths(make_stack, mnist, tmp_path: Path):
    """An exception the job does not expect (here: the upload is a directory) is retried, then
    fails with a message in user terms; the details stay in the worker log."""
    stack = make_stack(workers=0)
    job_id = stack.submit_csv(write_kaggle_csv(tmp_path / "t.csv", mnist.X[:20])).json()["job_id"]
    upload = stack.jobs_dir / job_id / "upload.csv"
    upload.unlink()
    (tmp_path / "a-directory").mkdir()
    upload.symlink_to(tmp_path / "a-directory")
    worker = stack.start_worker("scoring")
    status = stack.wait(job_id)
    assert status["status"] == "failed" and status["retries_left"] == 0, status
    # The same error on the last attempt as on the first: the upload was kept while retries remained.
    assert status["error"] == f"internal error while scoring; see the worker log, job id {job_id}", status
    assert str(tmp_path) not in str(status) and "Errno" not in status["error"]
    assert "IsADirectoryError" in stack.worker_log(worker)  # the details, for the operator
    assert not upload.is_symlink()  # the job has ended: its upload is gone


def test_abandoned_job_without_retry_left_fails_in_user_terms_and_drops_its_upload(make_stack, mnist,
                                                                                    tmp_path: Path):
    """RQ's abandoned-job cleanup fails a job for good without the job's own code: maintenance
    then gives it a message in user terms (not RQ's 'AbandonedJobError') and deletes its upload."""
    stack = make_stack(workers=0, JOB_RETRIES="0")
    first = stack.start_worker("scoring")
    job_id = stack.submit_csv(write_kaggle_csv(tmp_path / "t.csv", np.tile(mnist.X, (5, 1)))).json()["job_id"]
    stack.wait(job_id, ("started",), until=lambda s: s.get("rows_scored", 0) >= 1000)
    kill_worker_and_horse(stack.workers[first])
    stack.start_worker("scoring")
    status = stack.wait(job_id, timeout=60, until=lambda s: "stopped before it ended" in (s["error"] or ""))
    assert status["status"] == "failed" and "AbandonedJobError" not in status["error"], status
    assert status["error"].endswith(f"see the worker logs, job id {job_id}")
    wait_until(lambda: not (stack.jobs_dir / job_id / "upload.csv").exists(), 30, "the upload to be deleted")
