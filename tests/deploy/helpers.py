"""Client-side checks shared by the launcher and compose end-to-end tests: predict (HTTP, gRPC), score, retrain."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter

import grpc
import numpy as np
import requests

from core.datasets import Dataset
from service.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb
from service.protocols.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc


def predict_accuracy(base_url: str, mnist: Dataset, rows: slice) -> tuple[float, int]:
    """(accuracy on ``rows`` through V1 predict, model_version that answered)."""
    X, y = mnist.X[rows], mnist.y[rows]
    response = requests.post(f"{base_url}/v1/models/mnist:predict", json={"instances": X.astype(int).tolist()},
                             timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    labels = np.array([p["label"] for p in body["predictions"]])
    assert len(labels) == len(y)
    return float((labels == y).mean()), int(body["model_version"])


def grpc_predict(port: int, pixels: np.ndarray) -> tuple[np.ndarray, str]:
    """Labels and version from a gRPC port on this host (the V2 protocol, raw contents)."""
    request = pb.ModelInferRequest(model_name="mnist", raw_input_contents=[pixels.astype("u1").tobytes()])
    request.inputs.add(name="pixels", datatype="UINT8", shape=pixels.shape)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    index = [o.name for o in response.outputs].index("labels")
    return np.frombuffer(response.raw_output_contents[index], dtype="<i8"), response.model_version


def kaggle_test_csv(mnist: Dataset, rows: slice) -> bytes:
    header = ",".join(f"pixel{i}" for i in range(784))
    buffer = io.StringIO()
    np.savetxt(buffer, mnist.X[rows].astype(np.int64), fmt="%d", delimiter=",", header=header, comments="")
    return buffer.getvalue().encode()


def wait_for_job(base_url: str, job_id: str, timeout: float, headers: dict[str, str] | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = requests.get(f"{base_url}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        if status["status"] in ("finished", "failed", "canceled"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status['status']} after {timeout}s: {status}")
        time.sleep(0.3)


def submit_score(base_url: str, mnist: Dataset, rows: slice) -> str:
    response = requests.post(f"{base_url}/v1/jobs/score", data=kaggle_test_csv(mnist, rows),
                             headers={"Content-Type": "text/csv"}, timeout=60)
    assert response.status_code == 202, response.text
    assert response.headers["Location"].endswith(response.json()["job_id"])
    return response.json()["job_id"]


def score_result_accuracy(base_url: str, job_id: str, mnist: Dataset, rows: slice) -> float:
    response = requests.get(f"{base_url}/v1/jobs/{job_id}/result", timeout=30)
    assert response.status_code == 200, response.text
    lines = response.text.strip().splitlines()
    assert lines[0] == "ImageId,Label"
    table = np.array([[int(v) for v in line.split(",")] for line in lines[1:]])
    y = mnist.y[rows]
    assert table[:, 0].tolist() == list(range(1, len(y) + 1))  # Kaggle submission layout, input order
    return float((table[:, 1] == y).mean())


def score_round_trip(base_url: str, mnist: Dataset, rows: slice, timeout: float = 120) -> float:
    job_id = submit_score(base_url, mnist, rows)
    status = wait_for_job(base_url, job_id, timeout)
    assert status["status"] == "finished", status
    return score_result_accuracy(base_url, job_id, mnist, rows)


def submit_retrain(base_url: str, api_key: str, dataset: str, config: dict) -> str:
    headers = {"Authorization": f"Bearer {api_key}"}
    refused = requests.post(f"{base_url}/v1/jobs/train", json={"dataset": dataset}, timeout=30)
    assert refused.status_code in (401, 403), refused.text  # retraining always needs the key
    response = requests.post(f"{base_url}/v1/jobs/train", headers=headers, timeout=30,
                             json={"dataset": dataset, "config": config, "promote": "always"})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def cancel_storm(base_url: str, job_id: str, headers: dict[str, str] | None = None, clients: int = 4,
                 seconds: float = 30) -> Counter[int]:
    """``clients`` threads, each repeating a cancel of ``job_id`` until it answers 409 (a retrying
    client, a double click): odd ones ``POST /v1/jobs/<id>:cancel``, even ones the deprecated
    ``DELETE /v1/jobs/<id>``. Returns how often each status code was answered."""
    codes: Counter[int] = Counter()
    lock = threading.Lock()

    def client(index: int) -> None:
        deadline = time.monotonic() + seconds
        method, url = (("POST", f"{base_url}/v1/jobs/{job_id}:cancel") if index % 2
                       else ("DELETE", f"{base_url}/v1/jobs/{job_id}"))
        with requests.Session() as session:
            while time.monotonic() < deadline:
                code = session.request(method, url, headers=headers, timeout=10).status_code
                with lock:
                    codes[code] += 1
                if code == 409:
                    return

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 15)
    return codes
