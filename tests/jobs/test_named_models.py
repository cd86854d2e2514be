"""Jobs that name a model: retraining into a second model through the API (real gunicorn, redis and
rq worker), which the API then serves under that name, scoring with it, and the names refused."""

from __future__ import annotations

from pathlib import Path

import requests

from core.registry import ModelRegistry
from tests.jobs.conftest import save_npz, write_kaggle_csv
from tests.support import wait_until

SMALL = {"hidden": [32], "epochs": 3, "dropout": 0.0, "augment_shift": 0, "early_stopping": 0, "seed": 3}


def _predicted_version(url: str, model: str) -> int | None:
    response = requests.post(f"{url}/v1/models/{model}:predict", json={"instances": [[0] * 784]}, timeout=10)
    return response.json()["model_version"] if response.status_code == 200 else None


def test_retrain_into_a_second_model_then_score_with_it(make_stack, mnist, tmp_path: Path):
    stack = make_stack()
    registry = ModelRegistry(stack.models_dir)
    mnist_aliases = registry.aliases("mnist")
    save_npz(stack.data_dir / "digits.npz", mnist, 3000)
    assert _predicted_version(stack.url, "second") is None  # not a model yet: 404

    first = stack.submit_train({"dataset": "digits.npz", "config": SMALL, "model": "second"})
    assert first.status_code == 202, first.text
    status = stack.wait(first.json()["job_id"], timeout=120)
    assert status["status"] == "finished", status
    assert status["model"] == "second" and status["produced_version"] == 1, status
    assert status["promoted"] is True, status  # the first version of a model is its production
    assert registry.aliases("second") == {"production": 1}
    assert registry.aliases("mnist") == mnist_aliases and registry.versions("mnist") == [1, 2]  # untouched
    wait_until(lambda: _predicted_version(stack.url, "second") == 1, 10, "the API to serve 'second'")
    assert _predicted_version(stack.url, "mnist") == 1
    assert "second" in [m["name"] for m in requests.get(stack.url + "/v1/models", timeout=5).json()["models"]]

    # A second run into the same model is compared with *its* production, not mnist's.
    again = stack.submit_train({"dataset": "digits.npz", "config": {**SMALL, "seed": 4}, "model": "second",
                                "promote": "if_better"})
    status = stack.wait(again.json()["job_id"], timeout=120)
    assert status["status"] == "finished", status
    assert status["produced_version"] == 2 and status["production_version"] == 1, status

    csv_path = write_kaggle_csv(tmp_path / "test.csv", mnist.X[:300])
    scored = stack.submit_csv(csv_path, model="second", version=1)
    assert scored.status_code == 202, scored.text
    status = stack.wait(scored.json()["job_id"], timeout=60)
    assert status["status"] == "finished" and status["model_version"] == 1, status
    lines = requests.get(f"{stack.url}/v1/jobs/{scored.json()['job_id']}/result", timeout=10).text.splitlines()
    assert len(lines) == 301 and lines[0] == "ImageId,Label"


def test_job_model_names_are_checked_before_queueing(make_stack, tmp_path: Path, mnist):
    stack = make_stack(workers=0)
    csv_path = write_kaggle_csv(tmp_path / "test.csv", mnist.X[:5])
    unknown = stack.submit_csv(csv_path, model="nowhere")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown model 'nowhere': this server serves 'mnist'"}
    bad = stack.submit_train({"dataset": "digits.npz", "model": "../escape"})
    assert bad.status_code == 422 and "model" in bad.json()["error"], bad.text


def test_served_models_limits_where_a_retrain_may_publish(make_stack):
    stack = make_stack(workers=0, SERVED_MODELS="mnist,fashion")
    refused = stack.submit_train({"dataset": "digits.npz", "model": "other"})
    assert refused.status_code == 404, refused.text
    assert "not served here (SERVED_MODELS: 'mnist', 'fashion')" in refused.json()["error"]


def test_a_retrained_version_keeps_its_models_class_names(make_stack, mnist):
    """A model published with class names (Fashion-MNIST's, say) keeps them through API retrains, so
    V1 keeps answering ``"class"`` after the new version is promoted."""
    stack = make_stack()
    registry = ModelRegistry(stack.models_dir)
    mnist_model = registry.load("mnist")
    names = [f"name {digit}" for digit in range(10)]
    registry.publish_version("named", mnist_model.network, {"class_names": names}, mnist_model.scaling)
    save_npz(stack.data_dir / "digits.npz", mnist, 3000)

    submitted = stack.submit_train({"dataset": "digits.npz", "config": SMALL, "model": "named", "promote": "always"})
    assert submitted.status_code == 202, submitted.text
    status = stack.wait(submitted.json()["job_id"], timeout=120)
    assert status["status"] == "finished" and status["produced_version"] == 2, status
    assert registry.manifest("named", 2)["class_names"] == names
    assert "class_names" not in registry.manifest("mnist", registry.resolve("mnist"))  # no names invented
    wait_until(lambda: _predicted_version(stack.url, "named") == 2, 10, "the API to serve version 2")
    answer = requests.post(f"{stack.url}/v1/models/named:predict", json={"instances": [mnist.X[0].tolist()]},
                           timeout=10).json()["predictions"][0]
    assert answer["class"] == names[answer["label"]]


def test_a_retrain_names_the_classes_of_a_new_model(make_stack, mnist):
    """``class_names`` in the job: a built-in list by name, or a list; checked before the job is queued."""
    stack = make_stack()
    registry = ModelRegistry(stack.models_dir)
    save_npz(stack.data_dir / "digits.npz", mnist, 3000)
    refused = stack.submit_train({"dataset": "digits.npz", "model": "clothes", "class_names": ["a", "b"]})
    assert refused.status_code == 422, refused.text
    assert "class_names" in refused.json()["error"] and "10 classes, 2 name(s)" in refused.json()["error"]
    unknown = stack.submit_train({"dataset": "digits.npz", "model": "clothes", "class_names": "shoes"})
    assert unknown.status_code == 422 and "'shoes' is not one of fashion, digits" in unknown.json()["error"]

    submitted = stack.submit_train({"dataset": "digits.npz", "config": SMALL, "model": "clothes",
                                    "class_names": "fashion"})
    assert submitted.status_code == 202, submitted.text
    status = stack.wait(submitted.json()["job_id"], timeout=120)
    assert status["status"] == "finished" and status["produced_version"] == 1, status
    names = registry.manifest("clothes", 1)["class_names"]
    assert names[7] == "Sneaker" and names[8] == "Bag" and len(names) == 10
    wait_until(lambda: _predicted_version(stack.url, "clothes") == 1, 10, "the API to serve 'clothes'")
    answer = requests.post(f"{stack.url}/v1/models/clothes:predict", json={"instances": [mnist.X[0].tolist()]},
                           timeout=10).json()["predictions"][0]
    assert answer["class"] == names[answer["label"]]
