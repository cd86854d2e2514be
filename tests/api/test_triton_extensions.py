"""The unmodified tritonclient against real gunicorn with two workers: the repository index, unload
and load for the whole server, model configuration and server-wide statistics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import API_KEY
from tests.support import wait_until

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _worker_pids(url: str) -> set[str]:
    """The gunicorn workers that have answered a prediction (each sets its served-version gauge)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {line.split('pid="')[1].split('"')[0] for line in text.splitlines()
            if line.startswith("mnist_model_version_served{")}


def _infer_on_both_workers(url: str, pixels: np.ndarray) -> int:
    """Concurrent inferences on fresh connections until both workers have answered; how many were sent.

    A worker with free threads takes every connection it can, so the requests must overlap: 16 at
    once, each a batch large enough to take a few milliseconds.
    """
    address = url.removeprefix("http://")
    sent = 0
    with ThreadPoolExecutor(16) as pool:
        while len(_worker_pids(url)) < 2:
            assert sent < 640, "one worker answered everything"
            list(pool.map(lambda _: _infer(triton.InferenceServerClient(address), pixels), range(16)))
            sent += 16
    return sent


def _infer(client: triton.InferenceServerClient, pixels: np.ndarray) -> triton.InferResult:
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels.astype(np.float32), binary_data=True)
    return client.infer("mnist", [tensor])


def test_repository_calls_and_infer_after_unload_and_load(start_api, models_dir, digits):
    server = start_api(models_dir, workers=2)  # WEB_CONCURRENCY=2: the unload must hold in both
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), concurrency=4)
    pixels = digits[0][:4]
    assert _infer(client, pixels).as_numpy("labels").shape == (4,)
    _infer_on_both_workers(server.url, digits[0])  # both hold the model: both must let it go
    assert client.get_model_repository_index() == [
        {"name": "mnist", "version": v, "state": "READY", "reason": ""} for v in ("1", "2")]
    config = client.get_model_config("mnist")
    assert config["max_batch_size"] == 4096 and config["input"][0]["data_type"] == "TYPE_FP32"
    assert client.get_model_config("mnist", "2")["name"] == "mnist"

    with pytest.raises(InferenceServerException, match="missing 'Authorization"):
        client.unload_model("mnist")
    client.unload_model("mnist", headers=AUTH)
    client.unload_model("mnist", headers=AUTH)  # idempotent

    def refused_everywhere() -> bool:  # fresh connections reach both workers
        for _ in range(10):
            try:
                _infer(triton.InferenceServerClient(server.url.removeprefix("http://")), pixels)
                return False
            except InferenceServerException as exc:
                assert "is unloaded; POST /v2/repository/models/mnist/load" in str(exc)
        return True

    wait_until(refused_everywhere, 3, "both workers to refuse the unloaded model")
    wait_until(lambda: not client.is_model_ready("mnist"), 3, "the client's worker to unload too")  # as below
    assert client.is_server_ready()
    assert [e["state"] for e in client.get_model_repository_index()] == ["UNAVAILABLE", "UNAVAILABLE"]

    client.load_model("mnist", headers=AUTH)

    def served_everywhere() -> bool:
        try:
            return all(_infer(triton.InferenceServerClient(server.url.removeprefix("http://")), pixels)
                       .get_response()["model_version"] == "1" for _ in range(10))
        except InferenceServerException:
            return False

    wait_until(served_everywhere, 3, "both workers to serve mnist again")
    # Ten fresh connections can all land on one worker; the pooled client's may be on the other,
    # which takes the load within its reload interval (0.2 s here).
    wait_until(lambda: client.is_model_ready("mnist"), 3, "the model ready on the client's worker too")
    with pytest.raises(InferenceServerException, match="unknown model 'cifar'"):
        client.load_model("cifar", headers=AUTH)


def test_statistics_are_server_wide(start_api, models_dir, digits):
    server = start_api(models_dir, workers=2)
    address = server.url.removeprefix("http://")
    sent = _infer_on_both_workers(server.url, digits[0])  # both workers' counts add up below
    stats = triton.InferenceServerClient(address).get_inference_statistics("mnist", "1")
    (entry,) = stats["model_stats"]
    assert (entry["name"], entry["version"]) == ("mnist", "1")
    assert entry["inference_stats"]["success"]["count"] == sent and entry["inference_count"] == len(digits[0]) * sent
    assert entry["inference_stats"]["success"]["ns"] > 0 and entry["last_inference"] > 0
    everything = triton.InferenceServerClient(address).get_inference_statistics()
    assert [(e["name"], e["version"]) for e in everything["model_stats"]] == [("mnist", "1"), ("mnist", "2")]
