"""Retraining jobs: promotion that the API then serves, if_better refusing a worse model, auth, datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

import worker.context
import worker.retraining as retraining
from core.datasets import Dataset
from core.registry import ModelRegistry
from core.settings import Settings
from tests.conftest import API_KEY
from tests.jobs.conftest import save_npz, write_kaggle_csv
from tests.support import RedisServer, wait_until
from trainer.evaluation import evaluate
from worker.context import WorkerContext

SMALL = {"hidden": [32], "epochs": 3, "dropout": 0.0, "augment_shift": 0, "early_stopping": 0, "seed": 3}


def _served_version(url: str) -> int:
    return requests.get(url + "/readyz", timeout=5).json().get("model_version")


def test_retrain_upload_if_better_promotes_and_api_serves_it(make_stack, mnist, tmp_path: Path):
    stack = make_stack()
    registry = ModelRegistry(stack.models_dir)
    registry.set_alias("mnist", "production", 2)  # the weak model is in production: a new one should beat it
    wait_until(lambda: _served_version(stack.url) == 2, 10, "the API to serve version 2")
    csv_path = write_kaggle_csv(tmp_path / "train.csv", mnist.X[:4000], mnist.y[:4000])
    with open(csv_path, "rb") as fh:
        response = requests.post(stack.url + "/v1/jobs/train", headers={"Authorization": f"Bearer {API_KEY}"},
                                 files={"file": ("train.csv", fh, "text/csv")},
                                 data={"config": json.dumps(SMALL)}, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    status = stack.wait(job_id, timeout=120)
    assert status["status"] == "finished", status
    assert status["produced_version"] == 3 and status["promoted"] is True, status
    assert status["epochs"] == 3 and status["progress"] == 1.0
    assert status["dev"]["accuracy"] > status["production_dev"]["accuracy"]
    assert registry.aliases("mnist")["production"] == 3
    assert registry.manifest("mnist", 3)["job_id"] == job_id
    wait_until(lambda: _served_version(stack.url) == 3, 10, "the API to serve version 3")
    result = requests.get(f"{stack.url}/v1/jobs/{job_id}/result", timeout=5)
    assert result.status_code == 404 and "training job" in result.json()["error"]


def test_if_better_refuses_a_worse_model(make_stack, mnist):
    stack = make_stack()
    save_npz(stack.data_dir / "digits.npz", mnist, 3000)
    weak = {"hidden": [4], "epochs": 1, "dropout": 0.0, "augment_shift": 0, "early_stopping": 0}
    response = stack.submit_train({"dataset": "digits.npz", "config": weak})  # promote defaults to if_better
    assert response.status_code == 202, response.text
    status = stack.wait(response.json()["job_id"], timeout=120)
    assert status["status"] == "finished", status
    assert status["produced_version"] == 3 and status["promoted"] is False, status
    assert status["dev"]["accuracy"] < status["production_dev"]["accuracy"]
    # Production was scored on the candidate's own dev rows (2,400-2,700 of the 3,000), not on its
    # test split (the last 300), which only the report carries.
    registry = ModelRegistry(stack.models_dir)
    dev_rows = Dataset(mnist.X[2400:2700], mnist.y[2400:2700], "dev", "")
    assert status["dev_rows"] == status["test_rows"] == 300
    assert status["production_dev"]["accuracy"] == pytest.approx(evaluate(registry.load("mnist", 1),
                                                                          dev_rows)["accuracy"], abs=1e-6)
    assert 0 < status["test"]["accuracy"] <= 1
    assert registry.aliases("mnist")["production"] == 1
    assert _served_version(stack.url) == 1


def test_train_requests_are_checked(make_stack, mnist):
    stack = make_stack(workers=0)
    save_npz(stack.data_dir / "digits.npz", mnist, 100)
    (stack.data_dir.parent / "secret.npz").write_bytes(b"PK")
    cases = [
        (stack.submit_train({"dataset": "digits.npz"}, key=None), 401, "Authorization"),
        (stack.submit_train({"dataset": "digits.npz"}, key="wrong"), 403, "invalid API key"),
        (stack.submit_train({"dataset": "../secret.npz"}), 400, "not a plain dataset name"),
        (stack.submit_train({"dataset": "nothere.csv"}), 404, "digits.npz"),
        (stack.submit_train({"dataset": "digits.npz", "config": {"hidden": [0]}}), 422, "config"),
        (stack.submit_train({"dataset": "digits.npz", "config": {"epochs": "many"}}), 422, "config.epochs"),
        (stack.submit_train({"dataset": "digits.npz", "promote": "sometimes"}), 422, "promote"),
        (stack.submit_train({"config": {}}), 400, "dataset"),
        (requests.post(stack.url + "/v1/jobs/train", data=b"abc", timeout=5,
                       headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/x-npz"}),
         400, "not a zip"),
    ]
    for response, code, words in cases:
        assert response.status_code == code, (response.status_code, response.text)
        assert words in response.json()["error"], response.text


def test_train_refused_without_configured_key(make_stack):
    stack = make_stack(workers=0, API_KEY="")
    response = stack.submit_train({"dataset": "digits.npz"}, key="anything")
    assert response.status_code == 403 and "no API_KEY" in response.json()["error"]


def test_if_better_keeps_a_rollback_made_during_the_evaluation(models_dir: Path, mnist, tmp_path: Path,
                                                               redis_server: RedisServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """retrain() in this process (outside RQ its reporter is a no-op) with the real trainer, registry
    and evaluation; the operator's rollback is made to land between the evaluation and the promotion."""
    context = WorkerContext.from_settings(Settings(models_dir=models_dir, redis_url=redis_server.url))
    monkeypatch.setattr(worker.context, "_context", context)
    registry = context.registry
    registry.set_alias("mnist", "production", 2)  # the weak model: the new one beats it
    real_evaluate = retraining.evaluate

    def evaluate_then_roll_back(*args, **kwargs):
        report = real_evaluate(*args, **kwargs)
        registry.set_alias("mnist", "production", 1)  # an operator rolls back while the job decides
        return report

    monkeypatch.setattr(retraining, "evaluate", evaluate_then_roll_back)
    data = save_npz(tmp_path / "digits.npz", mnist, 3000)
    summary = retraining.retrain("job-rollback-race", data=str(data), config=SMALL)
    assert summary["produced_version"] == 3 and summary["production_version"] == 2
    assert summary["dev"]["accuracy"] > summary["production_dev"]["accuracy"]  # it would have been promoted
    assert summary["promoted"] is False, summary
    assert "production moved from v2 to v1 during the evaluation" in summary["promotion_reason"]
    assert registry.aliases("mnist") == {"production": 1}  # the rollback stands
