"""Triton's HTTP extensions in process: the repository index, load and unload (auth, bodies,
idempotence, what an unloaded model answers), model configuration and statistics shapes.

Across gunicorn workers and through the unmodified tritonclient: test_triton_extensions.py.
"""

from __future__ import annotations

import time

import pytest

from core.registry import ModelRegistry, ModelUnloaded
from core.serving import ModelSet
from core.unloading import set_unloaded
from tests.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
UNLOAD, LOAD = "/v2/repository/models/mnist/unload", "/v2/repository/models/mnist/load"
ONE = {"instances": [[0] * 784]}


def _index(client, body=None, **kwargs):
    return client.post("/v2/repository/index", **({"json": body} if body is not None else {}), **kwargs)


def test_index_lists_every_version(client):
    for response in (_index(client), _index(client, {}), _index(client, {"ready": True}),
                     _index(client, data=b"", headers={"Content-Type": ""})):
        assert response.status_code == 200, response.text
        assert response.json == [{"name": "mnist", "version": "1", "state": "READY", "reason": ""},
                                 {"name": "mnist", "version": "2", "state": "READY", "reason": ""}]


@pytest.mark.parametrize(("body", "message"), [({"ready": "yes"}, "ready: Input should be a valid boolean"),
                                               ({"all": True}, "all: Extra inputs are not permitted"),
                                               ([], "request body: expected a JSON object")])
def test_index_body_errors_name_the_field(client, body, message):
    response = _index(client, body)
    assert response.status_code == 422 and response.json["error"].startswith(message)


def test_load_and_unload_need_the_key(make_client, models_dir):
    client = make_client(models_dir)
    for path in (UNLOAD, LOAD):
        assert client.post(path, json={}).status_code == 401
        assert client.post(path, json={}, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.post("/v2/repository/models/cifar/unload", json={}, headers=AUTH).status_code == 404
    assert "unknown model 'cifar'" in client.post("/v2/repository/models/cifar/load", headers=AUTH).json["error"]


def test_unload_then_load(make_client, models_dir):
    client = make_client(models_dir)
    assert client.post("/v1/models/mnist:predict", json=ONE).status_code == 200
    unloaded = client.post(UNLOAD, json={"parameters": {"unload_dependents": False}}, headers=AUTH)
    assert unloaded.status_code == 200 and unloaded.json == {"name": "mnist", "state": "UNAVAILABLE", "changed": True}
    assert client.post(UNLOAD, headers=AUTH).json["changed"] is False  # idempotent
    assert (models_dir / "mnist" / "unloaded.json").exists()

    message = "model 'mnist' is unloaded; POST /v2/repository/models/mnist/load to serve it again"
    for method, path, body in [("post", "/v1/models/mnist:predict", ONE),
                               ("post", "/v1/models/mnist/versions/2:predict", ONE),
                               ("post", "/v1/models/mnist:explain", ONE),
                               ("post", "/v2/models/mnist/infer", {"inputs": [
                                   {"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0] * 784}]}),
                               ("get", "/v2/models/mnist/ready", None)]:
        response = getattr(client, method)(path, json=body)
        assert response.status_code == 404 and response.json == {"error": message}, path
    assert [e["state"] for e in _index(client).json] == ["UNAVAILABLE", "UNAVAILABLE"]
    assert _index(client, {"ready": True}).json == []
    assert {s["state"] for s in client.get("/v1/models/mnist").json["model_version_status"]} == {"END"}
    # the server stays ready (the model was taken out on purpose), metadata stays readable
    assert client.get("/v2/health/ready").status_code == 200 and client.get("/readyz").status_code == 200
    assert client.get("/v2/models/mnist").status_code == 200
    assert client.get("/v1/models/mnist/metadata").status_code == 200

    loaded = client.post(LOAD, headers=AUTH, data=b"{}")  # tritonclient: {} without a Content-Type
    assert loaded.status_code == 200 and loaded.json == {"name": "mnist", "state": "READY", "changed": True}
    assert client.post(LOAD, headers=AUTH).json["changed"] is False
    assert not (models_dir / "mnist" / "unloaded.json").exists()
    assert client.post("/v1/models/mnist:predict", json=ONE).json["model_version"] == 1
    assert client.get("/v2/models/mnist/ready").status_code == 200


@pytest.mark.parametrize(("path", "body", "message"), [
    (LOAD, {"parameters": {"config": "{}"}}, "parameters: 'config' not supported"),
    (UNLOAD, {"parameters": {"unload_dependents": "no"}}, "parameters.unload_dependents: expected a boolean"),
    (UNLOAD, {"parameters": None}, "parameters: Input should be a valid dictionary"),
    (UNLOAD, {"force": True}, "force: Extra inputs are not permitted")])
def test_load_and_unload_bodies(make_client, models_dir, path, body, message):
    response = make_client(models_dir).post(path, json=body, headers=AUTH)
    assert response.status_code == 422 and response.json["error"].startswith(message), response.text


def test_a_model_set_elsewhere_notices_an_unload(models_dir):
    """What an RQ worker holds (a ModelSet over the same registry) follows an unload and a load."""
    models = ModelSet(ModelRegistry(models_dir), "mnist", check_interval=0.05)
    assert models.get().version == 1
    set_unloaded(ModelRegistry(models_dir), "mnist", True)
    time.sleep(0.1)
    with pytest.raises(ModelUnloaded, match="is unloaded"):
        models.get(version=2)
    assert models.predictor("mnist").loaded_versions() == set()  # the weights were let go
    set_unloaded(ModelRegistry(models_dir), "mnist", False)
    time.sleep(0.1)
    assert models.get().version == 1


def test_config_in_tritons_shape(client):
    config = client.get("/v2/models/mnist/config").json
    assert config["name"] == "mnist" and config["backend"] == "numpy" and config["max_batch_size"] == 4096
    assert config["platform"] == "numpy-mlp"
    (pixels,) = config["input"]
    assert (pixels["name"], pixels["data_type"], pixels["dims"]) == ("pixels", "TYPE_FP32", [784])
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("probabilities", "TYPE_FP32", [10]), ("labels", "TYPE_INT64", [1])]
    assert client.get("/v2/models/mnist/versions/2/config").json["name"] == "mnist"
    assert client.get("/v2/models/mnist/versions/7/config").status_code == 404


def test_stats_count_successes_failures_and_rows(make_client, models_dir, digits):
    client = make_client(models_dir)

    def version_stats(version: str) -> dict:
        (entry,) = client.get(f"/v2/models/mnist/versions/{version}/stats").json["model_stats"]
        return entry

    before = version_stats("2")
    assert client.post("/v1/models/mnist/versions/2:predict", json={"instances": digits[0][:3].tolist()}).status_code \
        == 200
    assert client.post("/v1/models/mnist/versions/2:predict", json={"inputs": [[0] * 783]}).status_code == 422
    after = version_stats("2")
    assert after["name"] == "mnist" and after["version"] == "2"
    assert after["inference_count"] - before["inference_count"] == 3
    assert after["execution_count"] - before["execution_count"] == 1
    success, fail = after["inference_stats"]["success"], after["inference_stats"]["fail"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 1
    assert fail["count"] - before["inference_stats"]["fail"]["count"] == 1
    assert success["ns"] > before["inference_stats"]["success"]["ns"]
    assert abs(after["last_inference"] / 1000 - time.time()) < 60
    assert set(after["inference_stats"]) >= {"queue", "compute_input", "compute_infer", "compute_output"}
    versions = [e["version"] for e in client.get("/v2/models/mnist/stats").json["model_stats"]]
    assert versions == ["1", "2"]
    assert [e["name"] for e in client.get("/v2/models/stats").json["model_stats"]] == ["mnist", "mnist"]
    assert client.get("/v2/models/mnist/versions/9/stats").status_code == 404
