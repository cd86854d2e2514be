"""What an upload may cost the server: the JOBS_DIR disk budget (507), a full disk, the key rule
for jobs (REQUIRE_KEY_FOR_JOBS), uploads of canceled jobs, and no hosts or paths in public answers.

Issue 8 points 4 and 6. Real gunicorn, real redis-server, real workers where a job must run.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from service.jobs.budget import RESERVATION_MAX_AGE, usage
from tests.conftest import API_KEY
from tests.jobs.conftest import Stack, save_npz, write_kaggle_csv
from tests.support import RedisServer, wait_until

AUTH = {"Authorization": f"Bearer {API_KEY}"}
BOUNDARY = "mnist-serve-test-boundary"


def _chunks(data: bytes, size: int = 16384) -> Iterator[bytes]:
    """A generator body: requests sends it chunked, without a Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _multipart(data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _submissions(url: str, data: bytes) -> dict[str, requests.Response]:
    """The four ways to send a scoring upload: raw or multipart, with a Content-Length or chunked."""
    score = url + "/v1/jobs/score"
    csv, form = {"Content-Type": "text/csv"}, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return {
        "raw, Content-Length": requests.post(score, data=data, headers=csv, timeout=30),
        "raw, chunked": requests.post(score, data=_chunks(data), headers=csv, timeout=30),
        "multipart, Content-Length": requests.post(score, data=_multipart(data), headers=form, timeout=30),
        "multipart, chunked": requests.post(score, data=_chunks(_multipart(data)), headers=form, timeout=30),
    }


def _job_ids_in_redis(stack: Stack) -> set[str]:
    client = stack.redis()
    recent = {raw.decode() for raw in client.zrange("mnist:jobs:recent", 0, -1)}
    records = {raw.decode().rsplit(":", 1)[1] for raw in client.keys("rq:job:*")}
    queued = {raw.decode() for raw in client.lrange("rq:queue:scoring", 0, -1)}
    return recent | records | queued


def _job_dirs(stack: Stack) -> list[str]:
    return sorted(p.name for p in stack.jobs_dir.iterdir()) if stack.jobs_dir.exists() else []


def test_upload_over_the_disk_budget_is_507_and_leaves_nothing(make_stack, mnist, tmp_path: Path):
    data = write_kaggle_csv(tmp_path / "t.csv", mnist.X[:60]).read_bytes()
    budget = int(len(data) * 1.5)  # room for one upload, not two
    stack = make_stack(workers=0, JOBS_DISK_BUDGET_BYTES=str(budget))
    first = stack.submit_csv(tmp_path / "t.csv")
    assert first.status_code == 202, first.text
    first_id = first.json()["job_id"]

    for way, response in _submissions(stack.url, data).items():
        assert response.status_code == 507, (way, response.status_code, response.text)
        error = response.json()["error"]
        # How much is used (the first upload) and the budget, by name; no server path.
        assert f"{len(data)} bytes of the {budget}-byte budget (JOBS_DISK_BUDGET_BYTES)" in error, (way, error)
        assert str(stack.jobs_dir) not in error
    # Nothing half-written, nothing recorded: only the first job, on disk and in Redis.
    assert _job_dirs(stack) == [first_id]
    assert sorted(p.name for p in (stack.jobs_dir / first_id).iterdir()) == ["upload.csv"]
    assert _job_ids_in_redis(stack) == {first_id}

    # An upload larger than the whole budget is refused on its own, before a byte is stored.
    alone = requests.post(stack.url + "/v1/jobs/score", data=data * 2, headers={"Content-Type": "text/csv"},
                          timeout=30)
    assert alone.status_code == 507 and f"this upload is {2 * len(data)} bytes" in alone.json()["error"]

    # Canceling the queued job frees its upload, and with it the room for the next one.
    assert requests.delete(f"{stack.url}/v1/jobs/{first_id}", timeout=10).status_code == 200
    again = stack.submit_csv(tmp_path / "t.csv")
    assert again.status_code == 202, again.text
    assert _job_dirs(stack) == [again.json()["job_id"]]


def test_a_declared_upload_reserves_its_size(make_stack, mnist, tmp_path: Path):
    """Two uploads that fit the budget one at a time, sent together: the second is refused while the
    first is still arriving, because the first reserved its whole Content-Length at admission (its
    partial file alone would have left room)."""
    data = write_kaggle_csv(tmp_path / "t.csv", mnist.X[:60]).read_bytes()
    stack = make_stack(workers=0, JOBS_DISK_BUDGET_BYTES=str(int(len(data) * 1.5)))
    # The first upload by hand: headers with its Content-Length and half the body now, the rest later.
    first = http.client.HTTPConnection("127.0.0.1", stack.api.port, timeout=60)
    try:
        first.putrequest("POST", "/v1/jobs/score")
        first.putheader("Content-Type", "text/csv")
        first.putheader("Content-Length", str(len(data)))
        first.endheaders()
        first.send(data[: len(data) // 2])
        wait_until(lambda: any(stack.jobs_dir.glob("*/.tmp-*")), 20, "the first upload to be under way")
        second = requests.post(stack.url + "/v1/jobs/score", data=data, headers={"Content-Type": "text/csv"},
                               timeout=30)
        assert second.status_code == 507, second.text
        assert f"{len(data)} bytes of the" in second.json()["error"]  # the whole reservation counted
        first.send(data[len(data) // 2:])
        response = first.getresponse()
        body = json.loads(response.read())
        assert response.status == 202, body
    finally:
        first.close()
    # Once in place, the upload counts for itself and the marker is gone.
    job_id = body["job_id"]
    assert sorted(p.name for p in (stack.jobs_dir / job_id).iterdir()) == ["upload.csv"]


def test_usage_counts_files_or_a_live_reservation(tmp_path: Path):
    job = tmp_path / ("a" * 32)
    (job / "upload").mkdir(parents=True)
    (job / "upload" / "train.csv").write_bytes(b"x" * 300)
    (tmp_path / ("b" * 32)).mkdir()
    (tmp_path / ("b" * 32) / "result.csv").write_bytes(b"y" * 50)
    assert usage(tmp_path) == 350
    assert usage(tmp_path, exclude="b" * 32) == 300
    marker = job / ".reserved-1000"
    marker.touch()
    assert usage(tmp_path) == 1050  # the reservation is larger than what has arrived
    (job / "upload" / "more.csv").write_bytes(b"z" * 2000)
    assert usage(tmp_path) == 2350  # what has arrived is larger than the reservation
    (job / "upload" / "more.csv").unlink()
    stale = time.time() - RESERVATION_MAX_AGE - 60
    os.utime(marker, (stale, stale))
    assert usage(tmp_path) == 350  # a marker left by a killed process stops counting
    assert usage(tmp_path / "missing") == 0


def test_training_uploads_count_against_the_budget(make_stack, mnist, tmp_path: Path):
    """Retraining uploads land in JOBS_DIR too: the same budget, the same 507."""
    npz = save_npz(tmp_path / "d.npz", mnist, 300).read_bytes()
    stack = make_stack(workers=0, JOBS_DISK_BUDGET_BYTES=str(len(npz) // 2))
    response = requests.post(stack.url + "/v1/jobs/train", data=npz,
                             headers={**AUTH, "Content-Type": "application/x-npz"}, timeout=30)
    assert response.status_code == 507 and "JOBS_DISK_BUDGET_BYTES" in response.json()["error"], response.text
    response = requests.post(stack.url + "/v1/jobs/train", files={"file": ("d.npz", npz)}, headers=AUTH, timeout=30)
    assert response.status_code == 507, response.text
    assert _job_dirs(stack) == [] and _job_ids_in_redis(stack) == set()


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a disk that really fills up (ENOSPC). Mounting needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    target = tmp_path / "tiny-disk"
    target.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(target)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_disk_is_507_and_leaves_nothing(tiny_disk: Path, make_stack, mnist, tmp_path: Path):
    # The budget (10 GiB by default) is far from reached: the disk itself runs out.
    stack = make_stack(workers=0, JOBS_DIR=str(tiny_disk / "jobs"))
    small = write_kaggle_csv(tmp_path / "small.csv", mnist.X[:20]).read_bytes()
    big = write_kaggle_csv(tmp_path / "big.csv", mnist.X[:1500]).read_bytes()
    assert len(big) > 2 * 1024 * 1024
    for way, response in _submissions(stack.url, big).items():
        assert response.status_code == 507, (way, response.status_code, response.text)
        error = response.json()["error"]
        assert "no room left" in error and str(tiny_disk) not in error, (way, error)
        assert _job_dirs(stack) == [], way  # the partial upload and the job's directory are gone
    assert _job_ids_in_redis(stack) == set()
    # The space came back: a small upload is accepted.
    response = stack.submit_csv(tmp_path / "small.csv")
    assert response.status_code == 202, response.text
    assert len(small) < 100_000


def test_require_key_for_jobs(make_stack, mnist, tmp_path: Path):
    csv_path = write_kaggle_csv(tmp_path / "t.csv", mnist.X[:20])
    stack = make_stack(workers=0, REQUIRE_KEY_FOR_JOBS="true")
    score = stack.url + "/v1/jobs/score"
    for headers, code in (({}, 401), ({"Authorization": "Bearer wrong"}, 403)):
        with open(csv_path, "rb") as fh:
            response = requests.post(score, data=fh, headers={**headers, "Content-Type": "text/csv"}, timeout=30)
        assert response.status_code == code, response.text
    assert _job_dirs(stack) == [] and _job_ids_in_redis(stack) == set()

    with open(csv_path, "rb") as fh:
        response = requests.post(score, data=fh, headers={**AUTH, "Content-Type": "text/csv"}, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    # The id alone opens nothing: status, result and cancel need the key as well.
    for method, path in (("GET", ""), ("GET", "/result"), ("DELETE", "")):
        response = requests.request(method, f"{stack.url}/v1/jobs/{job_id}{path}", timeout=10)
        assert response.status_code == 401, (method, path, response.text)
        assert job_id not in response.text
    status = requests.get(f"{stack.url}/v1/jobs/{job_id}", headers=AUTH, timeout=10)
    assert status.status_code == 200, status.text
    # Predictions stay open (REQUIRE_KEY_FOR_ALL is off).
    predicted = requests.post(stack.url + "/v1/models/mnist:predict", json={"instances": [[0] * 784]}, timeout=10)
    assert predicted.status_code == 200, predicted.text

    # Asked for, but the server has no key: submissions are disabled rather than open.
    keyless = make_stack(workers=0, REQUIRE_KEY_FOR_JOBS="true", API_KEY="")
    refused = keyless.submit_csv(csv_path)
    assert refused.status_code == 403 and "no API_KEY" in refused.json()["error"], refused.text


def test_jobs_open_by_default(make_stack, mnist, tmp_path: Path):
    stack = make_stack(workers=0)
    response = stack.submit_csv(write_kaggle_csv(tmp_path / "t.csv", mnist.X[:20]))
    assert response.status_code == 202, response.text
    assert requests.get(stack.url + response.json()["status_url"], timeout=10).status_code == 200


def test_cancel_of_a_queued_job_deletes_its_upload(make_stack, mnist, tmp_path: Path):
    stack = make_stack(workers=0)
    score_id = stack.submit_csv(write_kaggle_csv(tmp_path / "t.csv", mnist.X[:20])).json()["job_id"]
    with open(save_npz(tmp_path / "up.npz", mnist, 200), "rb") as fh:
        upload_id = requests.post(stack.url + "/v1/jobs/train", files={"file": ("up.npz", fh)}, headers=AUTH,
                                  timeout=30).json()["job_id"]
    save_npz(stack.data_dir / "named.npz", mnist, 200)
    named_id = stack.submit_train({"dataset": "named.npz"}).json()["job_id"]
    assert (stack.jobs_dir / score_id / "upload.csv").exists() and (stack.jobs_dir / upload_id / "upload").is_dir()

    for job_id, headers in ((score_id, {}), (upload_id, AUTH), (named_id, AUTH)):
        response = requests.delete(f"{stack.url}/v1/jobs/{job_id}", headers=headers, timeout=10)
        assert response.status_code == 200 and response.json()["status"] == "canceled", response.text
        assert not (stack.jobs_dir / job_id).exists(), job_id
    # A dataset named from DATA_DIR is the operator's, not the job's: it stays.
    assert (stack.data_dir / "named.npz").exists()
    assert stack.status(score_id)["status"] == "canceled"


def test_readyz_with_redis_down_names_no_host(make_stack, own_redis: RedisServer):
    stack = make_stack(workers=0, redis_url=own_redis.url)
    assert requests.get(stack.url + "/readyz", timeout=10).json()["redis"] is True
    own_redis.stop()
    response = requests.get(stack.url + "/readyz", timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["redis"] is False and body["redis_error"] == "unreachable", body
    assert str(own_redis.port) not in response.text and "127.0.0.1" not in response.text, response.text
    # The details are for the operator, in the log.
    assert str(own_redis.port) in stack.api.log_path.read_text()


def test_job_status_shows_no_server_paths(make_stack, mnist, tmp_path: Path):
    """A job that crashes on something unexpected (here its result name is taken by a directory)
    says what failed in user terms; the details stay in the worker log."""
    stack = make_stack(workers=0, JOB_RETRIES="0")
    job_id = stack.submit_csv(write_kaggle_csv(tmp_path / "t.csv", mnist.X[:20])).json()["job_id"]
    queued = requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10)
    assert str(stack.jobs_dir) not in queued.text and "upload.csv" not in queued.text, queued.text
    (stack.jobs_dir / job_id / "result.csv").mkdir()
    stack.start_worker()
    status = stack.wait(job_id)
    assert status["status"] == "failed", status
    assert status["error"] == f"internal error while scoring; see the worker log, job id {job_id}", status
    text = requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).text
    assert str(tmp_path) not in text, text
    listed = requests.get(f"{stack.url}/v1/jobs", headers=AUTH, timeout=10).text
    assert str(tmp_path) not in listed, listed
