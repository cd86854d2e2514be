"""HTTP benchmark of the prediction API under real gunicorn (2 workers) on 127.0.0.1.

Measures, in one run and against the same server: a trivial endpoint (``/healthz``, the
ceiling), a single-instance V1 predict, a 1,000-instance V1 predict and a 1,000-instance V2
binary infer. Prints throughput and client p50/p99, the server-side time (``Server-Timing``),
the ratio single-predict / trivial (goal >= 0.8) and ms per 1,000-instance request (goals:
JSON < 100 ms, binary < 10 ms). Bounded: at most ``--requests`` per scenario and ``--seconds``.

    .venv/bin/python -m bench.http [--models-dir DIR] [--requests 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import requests

from core.datasets import load_dataset
from core.registry import ModelRegistry
from tests.support import REPO_ROOT, GunicornServer, free_port

Call = Callable[[requests.Session], requests.Response]


def ensure_model(models_dir: Path | None, mnist_dir: Path, hidden: list[int]) -> Path:
    if models_dir is not None:
        return models_dir
    from core.training_config import TrainConfig
    from trainer.pipeline import train_and_publish

    root = Path(tempfile.mkdtemp(prefix="bench-http-models-"))
    config = TrainConfig(hidden=hidden, epochs=2, dropout=0.0, augment_shift=0, early_stopping=0, seed=1)
    train_and_publish(ModelRegistry(root), "mnist", mnist_dir, config)
    return root


def run(name: str, url: str, call: Call, threads: int, max_requests: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    counter = iter(range(max_requests))
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        with requests.Session() as session:
            for _ in range(3):
                call(session)  # warm the connection and the worker's model
            while time.monotonic() < deadline:
                with lock:
                    if next(counter, None) is None:
                        return
                start = time.perf_counter()
                response = call(session)
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:100]}")
                    continue
                latencies.append(elapsed)
                timing = response.headers.get("Server-Timing", "app;dur=nan")
                server_ms.append(float(timing.split("dur=")[1]))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{name}: {len(errors)} failed requests, first: {errors[0]}")
    ms = np.array(latencies) * 1000
    return {"requests": len(ms), "rps": len(ms) / wall, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "server_p50": float(np.median(server_ms))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, help="registry with an 'mnist' model (default: train one)")
    parser.add_argument("--mnist-dir", type=Path,
                        default=Path(os.environ.get("MNIST_DIR", REPO_ROOT.parent / "shared" / "data" / "mnist")))
    parser.add_argument("--requests", type=int, default=2000, help="at most this many requests per scenario")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long per scenario")
    parser.add_argument("--threads", type=int, default=4, help="client threads (keep-alive sessions)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128],
                        help="hidden widths of the quickly trained model when no --models-dir is given")
    args = parser.parse_args()

    models = ensure_model(args.models_dir, args.mnist_dir, args.hidden)
    digits = load_dataset(args.mnist_dir).X[:1000]
    logs = Path(tempfile.mkdtemp(prefix="bench-http-logs-"))
    server = GunicornServer({"MODELS_DIR": str(models), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                             "LOG_LEVEL": "WARNING"}, logs, workers=2)
    server.start()
    url = server.url
    one = orjson.dumps({"instances": digits[:1].astype(int).tolist()})
    thousand = orjson.dumps({"instances": digits.astype(int).tolist()})
    pixels = digits.astype(np.float32)
    head = orjson.dumps({"inputs": [{"name": "pixels", "shape": [1000, 784], "datatype": "FP32",
                                     "parameters": {"binary_data_size": pixels.nbytes}}],
                         "parameters": {"binary_data_output": True}})
    binary = head + pixels.tobytes()
    json_headers = {"Content-Type": "application/json"}
    bin_headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}
    # The 1,000-instance scenarios use one client thread: on two cores, a second concurrent request
    # (or the client encoding it) would make the server time measure waiting for a core.
    scenarios: list[tuple[str, Call, int, int]] = [
        ("trivial GET /healthz", lambda s: s.get(url + "/healthz"), args.threads, args.requests),
        ("V1 predict, 1 instance", lambda s: s.post(url + "/v1/models/mnist:predict", data=one,
                                                     headers=json_headers), args.threads, args.requests),
        ("V1 predict, 1000 instances (JSON)", lambda s: s.post(url + "/v1/models/mnist:predict", data=thousand,
                                                               headers=json_headers), 1, args.requests // 10),
        ("V2 infer, 1000 instances (binary)", lambda s: s.post(url + "/v2/models/mnist/infer", data=binary,
                                                               headers=bin_headers), 1, args.requests // 4),
    ]
    try:
        results = {name: run(name, url, call, threads, count, args.seconds) for name, call, threads, count
                   in scenarios}
    finally:
        server.stop()
    print(f"gunicorn 2 workers on {url}; client: requests.Session keep-alive threads; load {os.getloadavg()[0]:.2f}")
    print(f"{'scenario':36} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'server p50 ms':>14}")
    for name, r in results.items():
        print(f"{name:36} {r['requests']:8d} {r['rps']:8.1f} {r['p50']:8.2f} {r['p99']:8.2f} {r['server_p50']:14.2f}")
    names = list(results)
    ratio = results[names[1]]["rps"] / results[names[0]]["rps"]
    print(f"ratio single-predict / trivial throughput: {ratio:.2f} (goal >= 0.8)")
    print(f"server ms per 1000-instance request: JSON {results[names[2]]['server_p50']:.1f} (goal < 100), "
          f"binary {results[names[3]]['server_p50']:.1f} (goal < 10)")


if __name__ == "__main__":
    main()
