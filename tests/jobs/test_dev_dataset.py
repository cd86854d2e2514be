"""Retraining with a dev dataset of its own (``dev_dataset``): train on every row of ``dataset``,
evaluate on the other one. Request checks in process (what is queued, what is refused), then one
real job through gunicorn, Redis and an rq worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask.testing import FlaskClient
from rq.job import Job

from core.jobs import TrainJob
from core.registry import ModelRegistry
from core.settings import Settings
from service.app import create_app
from tests.conftest import API_KEY
from tests.jobs.conftest import _databases, save_npz
from tests.support import RedisServer
from tests.test_datasets import write_idx_pair

SMALL = {"hidden": [32], "epochs": 3, "dropout": 0.0, "augment_shift": 0, "early_stopping": 0, "seed": 3}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture()
def submit(tmp_path: Path, models_dir: Path, redis_server: RedisServer, mnist
           ) -> Callable[..., tuple[int, dict[str, Any]]]:
    """POST /v1/jobs/train in process, DATA_DIR holding digits.npz and an IDX folder ``fashion/`` with both
    splits; returns (status, JSON body), and for a 202 the queued job's keyword arguments under 'queued'."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    save_npz(data_dir / "digits.npz", mnist, 300)
    write_idx_pair(data_dir / "fashion", mnist.X[:200], mnist.y[:200], gz=True, prefix="train")
    write_idx_pair(data_dir / "fashion", mnist.X[200:250], mnist.y[200:250], gz=True, prefix="t10k")
    (tmp_path / "outside.npz").write_bytes(b"PK")
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{next(_databases)}"
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    client: FlaskClient = create_app(Settings(models_dir=models_dir, redis_url=redis_url, api_key=API_KEY,
                                              jobs_dir=tmp_path / "jobs", data_dir=data_dir)).test_client()

    def post(body: dict[str, Any] | None = None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = client.post("/v1/jobs/train", json=body, headers=AUTH, **kwargs)
        answer = dict(response.json)
        if response.status_code == 202:
            answer["queued"] = Job.fetch(answer["job_id"], connection=connection).kwargs
        return response.status_code, answer

    return post


def test_dev_dataset_is_resolved_in_data_dir_and_queued(submit, tmp_path: Path):
    status, answer = submit({"dataset": "fashion", "dev_dataset": "fashion/t10k-images-idx3-ubyte.gz",
                             "config": SMALL})
    assert status == 202, answer
    queued = answer["queued"]
    data_dir = (tmp_path / "data").resolve()
    assert queued["data"] == str(data_dir / "fashion")
    assert queued["dev_data"] == str(data_dir / "fashion" / "t10k-images-idx3-ubyte.gz")
    assert TrainJob.model_validate(queued).dev_data == queued["dev_data"]


def test_dev_dataset_takes_precedence_over_dev_fraction(submit):
    """Both given: the dev dataset is the dev split (dev_fraction unused), not a 422 that the OpenAPI
    document could not state."""
    status, answer = submit({"dataset": "digits.npz", "dev_dataset": "fashion/t10k-images-idx3-ubyte.gz",
                             "dev_fraction": 0.3, "config": SMALL})
    assert status == 202, answer
    assert answer["queued"]["dev_data"].endswith("t10k-images-idx3-ubyte.gz")


def test_without_dev_dataset_the_job_is_queued_as_before(submit):
    """No dev_data key at all: the job still runs on a worker of the previous release."""
    status, answer = submit({"dataset": "digits.npz", "config": SMALL, "dev_fraction": 0.3})
    assert status == 202, answer
    assert "dev_data" not in answer["queued"] and answer["queued"]["dev_fraction"] == 0.3


def test_dev_dataset_beside_an_upload(submit, mnist, tmp_path: Path):
    upload = save_npz(tmp_path / "upload.npz", mnist, 100)
    status, answer = submit(None, data=upload.read_bytes(), content_type="application/x-npz",
                            query_string={"dev_dataset": "digits.npz"})
    assert status == 202, answer
    assert answer["queued"]["dev_data"] == str((tmp_path / "data" / "digits.npz").resolve())
    assert answer["queued"]["data"].endswith("train.npz")


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"dataset": "digits.npz", "dev_dataset": "../outside.npz"}, 400, "dev_dataset: '../outside.npz' is not a plain"),
    ({"dataset": "digits.npz", "dev_dataset": "fashion/../../outside.npz"}, 400, "dev_dataset: "),
    ({"dataset": "digits.npz", "dev_dataset": "/etc/passwd"}, 400, "not a plain dataset name"),
    ({"dataset": "digits.npz", "dev_dataset": "fashion/nothere.gz"}, 404,
     "dev_dataset: no dataset 'fashion/nothere.gz' in the data directory (available: digits.npz, fashion)"),
    ({"dataset": "digits.npz", "dev_dataset": 3}, 422, "dev_dataset"),
    ({"dataset": "./digits.npz"}, 400, "dataset: './digits.npz' is not a plain"),
])
def test_unsafe_dev_datasets_are_refused(submit, body: dict[str, Any], code: int, words: str):
    status, answer = submit(body)
    assert status == code, answer
    assert words in answer["error"], answer


def test_symlink_out_of_data_dir_is_refused_as_dev_dataset(submit, tmp_path: Path):
    (tmp_path / "data" / "link.npz").symlink_to(tmp_path / "outside.npz")
    status, answer = submit({"dataset": "digits.npz", "dev_dataset": "link.npz"})
    assert status == 400 and answer["error"] == "dev_dataset: 'link.npz' points outside the data directory"


def test_retrain_on_every_row_and_evaluate_on_the_dev_dataset(make_stack, mnist):
    """A real job: the version is trained on all 400 rows of the dataset and evaluated on the 120 of the
    dev dataset, which the job status, the manifest and the evaluation endpoint all report."""
    stack = make_stack()
    write_idx_pair(stack.data_dir / "small", mnist.X[:400], mnist.y[:400], gz=True, prefix="train")
    write_idx_pair(stack.data_dir / "small", mnist.X[9000:9120], mnist.y[9000:9120], gz=False, prefix="t10k")

    response = stack.submit_train({"dataset": "small", "dev_dataset": "small/t10k-images-idx3-ubyte",
                                   "model": "devset", "config": SMALL})
    assert response.status_code == 202, response.text
    status = stack.wait(response.json()["job_id"], timeout=120)
    assert status["status"] == "finished", status
    assert status["train_rows"] == 400 and status["dev_rows"] == 120, status
    assert [point["epoch"] for point in status["curve"]] == [1, 2, 3]

    manifest = ModelRegistry(stack.models_dir).manifest("devset", status["produced_version"])
    train, dev = manifest["dataset"]["train"], manifest["dataset"]["dev"]
    assert train["rows"] == 400 and train["source"].endswith("small/train-images-idx3-ubyte.gz")
    assert dev == {**dev, "rows": 120, "split": "file"} and dev["source"].endswith("small/t10k-images-idx3-ubyte")
    assert manifest["metrics"]["dev_accuracy"] == status["dev"]["accuracy"]
    # The dev accuracy is a count of the 120 dev rows, not of a held-out tail of the 400.
    assert round(manifest["metrics"]["dev_accuracy"] * 120, 6).is_integer()

    evaluation = requests.get(f"{stack.url}/v1/models/devset/versions/{status['produced_version']}/evaluation",
                              timeout=30).json()
    assert evaluation["dataset"] == "small/t10k-images-idx3-ubyte" and evaluation["rows"] == 120, evaluation
    assert evaluation["split"] == "the dev dataset the version was evaluated on"
    assert evaluation["accuracy"] == pytest.approx(manifest["metrics"]["dev_accuracy"], abs=1e-6)
