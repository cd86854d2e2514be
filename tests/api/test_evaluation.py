"""GET /v1/models/{name}/versions/{v}/evaluation: the confusion matrix of a version on its own dev
split (or a named dataset), equal to the trainer's evaluation of the same rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.datasets import load_dataset
from core.registry import ModelRegistry
from tests.support import MNIST_DIR
from trainer.evaluation import evaluate

IMAGES = "t10k-images-idx3-ubyte.gz"


@pytest.fixture()
def evaluating(make_client, models_dir: Path, tmp_path: Path):
    (tmp_path / "data").mkdir(exist_ok=True)
    for name in (IMAGES, "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(MNIST_DIR / name, tmp_path / "data" / name)
    return make_client(models_dir), models_dir, tmp_path / "data"


@pytest.mark.parametrize("version", [1, 2])
def test_matches_the_trainers_evaluation_of_the_dev_split(evaluating, version):
    client, models_dir, data_dir = evaluating
    answer = client.get(f"/v1/models/mnist/versions/{version}/evaluation")
    assert answer.status_code == 200, answer.json
    body = answer.json
    manifest = ModelRegistry(models_dir).manifest("mnist", version)
    _, dev = load_dataset(data_dir / IMAGES).split_last(0.2)
    expected = evaluate(ModelRegistry(models_dir).load("mnist", version), dev)
    # Every row held out from training: the dev split, then the test split (1,000 rows each).
    splits = manifest["dataset"]
    assert body["rows"] == splits["dev"]["rows"] + splits["test"]["rows"] == len(dev) == 2000
    assert body["split"] == "the rows held out from the version's training (dev and test splits)"
    assert body["confusion_matrix"] == expected["confusion_matrix"]
    assert body["per_class"] == expected["per_class"]
    metrics = manifest["metrics"]
    assert body["accuracy"] == pytest.approx((metrics["dev_accuracy"] + metrics["test_accuracy"]) / 2, abs=1e-6)


def test_bad_names_and_versions_are_4xx(evaluating):
    client, _, _ = evaluating
    assert client.get("/v1/models/mnist/versions/9/evaluation").status_code == 404
    assert client.get("/v1/models/other/versions/1/evaluation").status_code == 404
    missing = client.get("/v1/models/mnist/versions/1/evaluation?dataset=nope.csv")
    assert missing.status_code == 404 and "available: t10k" in missing.json["error"]
    traversal = client.get("/v1/models/mnist/versions/1/evaluation?dataset=../models")
    assert traversal.status_code == 400
    unlabeled = client.get("/v1/models/mnist/versions/1/evaluation?dataset=t10k-labels-idx1-ubyte.gz")
    assert unlabeled.status_code == 422 and "t10k-labels-idx1-ubyte.gz" in unlabeled.json["error"]
