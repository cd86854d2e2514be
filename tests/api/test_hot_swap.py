"""Promotions and new versions under concurrent load: zero failed or mixed responses."""

from __future__ import annotations

import threading
import time

import numpy as np
import requests

from core.registry import ModelRegistry
from tests.conftest import API_KEY
from tests.support import wait_until


def test_hot_swap_under_concurrent_requests(start_api, models_dir, digits, local_models):
    server = start_api(models_dir)
    pixels = digits[0][:16]
    body = {"instances": pixels.tolist()}
    # Version 3 will be a copy of version 2's weights, published while requests are in flight.
    expected = {1: local_models[1].predict_proba(pixels), 2: local_models[2].predict_proba(pixels)}
    expected[3] = expected[2]
    failures: list[str] = []
    seen: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.post(f"{server.url}/v1/models/mnist:predict", json=body, timeout=10)
                except requests.RequestException as exc:
                    failures.append(f"connection: {exc}")
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                reply = response.json()
                version = reply["model_version"]
                probabilities = np.array([p["probabilities"] for p in reply["predictions"]])
                # One model per response: all 16 rows must come from the version it names.
                if not np.allclose(probabilities, expected[version], atol=1e-6):
                    failures.append(f"response claims version {version} but rows do not match it")
                seen.append(version)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    auth = {"Authorization": f"Bearer {API_KEY}"}
    try:
        for version in (2, 1, 2, 1):
            time.sleep(0.4)
            reply = requests.put(f"{server.url}/v1/models/mnist/aliases/production", json={"version": version},
                                 headers=auth, timeout=10)
            assert reply.status_code == 200
        registry = ModelRegistry(models_dir)
        new = registry.publish_version("mnist", local_models[2].network, {"note": "copy of v2"})
        assert new == 3
        requests.put(f"{server.url}/v1/models/mnist/aliases/production", json={"version": 3}, headers=auth,
                     timeout=10).raise_for_status()
        wait_until(lambda: seen[-8:] == [3] * 8, 5, "all clients on version 3")
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert failures == []
    assert {1, 2, 3} <= set(seen)
