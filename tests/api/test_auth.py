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


# A value each path parameter may take, so that the request reaches the view (or its blueprint's hook).
_PATH_VALUES = {"model": "mnist", "version": "1", "alias": "production", "job_id": "0" * 32,
                "filename": "console.css"}


def test_every_operation_the_document_guards_refuses_a_request_without_the_key(make_client, models_dir):
    """The document and the server agree on who needs the key: every operation that declares the
    bearer scheme (and only it) answers 401 to a request without one, before anything else."""
    client = make_client(models_dir, require_key_for_all=True)
    document = client.get("/openapi.json").json
    checked = []
    for path, operations in document["paths"].items():
        url = path
        for name, value in _PATH_VALUES.items():
            url = url.replace("{" + name + "}", value)
        for method, operation in operations.items():
            response = client.open(url, method=method.upper())
            if operation.get("security") == [{"bearer": []}]:
                assert response.status_code == 401, (method, path, response.status_code, response.text)
                checked.append(f"{method} {path}")
            elif "security" not in operation:
                assert response.status_code != 401, (method, path, "open, yet it asked for the key")
    assert len(checked) >= 25 and "get /v1/models/{model}/versions/{version}/evaluation" in checked
