"""TensorFlow Serving's REST API as its clients use it: model metadata (the serving_default
signature) and the columnar request format (``{"inputs": ...}`` answered with ``{"outputs": ...}``).

In process (``client``) for shapes and validation; a plain HTTP client against real gunicorn for
what a TF Serving client does end to end: read the signature, then send columnar inputs named by it.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

SIGNATURE = ("metadata", "signature_def", "signature_def", "serving_default")


def _signature(body: dict) -> dict:
    for key in SIGNATURE:
        body = body[key]
    return body


def _dims(tensor: dict) -> list[int]:
    return [int(dim["size"]) for dim in tensor["tensor_shape"]["dim"]]


@pytest.mark.parametrize(("path", "version"), [("/v1/models/mnist/metadata", "1"),
                                               ("/v1/models/mnist/versions/2/metadata", "2"),
                                               ("/v1/models/mnist/labels/production/metadata", "1")])
def test_metadata_answers_tf_servings_shape(client, path, version):
    response = client.get(path)
    assert response.status_code == 200, response.text
    body = response.json
    assert body["model_spec"] == {"name": "mnist", "signature_name": "", "version": version}
    signature = _signature(body)
    assert signature["method_name"] == "tensorflow/serving/predict"
    (name, tensor), = signature["inputs"].items()
    assert name == "pixels" and tensor["dtype"] == "DT_FLOAT" and _dims(tensor) == [-1, 784]
    assert tensor["tensor_shape"]["dim"][1] == {"size": "784", "name": ""}  # int64 as a string, as TF Serving
    outputs = signature["outputs"]
    assert set(outputs) == {"label", "probabilities"}
    assert outputs["label"]["dtype"] == "DT_INT64" and _dims(outputs["label"]) == [-1]
    assert outputs["probabilities"]["dtype"] == "DT_FLOAT" and _dims(outputs["probabilities"]) == [-1, 10]


@pytest.mark.parametrize(("path", "message"), [("/v1/models/mnist/versions/9/metadata", "no version 9"),
                                               ("/v1/models/mnist/labels/nope/metadata", "no alias 'nope'"),
                                               ("/v1/models/cifar/metadata", "unknown model 'cifar'")])
def test_metadata_of_what_does_not_exist_is_404(client, path, message):
    response = client.get(path)
    assert response.status_code == 404 and message in response.json["error"]


def test_metadata_declares_the_class_output_when_the_manifest_names_classes(make_client, models_dir):
    manifest = models_dir / "mnist" / "1" / "model.json"
    manifest.write_text(manifest.read_text().replace('"name": "mnist",', '"class_names": ' + str(
        [f"c{i}" for i in range(10)]).replace("'", '"') + ', "name": "mnist",', 1))
    client = make_client(models_dir)
    outputs = _signature(client.get("/v1/models/mnist/metadata").json)["outputs"]
    assert outputs["class"]["dtype"] == "DT_STRING"
    body = client.post("/v1/models/mnist:predict", json={"inputs": [[0] * 784]}).json
    assert body["outputs"]["class"] == [f"c{body['outputs']['label'][0]}"]


@pytest.mark.parametrize("inputs", ["rows", "named", "grid"])
def test_columnar_inputs_answer_columnar_outputs(client, digits, local_models, inputs):
    pixels = digits[0][:5]
    batch = pixels.reshape(5, 28, 28).tolist() if inputs == "grid" else pixels.tolist()
    body = {"inputs": {"pixels": batch} if inputs == "named" else batch, "signature_name": "serving_default"}
    response = client.post("/v1/models/mnist/versions/2:predict", json=body)
    assert response.status_code == 200, response.text
    reply = response.json
    assert set(reply) == {"outputs", "model_version"} and reply["model_version"] == 2
    assert set(reply["outputs"]) == {"label", "probabilities"}
    labels, probabilities = local_models[2].predict(pixels)
    assert reply["outputs"]["label"] == labels.tolist()
    np.testing.assert_allclose(reply["outputs"]["probabilities"], probabilities, atol=1e-6)


def test_instances_keep_the_row_format(client, digits):
    reply = client.post("/v1/models/mnist:predict", json={"instances": digits[0][:2].tolist()}).json
    assert set(reply) == {"predictions", "model_version"} and len(reply["predictions"]) == 2


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"instances": [[0] * 784], "inputs": [[0] * 784]}, 422,
     "request body: send exactly one of 'instances' (row format) or 'inputs' (columnar format), got both"),
    ({"signature_name": "serving_default"}, 422,
     "request body: send exactly one of 'instances' (row format) or 'inputs' (columnar format), got neither"),
    ({"inputs": {"x": [[0] * 784]}}, 422, "inputs: this model has one input, 'pixels'"),
    ({"inputs": {"pixels": [[0] * 784], "y": 1}}, 422, "got keys ['pixels', 'y']"),
    ({"inputs": {"pixels": "x"}}, 422, "inputs.pixels: expected a list of instances, got string"),
    ({"inputs": []}, 422, "inputs: empty list"),
    ({"inputs": [[0] * 783]}, 422, "inputs[0]: expected 784 values or 28x28, got 783"),
    ({"inputs": {"pixels": [[0] * 783 + [256]]}}, 422, "inputs.pixels[0][783]: pixel value 256 is outside 0..255"),
    ({"inputs": [{"b64": "!!"}]}, 422, "inputs[0].b64: invalid base64"),
    ({"inputs": 3}, 422, "inputs"),
])
def test_columnar_errors_name_the_field(client, body, status, message):
    response = client.post("/v1/models/mnist:predict", json=body)
    assert response.status_code == status, response.text
    assert message in response.json["error"]


def test_explain_takes_only_instances(client):
    response = client.post("/v1/models/mnist:explain", json={"inputs": [[0] * 784]})
    assert response.status_code == 422 and response.json["error"] == "instances: Field required"


def test_a_tf_serving_client_reads_the_signature_and_sends_columnar_inputs(api, digits, local_models):
    """What a TF Serving REST client does, with plain requests: metadata, then ``inputs`` named by it."""
    base = f"{api.url}/v1/models/mnist"
    status = requests.get(base, timeout=10).json()
    assert {s["version"] for s in status["model_version_status"]} == {"1", "2"}
    signature = _signature(requests.get(f"{base}/metadata", timeout=10).json())
    (input_name, tensor), = signature["inputs"].items()
    pixels = digits[0][:4].astype(np.float32)
    assert _dims(tensor)[1:] == list(pixels.shape[1:])
    reply = requests.post(f"{base}:predict", json={"signature_name": "serving_default",
                                                     "inputs": {input_name: pixels.tolist()}}, timeout=10)
    assert reply.status_code == 200, reply.text
    outputs = reply.json()["outputs"]
    assert set(outputs) == set(signature["outputs"])
    assert outputs["label"] == local_models[1].predict(pixels)[0].tolist()
    assert reply.json()["model_version"] == int(requests.get(f"{base}/metadata", timeout=10).json()[
        "model_spec"]["version"])
