"""V2 Open Inference Protocol through the real tritonclient (binary and JSON) and plain requests.

tritonclient speaks HTTP to real gunicorn (``api``); the plain requests run in-process (``client``).
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException


@pytest.fixture()
def triton_client(api):
    return triton.InferenceServerClient(api.url.removeprefix("http://"))


def _infer(client, pixels, datatype="FP32", binary=True, version=""):
    tensor = triton.InferInput("pixels", list(pixels.shape), datatype)
    tensor.set_data_from_numpy(pixels.astype(np.float32 if datatype == "FP32" else np.uint8), binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "labels")]
    return client.infer("mnist", [tensor], outputs=outputs, model_version=version)


def test_health_and_metadata(triton_client):
    assert triton_client.is_server_live() and triton_client.is_server_ready() and triton_client.is_model_ready("mnist")
    assert triton_client.is_model_ready("mnist", "2") and not triton_client.is_model_ready("mnist", "9")
    assert triton_client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = triton_client.get_model_metadata("mnist")
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"][0]["shape"] == [-1, 784]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"probabilities": "FP32", "labels": "INT64"}


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("datatype", ["FP32", "UINT8"])
def test_infer_matches_local_model(triton_client, digits, local_models, binary, datatype):
    pixels = digits[0][:64]
    result = _infer(triton_client, pixels, datatype, binary)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (64, 10)
    assert result.as_numpy("labels").dtype == np.int64
    np.testing.assert_allclose(probabilities, local_models[1].predict_proba(pixels), atol=1e-6)
    assert result.as_numpy("labels").tolist() == local_models[1].predict(pixels)[0].tolist()
    assert result.get_response()["model_version"] == "1"


def test_infer_with_version(triton_client, digits, local_models):
    result = _infer(triton_client, digits[0][:8], version="2")
    assert result.get_response()["model_version"] == "2"
    np.testing.assert_allclose(result.as_numpy("probabilities"), local_models[2].predict_proba(digits[0][:8]),
                               atol=1e-6)


def test_errors_come_back_through_tritonclient(triton_client):
    with pytest.raises(InferenceServerException, match=r"expected \[n, 784\]"):
        _infer(triton_client, np.zeros((2, 783)))
    with pytest.raises(InferenceServerException, match="no version 7"):
        _infer(triton_client, np.zeros((1, 784)), version="7")


def test_plain_requests_json(client, digits, local_models):
    pixels = digits[0][:3]
    body = {"id": "req-1", "inputs": [{"name": "pixels", "shape": [3, 784], "datatype": "UINT8",
                                       "data": pixels.ravel().tolist()}], "outputs": [{"name": "labels"}]}
    response = client.post("/v2/models/mnist/infer", json=body)
    assert response.status_code == 200, response.text
    reply = response.json
    assert reply["id"] == "req-1" and reply["model_name"] == "mnist"
    assert reply["outputs"] == [{"name": "labels", "datatype": "INT64", "shape": [3],
                                 "data": local_models[1].predict(pixels)[0].tolist()}]


def test_plain_requests_binary(client, digits, local_models):
    pixels = digits[0][:5].astype(np.float32)
    header = orjson.dumps({"inputs": [{"name": "pixels", "shape": [5, 784], "datatype": "FP32",
                                       "parameters": {"binary_data_size": pixels.nbytes}}],
                           "parameters": {"binary_data_output": True}})
    response = client.post("/v2/models/mnist/versions/1/infer", data=header + pixels.tobytes(),
                                      headers={"Inference-Header-Content-Length": str(len(header)),
                                               "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    size = int(response.headers["Inference-Header-Content-Length"])
    reply = orjson.loads(response.data[:size])
    assert [o["name"] for o in reply["outputs"]] == ["probabilities", "labels"]
    assert reply["outputs"][0]["parameters"]["binary_data_size"] == 5 * 10 * 4
    probabilities = np.frombuffer(response.data[size:size + 200], dtype="<f4").reshape(5, 10)
    labels = np.frombuffer(response.data[size + 200:], dtype="<i8")
    np.testing.assert_allclose(probabilities, local_models[1].predict_proba(pixels), atol=1e-6)
    assert labels.tolist() == local_models[1].predict(pixels)[0].tolist()


def test_nested_json_data(client, digits):
    pixels = digits[0][:2]
    body = {"inputs": [{"name": "pixels", "shape": [2, 784], "datatype": "FP32", "data": pixels.tolist()}]}
    reply = client.post("/v2/models/mnist/infer", json=body).json
    assert reply["outputs"][0]["shape"] == [2, 10] and len(reply["outputs"][0]["data"]) == 20
