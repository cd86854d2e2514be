"""REQUIRE_KEY_FOR_ALL: predictions, V2 inference and model metadata need the key; probes stay open.

In-process (``client``/``make_client``): who may call what is decided by the app alone.
"""

from __future__ import annotations

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.api.conftest import files, png_bytes
from tests.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
ROW = [0] * 784
V2_BODY = {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": ROW}]}


def _calls(client: FlaskClient, png: bytes, headers: dict[str, str]) -> dict[str, TestResponse]:
    return {
        "v1 predict": client.post("/v1/models/mnist:predict", json={"instances": [ROW]}, headers=headers),
        "v1 version predict": client.post("/v1/models/mnist/versions/2:predict", json={"instances": [ROW]},
                                          headers=headers),
        "v1 predict_image": client.post("/v1/models/mnist:predict_image", headers=headers,
                                        data=files([("file", "d.png", png, "image/png")])),
        "model info": client.get("/v1/models/mnist", headers=headers),
        "manifest": client.get("/v1/models/mnist/versions/1", headers=headers),
        "v2 metadata": client.get("/v2/models/mnist", headers=headers),
        "v2 model ready": client.get("/v2/models/mnist/ready", headers=headers),
        "v2 infer": client.post("/v2/models/mnist/infer", json=V2_BODY, headers=headers),
    }


def test_require_key_for_all_closes_every_prediction_route(make_client, models_dir, digits):
    client = make_client(models_dir, require_key_for_all=True)
    png = png_bytes(digits[0][0])
    for what, response in _calls(client, png, {}).items():
        assert response.status_code == 401, (what, response.status_code, response.text)
        assert "Authorization: Bearer" in response.json["error"], what
    for what, response in _calls(client, png, {"Authorization": "Bearer wrong"}).items():
        assert response.status_code == 403 and response.json["error"] == "invalid API key", what
    for what, response in _calls(client, png, AUTH).items():
        assert response.status_code == 200, (what, response.text)
    # Probes, metrics, the OpenAPI document and the index page need no key.
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/v2", "/metrics", "/openapi.json",
                 "/"):
        assert client.get(path).status_code == 200, path


def test_without_the_flag_predictions_need_no_key(client, digits):
    for what, response in _calls(client, png_bytes(digits[0][0]), {}).items():
        assert response.status_code == 200, (what, response.text)


def test_flag_without_a_configured_key_refuses_rather_than_opens(make_client, models_dir):
    client = make_client(models_dir, require_key_for_all=True, api_key="")
    response = client.post("/v1/models/mnist:predict", json={"instances": [ROW]}, headers=AUTH)
    assert response.status_code == 403 and "no API_KEY configured" in response.json["error"]
