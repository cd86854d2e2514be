"""Adaptive batching (service.batching): merged passes, each caller exactly its rows and version,
errors kept to their own request, and the MAX_BATCH_SIZE / MAX_BATCH_DELAY_US bounds.

The Batcher's logic runs in process on real models with a recording wrapper (which passes ran on
which rows); the behaviour that needs processes (gunicorn threads, a swap of the production alias
under load, /metrics) runs under real gunicorn."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
import requests

from core.model import Model
from core.settings import Settings, SettingsError
from service.batching import Batcher
from tests.conftest import API_KEY


class Recording:
    """A model that records the rows of every forward pass and can refuse a poisoned row."""

    def __init__(self, model: Model, poison: float | None = None) -> None:
        self.model, self.poison = model, poison
        self.name, self.version = model.name, model.version
        self.passes: list[int] = []
        self._lock = threading.Lock()

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self.passes.append(len(pixels))
        if self.poison is not None and (pixels[:, 0] == self.poison).any():
            raise ValueError("poisoned row")
        return self.model.predict(pixels)


def run_concurrently(calls: list[Callable[[], object]], timeout: float = 30) -> list[object]:
    """Start every call at once (a barrier) on its own thread; results or exceptions, in order."""
    results: list[object] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a caller never got its answer"
    return results


def mixed_requests(pixels: np.ndarray, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` requests of 1 to 8 distinct real digits each."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, count)
    starts = rng.integers(0, len(pixels) - 8, count)
    return [pixels[s:s + n].astype(np.float32) for s, n in zip(starts, sizes, strict=True)]


def test_32_concurrent_callers_each_get_exactly_their_rows(local_models, digits):
    model = Recording(local_models[1])
    batcher = Batcher(max_batch_size=16, max_delay=0.2)
    rows = mixed_requests(digits[0], 32)
    answers = run_concurrently([lambda r=r: batcher.predict(model, r) for r in rows])
    for r, (labels, probabilities) in zip(rows, answers, strict=True):
        expected = local_models[1].predict_proba(r)
        assert probabilities.shape == (len(r), 10)
        np.testing.assert_allclose(probabilities, expected, atol=1e-6)
        assert np.array_equal(labels, expected.argmax(axis=1))
    assert sum(model.passes) == sum(len(r) for r in rows)  # every row in exactly one pass
    assert max(model.passes) <= 16  # MAX_BATCH_SIZE bounds every pass
    assert len(model.passes) < len(rows)  # and requests were merged


def test_a_full_batch_leaves_without_waiting_for_the_delay(local_models, digits):
    model = Recording(local_models[1])
    batcher = Batcher(max_batch_size=16, max_delay=600.0)  # a leader waiting out the delay would hang the test
    rows = [digits[0][4 * i:4 * i + 4].astype(np.float32) for i in range(4)]
    run_concurrently([lambda r=r: batcher.predict(model, r) for r in rows], timeout=30)
    assert model.passes == [16]


def test_a_batch_holding_every_thread_leaves_without_waiting(local_models, digits):
    model = Recording(local_models[1])
    batcher = Batcher(max_batch_size=64, max_delay=600.0, max_callers=4)  # gunicorn THREADS=4
    rows = [digits[0][i:i + 1].astype(np.float32) for i in range(4)]
    run_concurrently([lambda r=r: batcher.predict(model, r) for r in rows], timeout=30)
    assert model.passes == [4]


def test_bounds_large_requests_run_alone_and_size_1_is_off(local_models, digits):
    model = Recording(local_models[1])
    batcher = Batcher(max_batch_size=8, max_delay=0.2)
    big, small = digits[0][:8].astype(np.float32), digits[0][8:11].astype(np.float32)
    run_concurrently([lambda: batcher.predict(model, big), lambda: batcher.predict(model, big),
                      lambda: batcher.predict(model, small), lambda: batcher.predict(model, small)])
    assert sorted(model.passes) == [6, 8, 8]  # requests of MAX_BATCH_SIZE rows or more are never merged

    off = Recording(local_models[1])
    unbatched = Batcher(max_batch_size=1, max_delay=0.2)
    run_concurrently([lambda: unbatched.predict(off, digits[0][:1].astype(np.float32)) for _ in range(8)])
    assert off.passes == [1] * 8


def test_a_failing_request_never_fails_another(local_models, digits):
    model = Recording(local_models[1], poison=255.0)
    batcher = Batcher(max_batch_size=64, max_delay=0.2)
    rows = mixed_requests(digits[0], 12, seed=3)
    poisoned = rows[5].copy()
    poisoned[0, 0] = 255.0
    rows[5] = poisoned
    answers = run_concurrently([lambda r=r: batcher.predict(model, r) for r in rows])
    assert isinstance(answers[5], ValueError) and str(answers[5]) == "poisoned row"
    for i, (r, answer) in enumerate(zip(rows, answers, strict=True)):
        if i != 5:
            np.testing.assert_allclose(answer[1], local_models[1].predict_proba(r), atol=1e-6)
    # The merged pass failed; then each request ran alone, so the others still got answers.
    assert len(model.passes) > 1


def test_two_versions_never_share_a_pass(local_models, digits):
    one, two = Recording(local_models[1]), Recording(local_models[2])
    batcher = Batcher(max_batch_size=32, max_delay=0.2)
    rows = mixed_requests(digits[0], 24, seed=5)
    models = [one if i % 2 else two for i in range(len(rows))]
    answers = run_concurrently([lambda r=r, m=m: batcher.predict(m, r) for r, m in zip(rows, models, strict=True)])
    for r, m, (_, probabilities) in zip(rows, models, answers, strict=True):
        np.testing.assert_allclose(probabilities, m.model.predict_proba(r), atol=1e-6)
    # Each recorder saw only its own model's rows: 12 requests each, all accounted for.
    assert sum(one.passes) == sum(len(r) for r, m in zip(rows, models, strict=True) if m is one)
    assert sum(two.passes) == sum(len(r) for r, m in zip(rows, models, strict=True) if m is two)


def test_settings_bounds():
    assert Settings().max_batch_size >= 1 and Settings().max_batch_delay_us >= 0
    for bad in ({"max_batch_size": 0}, {"max_batch_size": 65537}, {"max_batch_delay_us": -1},
                {"max_batch_delay_us": 1_000_001}):
        with pytest.raises(SettingsError, match=next(iter(bad)).upper()):
            Settings(**bad)


# ---------------------------------------------------------------- under gunicorn


def _post(session: requests.Session, url: str, rows: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    response = session.post(f"{url}/v1/models/mnist:predict", json={"instances": rows.astype(int).tolist()},
                            timeout=30)
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    predictions = body["predictions"]
    return (body["model_version"], np.array([p["label"] for p in predictions]),
            np.array([p["probabilities"] for p in predictions]))


def test_gunicorn_merges_concurrent_requests_and_answers_each_exactly(start_api, models_dir, digits, local_models):
    server = start_api(models_dir, workers=1, THREADS="8", MAX_BATCH_SIZE="64", MAX_BATCH_DELAY_US="20000")
    rows = mixed_requests(digits[0], 32, seed=7)
    sessions = [requests.Session() for _ in rows]
    answers = run_concurrently([lambda r=r, s=s: _post(s, server.url, r) for r, s in zip(rows, sessions, strict=True)])
    for r, answer in zip(rows, answers, strict=True):
        assert not isinstance(answer, Exception), answer
        version, labels, probabilities = answer
        expected = local_models[version].predict_proba(r.astype(np.float32))
        np.testing.assert_allclose(probabilities, expected, atol=1e-6)
        assert np.array_equal(labels, expected.argmax(axis=1))
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    count = _sample(metrics, 'mnist_batch_size_requests_count{model="mnist"}')
    total = _sample(metrics, 'mnist_batch_size_requests_sum{model="mnist"}')
    assert total == len(rows)  # every request went through one batched pass
    assert count < len(rows)  # in fewer passes than requests: merged across gunicorn's threads
    assert _sample(metrics, 'mnist_batch_queue_delay_seconds_count{model="mnist"}') == len(rows)
    for session in sessions:
        session.close()


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_swap_during_batching_never_mixes_versions(start_api, models_dir, digits, local_models):
    server = start_api(models_dir, workers=1, THREADS="8", MAX_BATCH_SIZE="64", MAX_BATCH_DELAY_US="5000")
    rows = mixed_requests(digits[0], 8, seed=11)
    failures: list[str] = []
    seen: set[int] = set()
    stop = threading.Event()

    def client(r: np.ndarray) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    version, _, probabilities = _post(session, server.url, r)
                except (AssertionError, requests.RequestException) as exc:
                    failures.append(repr(exc))
                    return
                seen.add(version)
                # The version named in the answer made exactly these rows' probabilities.
                if not np.allclose(probabilities, local_models[version].predict_proba(r.astype(np.float32)),
                                   atol=1e-6):
                    failures.append(f"answer claims version {version} but its rows do not match it")

    threads = [threading.Thread(target=client, args=(r,)) for r in rows]
    for thread in threads:
        thread.start()
    try:
        for version in (2, 1, 2, 1, 2):
            time.sleep(0.4)
            requests.put(f"{server.url}/v1/models/mnist/aliases/production", json={"version": version},
                         headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).raise_for_status()
        time.sleep(0.4)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert seen == {1, 2}
