"""V1 predict: every instance form, each version/alias route, exact numbers.

In-process (``client``), but for one large batch sent to real gunicorn, end to end.
"""

from __future__ import annotations

import numpy as np
import requests
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.api.conftest import b64, png_bytes

JSON = {"Content-Type": "application/json"}


def predict(client: FlaskClient, instances: list, route: str = ":predict") -> TestResponse:
    return client.post(f"/v1/models/mnist{route}", json={"instances": instances})


def test_flat_instances_match_the_local_forward_pass(client, digits, local_models):
    pixels, labels = digits
    response = predict(client, pixels[:50].tolist())
    assert response.status_code == 200, response.text
    body = response.json
    assert body["model_version"] == 1
    expected_labels, expected_probs = local_models[1].predict(pixels[:50])
    assert [p["label"] for p in body["predictions"]] == expected_labels.tolist()
    np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]], expected_probs, atol=1e-6)
    assert (expected_labels == labels[:50]).mean() > 0.85  # a real model, not a constant


def test_nested_28x28_equals_flat(client, digits):
    pixels, _ = digits
    flat = predict(client, pixels[:5].tolist()).json
    nested = predict(client, pixels[:5].reshape(5, 28, 28).tolist()).json
    assert nested == flat


def test_float_pixels_accepted(client, digits, local_models):
    pixels = digits[0][:3].astype(np.float64) * 0.999
    body = predict(client, pixels.tolist()).json
    np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]],
                               local_models[1].predict_proba(pixels), atol=1e-6)


def test_b64_png_and_mixed_forms_keep_request_order(client, digits, local_models):
    pixels, _ = digits
    instances = [pixels[0].tolist(), {"b64": b64(png_bytes(pixels[1]))}, pixels[2].reshape(28, 28).tolist(),
                 {"b64": b64(png_bytes(pixels[3], invert=True, scale=4))}]
    response = predict(client, instances)
    assert response.status_code == 200, response.text
    got = [p["label"] for p in response.json["predictions"]]
    expected = local_models[1].predict(pixels[:4])[0].tolist()
    assert got == expected


def test_version_routes_use_that_version(client, digits, local_models):
    pixels, _ = digits
    for version in (1, 2):
        body = predict(client, pixels[:20].tolist(), f"/versions/{version}:predict").json
        assert body["model_version"] == version
        np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]],
                                   local_models[version].predict_proba(pixels[:20]), atol=1e-6)


def test_label_route_uses_the_alias(client, digits):
    body = predict(client, digits[0][:2].tolist(), "/labels/production:predict").json
    assert body["model_version"] == 1


def test_large_batch_in_one_request(api, mnist, local_models):
    pixels = mnist.X[:1000].astype(np.int64)
    response = requests.post(f"{api.url}/v1/models/mnist:predict", json={"instances": pixels.tolist()}, timeout=60)
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 1000
    assert [p["label"] for p in predictions] == local_models[1].predict(pixels)[0].tolist()


def test_signature_name_is_accepted(client, digits):
    response = client.post("/v1/models/mnist:predict", headers=JSON,
                           json={"signature_name": "serving_default", "instances": digits[0][:1].tolist()})
    assert response.status_code == 200
