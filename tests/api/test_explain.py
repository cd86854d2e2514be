"""V1 ``:explain``: the three routes, the response contract, images' preprocessed pixels, the cap, errors.

In-process (``client``) over the base registry (v1 production, v2 weaker); the numbers are checked
against the same versions loaded locally.
"""

from __future__ import annotations

import numpy as np
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from core.registry import ModelRegistry
from service.codecs.images import image_to_pixels
from tests.api.conftest import b64, png_bytes

JSON = {"Content-Type": "application/json"}
ZEROS = [0] * 784


def explain(client: FlaskClient, instances: list, route: str = ":explain", model: str = "mnist") -> TestResponse:
    return client.post(f"/v1/models/{model}{route}", json={"instances": instances})


def _check_contract(body: dict, n: int, version: int) -> None:
    assert set(body) == {"model_name", "model_version", "method", "explanations"}
    assert body["model_name"] == "mnist" and body["model_version"] == version
    assert body["method"] == "gradient_x_input"
    assert len(body["explanations"]) == n
    for item in body["explanations"]:
        assert set(item) == {"label", "probabilities", "pixels", "attributions"}
        assert isinstance(item["label"], int) and len(item["probabilities"]) == 10
        assert np.array(item["pixels"]).shape == (28, 28) and np.array(item["attributions"]).shape == (28, 28)
        assert all(type(v) is int and 0 <= v <= 255 for row in item["pixels"] for v in row)


def test_attributions_are_the_models_gradient_x_input(client, digits, local_models):
    pixels, _ = digits
    response = explain(client, pixels[:5].tolist())
    assert response.status_code == 200, response.text
    body = response.json
    _check_contract(body, 5, 1)
    expected = local_models[1].explain(pixels[:5])
    assert [e["label"] for e in body["explanations"]] == expected.labels.tolist()
    assert expected.labels.tolist() == local_models[1].predict(pixels[:5])[0].tolist()  # the predicted digit
    np.testing.assert_allclose([e["probabilities"] for e in body["explanations"]], expected.probabilities, atol=1e-6)
    np.testing.assert_allclose([e["attributions"] for e in body["explanations"]],
                               expected.attributions.reshape(5, 28, 28), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal([e["pixels"] for e in body["explanations"]], pixels[:5].reshape(5, 28, 28))
    # Gradient x input: no ink, no attribution.
    attributions = np.array([e["attributions"] for e in body["explanations"]])
    assert np.all(attributions[pixels[:5].reshape(5, 28, 28) == 0] == 0)
    assert np.abs(attributions).max() > 0


def test_version_and_label_routes_use_that_version(client, digits, local_models):
    pixels = digits[0][:3]
    for version in (1, 2):
        body = explain(client, pixels.tolist(), f"/versions/{version}:explain").json
        _check_contract(body, 3, version)
        np.testing.assert_allclose([e["attributions"] for e in body["explanations"]],
                                   local_models[version].explain(pixels).attributions.reshape(3, 28, 28),
                                   rtol=1e-5, atol=1e-6)
    body = explain(client, pixels.tolist(), "/labels/production:explain").json
    _check_contract(body, 3, 1)


def test_a_moved_alias_is_followed(models_dir, make_client, digits):
    ModelRegistry(models_dir).set_alias("mnist", "staging", 2)
    body = explain(make_client(models_dir), digits[0][:1].tolist(), "/labels/staging:explain").json
    _check_contract(body, 1, 2)


def test_image_instances_report_the_pixels_the_model_saw(client, digits, local_models):
    pixels, _ = digits
    photo = png_bytes(pixels[3], invert=True, scale=4)  # dark ink on white, 112x112: preprocessing matters
    instances = [pixels[0].reshape(28, 28).tolist(), {"b64": b64(photo)}]
    response = explain(client, instances)
    assert response.status_code == 200, response.text
    body = response.json
    _check_contract(body, 2, 1)
    seen = image_to_pixels(photo)
    np.testing.assert_array_equal(body["explanations"][1]["pixels"],
                                  np.clip(np.rint(seen), 0, 255).astype(int).reshape(28, 28))
    assert not np.array_equal(body["explanations"][1]["pixels"], 255 - pixels[3].reshape(28, 28))
    expected = local_models[1].explain(np.stack([pixels[0].astype(np.float32), seen]))
    np.testing.assert_allclose([e["attributions"] for e in body["explanations"]],
                               expected.attributions.reshape(2, 28, 28), rtol=1e-5, atol=1e-6)


def test_the_explain_cap_is_its_own(make_client, models_dir, digits):
    client = make_client(models_dir, max_explain_instances=3)
    assert explain(client, digits[0][:3].tolist()).status_code == 200
    response = explain(client, digits[0][:4].tolist())
    assert response.status_code == 422
    assert response.json == {"error": "instances: 4 instances, at most 3 per :explain request "
                                      "(MAX_EXPLAIN_INSTANCES); send the rest in another request"}
    # Predictions keep MAX_INSTANCES.
    assert client.post("/v1/models/mnist:predict", json={"instances": digits[0][:4].tolist()}).status_code == 200


BAD = [
    ("not json", b"{", JSON, 400, "JSON"),
    ("wrong content type", b'{"instances": []}', {"Content-Type": "text/plain"}, 415, "application/json"),
    ("no instances", b"{}", JSON, 422, "instances"),
    ("empty", b'{"instances": []}', JSON, 422, "instances: empty list"),
    ("short row", b'{"instances": [[1, 2, 3]]}', JSON, 422, "instances[0]: expected 784 values or 28x28, got 3"),
    ("pixel out of range", ('{"instances": [[' + ",".join(["0"] * 783 + ["256"]) + "]]}").encode(), JSON, 422,
     "instances[0][783]: pixel value 256 is outside 0..255"),
    ("nested row", ('{"instances": [' + str([[0] * 28] * 27 + [[0] * 27]) + "]}").encode(), JSON, 422,
     "instances[0][27]"),
    ("string pixel", ('{"instances": [[' + ",".join(['"a"'] + ["0"] * 783) + "]]}").encode(), JSON, 422,
     "instances[0][0]: expected a number"),
    ("bad b64", b'{"instances": [{"b64": "***"}]}', JSON, 422, "instances[0].b64: invalid base64"),
    ("not an image", b'{"instances": [{"b64": "aGVsbG8="}]}', JSON, 422, "instances[0].b64"),
]


@pytest.mark.parametrize(("case", "body", "headers", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_say_what_and_where(client, case, body, headers, status, message):
    response = client.post("/v1/models/mnist:explain", data=body, headers=headers)
    assert response.status_code == status, response.text
    assert message in response.json["error"]


@pytest.mark.parametrize(("path", "message"), [
    ("/v1/models/fashion:explain", "unknown model 'fashion'"),
    ("/v1/models/mnist/versions/9:explain", "9"),
    ("/v1/models/mnist/versions/0:explain", "positive integers"),
    ("/v1/models/mnist/labels/canary:explain", "canary"),
])
def test_unknown_model_version_or_alias_is_404(client, path, message):
    response = client.post(path, json={"instances": [ZEROS]})
    assert response.status_code == 404, response.text
    assert message in response.json["error"]


def test_explain_is_in_the_openapi_document(client):
    spec = client.get("/openapi.json").json
    for path in ("/v1/models/{model}:explain", "/v1/models/{model}/versions/{version}:explain",
                 "/v1/models/{model}/labels/{alias}:explain"):
        operation = spec["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ExplainRequest"}
        assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ExplainResponse"}
    assert spec["components"]["schemas"]["ExplainRequest"]["properties"]["instances"]["maxItems"] == 64
