"""gRPC from every gunicorn worker: unmodified tritonclient.grpc agrees with REST V2, calls are
counted in /metrics, and a GRPC_PORT that is taken stops the server with a clear error."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.support import REPO_ROOT, free_port

CLIENT = Path(__file__).with_name("grpc_triton_client.py")


def triton_over_grpc(port: int, pixels: np.ndarray) -> dict:
    done = subprocess.run([sys.executable, str(CLIENT)], input=json.dumps({"address": f"127.0.0.1:{port}",
                                                                            "pixels": pixels.tolist()}),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_tritonclient_over_grpc_gets_what_rest_v2_answers(start_api, models_dir, digits) -> None:
    port = free_port()
    api = start_api(models_dir, GRPC_PORT=str(port), GRPC_HOST="127.0.0.1")
    pixels = digits[0][:5]
    seen = triton_over_grpc(port, pixels)
    body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [5, 784], "data": pixels.ravel().tolist()}]}
    rest = requests.post(api.url + "/v2/models/mnist/infer", json=body, timeout=10).json()
    rest_outputs = {o["name"]: o["data"] for o in rest["outputs"]}
    assert seen["live"] and seen["ready"] and seen["model_ready"]
    assert seen["labels"] == rest_outputs["labels"]
    np.testing.assert_allclose(np.ravel(seen["probabilities"]), rest_outputs["probabilities"], atol=1e-6)
    assert seen["response"] == {"model_version": rest["model_version"], "id": "from-triton"}
    assert seen["metadata"]["versions"] == ["1", "2"]
    assert seen["unknown_version"]["status"] == "StatusCode.NOT_FOUND"
    assert "no version 9" in seen["unknown_version"]["message"]
    metrics = requests.get(api.url + "/metrics", timeout=10).text
    assert 'mnist_grpc_request_duration_seconds_count{code="OK",method="ModelInfer",model="mnist"} 1.0' in metrics
    assert 'code="NOT_FOUND",method="ModelInfer",model="mnist"} 1.0' in metrics
    assert "fashion" not in metrics  # the client's unknown model is counted as "unknown"
    assert 'code="NOT_FOUND",method="ModelInfer",model="unknown"} 1.0' in metrics


def test_a_taken_grpc_port_stops_the_server_naming_it(start_api, models_dir) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="gunicorn exited") as failed:
            start_api(models_dir, GRPC_PORT=str(port), GRPC_HOST="127.0.0.1")
    assert f"gRPC cannot listen on 127.0.0.1:{port}" in str(failed.value)
