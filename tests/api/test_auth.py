"""REQUIRE_KEY_FOR_ALL: predictions, V2 inference and model metadata need the key; probes stay open."""

from __future__ import annotations

import requests

from tests.api.conftest import png_bytes
from tests.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
ROW = [0] * 784
V2_BODY = {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": ROW}]}


def _calls(url: str, png: bytes, headers: dict[str, str]) -> dict[str, requests.Response]:
    return {
        "v1 predict": requests.post(f"{url}/v1/models/mnist:predict", json={"instances": [ROW]}, headers=headers,
                                    timeout=10),
        "v1 version predict": requests.post(f"{url}/v1/models/mnist/versions/2:predict", json={"instances": [ROW]},
                                            headers=headers, timeout=10),
        "v1 predict_image": requests.post(f"{url}/v1/models/mnist:predict_image", headers=headers, timeout=10,
                                          files=[("file", ("d.png", png, "image/png"))]),
        "model info": requests.get(f"{url}/v1/models/mnist", headers=headers, timeout=10),
        "manifest": requests.get(f"{url}/v1/models/mnist/versions/1", headers=headers, timeout=10),
        "v2 metadata": requests.get(f"{url}/v2/models/mnist", headers=headers, timeout=10),
        "v2 model ready": requests.get(f"{url}/v2/models/mnist/ready", headers=headers, timeout=10),
        "v2 infer": requests.post(f"{url}/v2/models/mnist/infer", json=V2_BODY, headers=headers, timeout=10),
    }


def test_require_key_for_all_closes_every_prediction_route(start_api, models_dir, digits):
    server = start_api(models_dir, workers=1, REQUIRE_KEY_FOR_ALL="true")
    png = png_bytes(digits[0][0])
    for what, response in _calls(server.url, png, {}).items():
        assert response.status_code == 401, (what, response.status_code, response.text)
        assert "Authorization: Bearer" in response.json()["error"], what
    for what, response in _calls(server.url, png, {"Authorization": "Bearer wrong"}).items():
        assert response.status_code == 403 and response.json()["error"] == "invalid API key", what
    for what, response in _calls(server.url, png, AUTH).items():
        assert response.status_code == 200, (what, response.text)
    # Probes, metrics, the OpenAPI document and the index page need no key.
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/v2", "/metrics", "/openapi.json",
                 "/"):
        assert requests.get(server.url + path, timeout=10).status_code == 200, path


def test_without_the_flag_predictions_need_no_key(api, digits):
    for what, response in _calls(api.url, png_bytes(digits[0][0]), {}).items():
        assert response.status_code == 200, (what, response.text)


def test_flag_without_a_configured_key_refuses_rather_than_opens(start_api, models_dir):
    server = start_api(models_dir, workers=1, REQUIRE_KEY_FOR_ALL="true", API_KEY="")
    response = requests.post(f"{server.url}/v1/models/mnist:predict", json={"instances": [ROW]}, headers=AUTH,
                             timeout=10)
    assert response.status_code == 403 and "no API_KEY configured" in response.json()["error"]
