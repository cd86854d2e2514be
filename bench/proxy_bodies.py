"""Large bodies through the proxy: a 64 MiB prediction request and a large CSV upload, timed
against the same gunicorn reached directly, with nginx's peak RSS.

nginx spools any body above 64 KiB to a temp file and only then passes it to gunicorn, so the
extra cost is one disk write and one loopback copy; its memory must not grow with the body.
The prediction body is one valid instance padded with JSON whitespace to ``--predict-mib`` (the
app parses all of it); the upload is a Kaggle test.csv of real MNIST rows repeated to
``--upload-mib``, submitted as a scoring job (a private redis-server takes the job id; no worker
runs it).

    .venv/bin/python -m bench.proxy_bodies [--predict-mib 63] [--upload-mib 512]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from bench.http import ensure_model
from core.datasets import load_dataset
from tests.deploy.helpers import kaggle_test_csv
from tests.deploy.proxy import NginxProxy
from tests.support import MNIST_DIR, GunicornServer, RedisServer


def timed(call: Callable[[], requests.Response]) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - started
    if response.status_code not in (200, 202):
        raise SystemExit(f"{response.status_code}: {response.text[:200]}")
    return elapsed


def repeated(block: bytes, header: bytes, total: int) -> Iterator[bytes]:
    """``header`` then whole ``block``s while they fit in ``total`` bytes, streamed (chunked upload)."""
    yield header
    sent = len(header)
    while sent + len(block) <= total:
        yield block
        sent += len(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, help="registry with an 'mnist' model (default: train one)")
    parser.add_argument("--mnist-dir", type=Path,
                        default=MNIST_DIR)
    parser.add_argument("--predict-mib", type=float, default=63.0, help="prediction body size (limit: 64 MiB)")
    parser.add_argument("--upload-mib", type=float, default=512.0, help="CSV upload size")
    args = parser.parse_args()

    models = ensure_model(args.models_dir, args.mnist_dir, [128])
    mnist = load_dataset(args.mnist_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-bodies-"))
    redis = RedisServer(work / "redis")
    redis.start()
    server = GunicornServer({"MODELS_DIR": str(models), "REDIS_URL": redis.url, "JOBS_DIR": str(work / "jobs"),
                             "LOG_LEVEL": "WARNING"}, work / "logs", workers=2)
    proxy = NginxProxy(f"127.0.0.1:{server.port}", work / "nginx")
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], proxy.rss_kib())

    instance = str(mnist.X[0].astype(int).tolist()).encode()
    predict_body = b'{"instances": [' + instance + b"]}"
    predict_body += b" " * (int(args.predict_mib * 2**20) - len(predict_body))
    csv = kaggle_test_csv(mnist, slice(0, 10_000))
    header, rows = csv.split(b"\n", 1)
    header += b"\n"
    upload_bytes = int(args.upload_mib * 2**20)
    results: dict[str, dict[str, float]] = {}
    try:
        server.start()
        proxy.start()
        idle = proxy.rss_kib()
        threading.Thread(target=sample, daemon=True).start()
        for name, url in (("gunicorn alone", server.url), ("nginx + gunicorn", proxy.url)):
            results[name] = {
                "predict": timed(lambda u=url: requests.post(
                    u + "/v1/models/mnist:predict", data=predict_body,
                    headers={"Content-Type": "application/json"}, timeout=600)),
                "upload": timed(lambda u=url: requests.post(
                    u + "/v1/jobs/score", data=repeated(rows, header, upload_bytes),
                    headers={"Content-Type": "text/csv"}, timeout=1200)),
            }
        done.set()
    finally:
        done.set()
        proxy.stop()
        server.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)  # the uploads: twice --upload-mib

    print(f"prediction body {args.predict_mib:.0f} MiB (one instance + JSON whitespace); CSV upload "
          f"{args.upload_mib:.0f} MiB, chunked; gunicorn 2 workers; load {os.getloadavg()[0]:.2f}")
    print(f"{'setup':18} {'predict s':>10} {'upload s':>10} {'upload MiB/s':>13}")
    for name, r in results.items():
        print(f"{name:18} {r['predict']:10.2f} {r['upload']:10.2f} {args.upload_mib / r['upload']:13.1f}")
    bare, proxied = results["gunicorn alone"], results["nginx + gunicorn"]
    print(f"proxied / direct time: predict {proxied['predict'] / bare['predict']:.2f}, "
          f"upload {proxied['upload'] / bare['upload']:.2f}; nginx RSS idle {idle / 1024:.1f} MiB, "
          f"peak {peak[0] / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
