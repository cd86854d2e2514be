"""One dataplane under two protocols: V1 and V2 share one inference path, one error handler.

The ``DataPlane`` is an object of its own, used here without Flask (no app, no request); the
protocols are tried in-process (``create_app(...).test_client()``): these test the shape of the
service, not the HTTP server, which the gunicorn tests cover.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from prometheus_client import REGISTRY

from core.registry import ModelRegistry, RegistryError
from core.serving import ModelSet
from core.settings import Settings
from service.app import create_app
from service.batching import Batcher
from service.codecs.images import ImageBusy, ImageError
from service.dataplane import DataPlane
from service.service_error import ServiceError

SERVICE = Path(__file__).resolve().parents[2] / "service"
# The codecs and the pure modules they build on: none of them may need Flask to run or to fail.
# The dataplane too, so that any protocol (gRPC next) can hold the same object.
FLASK_FREE = ["service_error", "codecs.json_decode", "codecs.instances", "codecs.v2_codec", "codecs.images",
              "codecs.image_decode", "codecs.schemas", "dataplane", "batching"]


def _settings(models_dir: Path, tmp_path: Path) -> Settings:
    return Settings(models_dir=models_dir, jobs_dir=tmp_path / "jobs", data_dir=tmp_path / "data",
                    redis_url="redis://127.0.0.1:1/0")


def _app(models_dir: Path, tmp_path: Path) -> Flask:
    return create_app(_settings(models_dir, tmp_path))


class Recorded(list):
    """A recorder that keeps what the dataplane reports: (model, version, labels or None)."""

    def __call__(self, model: str, version: int, labels: np.ndarray | None) -> None:
        self.append((model, version, None if labels is None else labels.tolist()))


def _dataplane(models_dir: Path, tmp_path: Path) -> tuple[DataPlane, Recorded]:
    recorded = Recorded()
    return DataPlane(ModelSet.from_settings(_settings(models_dir, tmp_path)), Batcher(1, 0.0), recorded), recorded


@pytest.fixture(scope="module")
def app(base_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return _app(base_registry, tmp_path_factory.mktemp("dataplane"))


def _service_imports(module: str) -> set[str]:
    """Top-level packages and ``service.*`` modules that ``service/<module>.py`` imports (dotted names)."""
    path = SERVICE / f"{module.replace('.', '/')}.py"
    tree = ast.parse((path if path.exists() else SERVICE / module.replace(".", "/") / "__init__.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "service":
                names.update(f"service.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", FLASK_FREE)
def test_codecs_and_their_errors_are_flask_free(module):
    seen, todo = set(), [module]
    while todo:  # follow service.* imports: a codec that imports a Flask module is not Flask-free
        current = todo.pop()
        seen.add(current)
        for name in _service_imports(current):
            root = name.split(".")[0]
            assert root not in {"flask", "werkzeug"}, f"service.{current} imports {name} (reached from {module})"
            if name.startswith("service.") and name.removeprefix("service.") not in seen:
                todo.append(name.removeprefix("service."))


def test_infer_is_one_forward_pass_through_the_requested_version(base_registry, tmp_path, digits, local_models):
    dataplane, recorded = _dataplane(base_registry, tmp_path)  # no app, no request context
    pixels = digits[0][:20].astype(np.float32)
    production = dataplane.infer("mnist", None, None, pixels)
    second = dataplane.infer("mnist", 2, None, pixels)
    assert (production.model_name, production.version, second.version) == ("mnist", 1, 2)
    for result, version in ((production, 1), (second, 2)):
        labels, probabilities = local_models[version].predict(pixels)
        np.testing.assert_array_equal(result.labels, labels)
        np.testing.assert_allclose(result.probabilities, probabilities, atol=1e-6)
    assert recorded == [("mnist", 1, production.labels.tolist()), ("mnist", 2, second.labels.tolist())]
    model, explanation = dataplane.explain("mnist", 2, None, pixels[:3])
    assert model.version == 2 and explanation.attributions.shape == (3, 784) and recorded[-1] == ("mnist", 2, None)


def test_infer_resolves_an_alias(models_dir, tmp_path, digits):
    ModelRegistry(models_dir).promote("mnist", "staging", 2)
    dataplane, _ = _dataplane(models_dir, tmp_path)
    assert dataplane.infer("mnist", None, "staging", digits[0][:2]).version == 2


def test_infer_refuses_unknown_model_version_and_alias_without_flask_errors(base_registry, tmp_path, digits):
    dataplane, recorded = _dataplane(base_registry, tmp_path)
    pixels = digits[0][:1]
    with pytest.raises(ServiceError) as unknown_model:
        dataplane.infer("fashion", None, None, pixels)
    with pytest.raises(RegistryError) as unknown_version:
        dataplane.infer("mnist", 99, None, pixels)
    with pytest.raises(RegistryError) as unknown_alias:
        dataplane.infer("mnist", None, "canary", pixels)
    assert unknown_model.value.status == unknown_version.value.status == unknown_alias.value.status == 404
    assert "unknown model 'fashion'" in str(unknown_model.value)
    assert recorded == []


def _label_counts(version: str) -> np.ndarray:
    """``mnist_predictions_total`` of this process for one version, per digit."""
    return np.array([REGISTRY.get_sample_value("mnist_predictions_total",
                                               {"model": "mnist", "version": version, "label": str(d)}) or 0.0
                     for d in range(10)])


def test_v1_and_v2_answer_count_and_log_identically(app, digits, access_lines):
    pixels = digits[0][:30]
    client = app.test_client()
    before = _label_counts("2")
    v1 = client.post("/v1/models/mnist/versions/2:predict", json={"instances": pixels.tolist()})
    between = _label_counts("2")
    v2 = client.post("/v2/models/mnist/versions/2/infer", json={"inputs": [
        {"name": "pixels", "shape": [30, 784], "datatype": "UINT8", "data": pixels.ravel().tolist()}]})
    after = _label_counts("2")
    assert v1.status_code == v2.status_code == 200, (v1.text, v2.text)
    labels = [p["label"] for p in v1.json["predictions"]]
    outputs = {o["name"]: o for o in v2.json["outputs"]}
    assert labels == outputs["labels"]["data"]
    np.testing.assert_allclose([p["probabilities"] for p in v1.json["predictions"]],
                               np.reshape(outputs["probabilities"]["data"], (30, 10)), atol=1e-6)
    assert (v1.json["model_version"], v2.json["model_version"]) == (2, "2")
    # The same predictions counted the same way, and the access log names the version either way.
    np.testing.assert_array_equal(between - before, np.bincount(labels, minlength=10))
    np.testing.assert_array_equal(after - between, between - before)
    assert [line["model_version"] for line in access_lines] == [2, 2]


@pytest.mark.parametrize(("error", "status", "message", "headers"), [
    (ServiceError(409, "already done", {"X-Why": "test"}), 409, "already done", {"X-Why": "test"}),
    (ImageError("not a PNG or JPEG image"), 422, "not a PNG or JPEG image", {}),
    (ImageBusy("decoding budget busy"), 503, "decoding budget busy", {}),
])
def test_one_handler_maps_every_flask_free_error(base_registry, tmp_path, error, status, message, headers):
    app = _app(base_registry, tmp_path)

    @app.get("/raise")
    def _raise():
        raise error

    response = app.test_client().get("/raise")
    assert (response.status_code, response.json) == (status, {"error": message})
    assert {key: response.headers.get(key) for key in headers} == headers
