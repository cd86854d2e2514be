"""Several models served side by side: routes per name, independent aliases, one model's broken version
never touching another, listings, class names in V1/V2, V2's platform, a model published later,
SERVED_MODELS, and the per-model metrics. In-process apps over a copy of the base registry plus a
second model, ``fashion``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core.network import Network
from core.registry import ModelRegistry
from tests.support import wait_until

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture()
def two_models(models_dir: Path) -> Path:
    """mnist v1 (production), v2 and fashion v1, v2 (production; the mnist networks, with class names)."""
    registry = ModelRegistry(models_dir)
    for version in (1, 2):
        model = registry.load("mnist", version=version)
        registry.publish_version("fashion", model.network, {"class_names": FASHION}, model.scaling)
    registry.set_alias("fashion", "production", 2)
    return models_dir


def _predict(client, model: str, pixels: np.ndarray, route: str = ":predict") -> dict:
    response = client.post(f"/v1/models/{model}{route}", json={"instances": pixels.tolist()})
    assert response.status_code == 200, response.text
    return response.json


def test_each_model_answers_under_its_own_name_with_its_own_aliases(two_models, make_client, digits, local_models):
    client = make_client(two_models)
    pixels = digits[0][:5]
    mnist, fashion = _predict(client, "mnist", pixels), _predict(client, "fashion", pixels)
    assert mnist["model_version"] == 1 and fashion["model_version"] == 2
    np.testing.assert_allclose([p["probabilities"] for p in fashion["predictions"]],
                               local_models[2].predict_proba(pixels), atol=1e-6)
    # Promoting one model's alias moves nothing of the other's.
    moved = client.put("/v1/models/fashion/aliases/production", json={"version": 1},
                       headers={"Authorization": "Bearer test-key"})
    assert moved.status_code == 200, moved.text
    wait_until(lambda: _predict(client, "fashion", pixels)["model_version"] == 1, 5, "fashion to serve v1")
    assert _predict(client, "mnist", pixels)["model_version"] == 1
    assert _predict(client, "mnist", pixels, "/labels/production:predict")["model_version"] == 1
    ModelRegistry(two_models).set_alias("mnist", "canary", 2)
    assert _predict(client, "mnist", pixels, "/labels/canary:predict")["model_version"] == 2
    missing = client.post("/v1/models/fashion/labels/canary:predict", json={"instances": pixels.tolist()})
    assert missing.status_code == 404, missing.text
    explained = client.post("/v1/models/fashion/versions/2:explain", json={"instances": pixels[:1].tolist()}).json
    assert explained["model_name"] == "fashion" and explained["model_version"] == 2
    assert explained["explanations"][0]["class"] == FASHION[explained["explanations"][0]["label"]]


def test_a_broken_version_of_one_model_never_touches_the_other(two_models, make_client, digits):
    client = make_client(two_models)
    pixels = digits[0][:3]
    assert _predict(client, "fashion", pixels)["model_version"] == 2
    registry = ModelRegistry(two_models)
    version = registry.publish_version("fashion", registry.load("fashion", version=1).network, {})
    (registry.version_dir("fashion", version) / "weights.npz").write_bytes(b"not the weights")
    registry.set_alias("fashion", "production", version)  # as a bad deploy would, past promote's check
    time.sleep(0.3)  # past RELOAD_INTERVAL (0.2 s): the next request re-resolves production
    assert _predict(client, "fashion", pixels)["model_version"] == 2  # the previous version keeps serving
    assert _predict(client, "mnist", pixels)["model_version"] == 1
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "degraded"
    assert ready.json["model"] == "mnist" and ready.json["serving_version"] == 1 and ready.json["error"] is None
    assert ready.json["models"]["fashion"]["serving_version"] == 2
    assert "refusing to load" in ready.json["models"]["fashion"]["error"]
    assert client.get("/v1/models/fashion").json["error"] is not None
    assert client.get("/v1/models/mnist").json["error"] is None
    assert client.get("/v2/models/mnist/ready").status_code == 200


def test_unknown_names_are_404_naming_the_served_models(two_models, make_client):
    client = make_client(two_models)
    for path in ("/v1/models/cifar10:predict", "/v1/models/cifar10:explain", "/v2/models/cifar10/infer"):
        response = client.post(path, json={"instances": [[0] * 784]})
        assert response.status_code == 404
        assert response.json == {"error": "unknown model 'cifar10': this server serves 'fashion', 'mnist'"}
    assert client.get("/v2/models/cifar10").status_code == 404
    assert client.get("/v1/models/cifar10").status_code == 404


def test_listings_name_every_model(two_models, make_client):
    client = make_client(two_models)
    v1 = client.get("/v1/models").json
    assert v1["default"] == "mnist"
    assert [(m["name"], m["production_version"], m["versions"], m["class_names"]) for m in v1["models"]] == [
        ("fashion", 2, [1, 2], FASHION), ("mnist", 1, [1, 2], None)]
    assert v1["models"][0]["aliases"] == {"production": 2}
    v2 = client.get("/v2/models").json
    assert v2 == {"models": [{"name": "fashion", "versions": ["1", "2"], "state": "READY", "reason": ""},
                             {"name": "mnist", "versions": ["1", "2"], "state": "READY", "reason": ""}]}
    spec = client.get("/openapi.json").json
    model_param = next(p for p in spec["paths"]["/v1/models/{model}:predict"]["post"]["parameters"]
                       if p["name"] == "model")
    assert model_param["schema"]["enum"] == ["fashion", "mnist"]


def test_class_names_in_v1_and_v2_only_where_the_manifest_has_them(two_models, make_client, digits):
    client = make_client(two_models)
    pixels = digits[0][:4]
    for prediction in _predict(client, "fashion", pixels)["predictions"]:
        assert prediction["class"] == FASHION[prediction["label"]]
    assert all(set(p) == {"label", "probabilities"} for p in _predict(client, "mnist", pixels)["predictions"])
    metadata = client.get("/v2/models/fashion").json
    assert {o["name"]: o["parameters"]["class_names"] for o in metadata["outputs"]} == {
        "probabilities": FASHION, "labels": FASHION}
    assert all("parameters" not in o for o in client.get("/v2/models/mnist").json["outputs"])
    v2 = client.post("/v2/models/fashion/infer", json={"inputs": [
        {"name": "pixels", "shape": [4, 784], "datatype": "UINT8", "data": pixels.tolist()}]})
    assert v2.status_code == 200 and v2.json["model_name"] == "fashion"  # V2 outputs are unchanged tensors


def test_v2_platform_says_what_runs_the_model(two_models, make_client):
    registry = ModelRegistry(two_models)
    registry.publish_version("convnet", Network.cnn(channels=(2,), hidden=(8,), seed=1), {})
    client = make_client(two_models)
    assert client.get("/v2/models/mnist").json["platform"] == "numpy-mlp"
    assert client.get("/v2/models/convnet").json["platform"] == "numpy-cnn"
    assert client.get("/v2/models/convnet/versions/1").json["platform"] == "numpy-cnn"


def test_a_model_published_later_is_served(two_models, make_client, digits):
    client = make_client(two_models)
    assert client.post("/v1/models/late:predict", json={"instances": [[0] * 784]}).status_code == 404
    registry = ModelRegistry(two_models)
    registry.publish_version("late", registry.load("mnist", version=2).network, {})
    assert _predict(client, "late", digits[0][:2])["model_version"] == 1
    assert "late" in [m["name"] for m in client.get("/v1/models").json["models"]]


def test_listings_are_fresh_in_every_worker(two_models, make_client, digits):
    """Two apps on one registry stand for two gunicorn workers: a model that one worker found (a
    request named it) is listed by the other at once, even within its re-listing interval."""
    answering, listing = make_client(two_models), make_client(two_models, reload_interval=60.0)
    assert "late" not in [m["name"] for m in listing.get("/v1/models").json["models"]]  # cached here now
    registry = ModelRegistry(two_models)
    registry.publish_version("late", registry.load("mnist", version=2).network, {})
    assert _predict(answering, "late", digits[0][:1])["model_version"] == 1
    assert "late" in [m["name"] for m in listing.get("/v1/models").json["models"]]
    assert "late" in [m["name"] for m in listing.get("/v2/models").json["models"]]


def test_served_models_fixes_the_list(two_models, make_client, digits):
    ModelRegistry(two_models).publish_version("other", ModelRegistry(two_models).load("mnist", version=1).network, {})
    client = make_client(two_models, served_models="fashion")
    assert [m["name"] for m in client.get("/v1/models").json["models"]] == ["mnist", "fashion"]
    assert _predict(client, "fashion", digits[0][:1])["model_version"] == 2
    response = client.post("/v1/models/other:predict", json={"instances": [[0] * 784]})
    assert response.status_code == 404 and "this server serves 'mnist', 'fashion'" in response.json["error"]


def test_metrics_are_labelled_by_model(two_models, make_client, digits):
    client = make_client(two_models)
    before = REGISTRY.get_sample_value("mnist_predictions_total", {"model": "fashion", "version": "2", "label": "7"})
    fashion = _predict(client, "fashion", digits[0][:10])
    sevens = sum(p["label"] == 7 for p in fashion["predictions"])
    after = REGISTRY.get_sample_value("mnist_predictions_total", {"model": "fashion", "version": "2", "label": "7"})
    assert (after or 0) - (before or 0) == sevens
    assert REGISTRY.get_sample_value("mnist_model_version_served", {"model": "fashion"}) == 2
    labels = {"endpoint": "/v1/models/<name>:predict", "method": "POST", "status": "200", "model": "fashion"}
    count = _requests_total(client, labels)
    client.post("/v1/models/fashion:predict", data=json.dumps({"instances": [[0] * 784]}),
                headers={"Content-Type": "application/json"})
    assert _requests_total(client, labels) == count + 1
    client.post("/v1/models/nonsense-name:predict", json={"instances": [[0] * 784]})
    assert _requests_total(client, {**labels, "status": "404", "model": "unknown"}) >= 1


def _requests_total(client, labels: dict[str, str]) -> float:
    """``mnist_http_requests_total`` for ``labels`` as ``/metrics`` exposes it (derived there, not
    kept in the registry)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "mnist_http_requests":
            return sum(s.value for s in family.samples if s.labels == labels)
    return 0.0
