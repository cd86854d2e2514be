"""Slow clients (slowloris) against the API: bare gunicorn vs nginx in front, in one run.

The same gunicorn (2 gthread workers x 4 threads, a quickly trained model) is measured twice:
once alone, as main's setup published it, and once behind nginx configured by the product's
deploy/nginx-config (the template docker-compose and deploy/run-local use). Each time ``--slow``
sockets trickle a request header (one byte a second) or a body (one byte every
``--body-interval`` seconds), and any socket the server closes is reopened at once, so that many
stay in flight for ``--seconds``; meanwhile one normal client sends one-instance predictions, each
on a fresh connection with a ``--request-timeout``. Prints the normal client's success fraction and
p50/p99, how many slow sockets the server closed and after how long, and nginx's peak RSS.

    .venv/bin/python -m bench.slow_clients [--slow 256] [--seconds 60] [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from bench.http import ensure_model
from core.datasets import load_dataset
from tests.deploy.proxy import NginxProxy, ScenarioResult, slow_client_scenario
from tests.support import MNIST_DIR, GunicornServer, free_port


def describe(name: str, result: ScenarioResult) -> str:
    closes = result.slow.seconds_to_close
    parts = [f"{name:22} {result.attempts:8d} {result.success_fraction:8.3f} {result.percentile_ms(50):8.1f} "
             f"{result.percentile_ms(99):8.1f} {result.slow.opened:7d}"]
    for kind in ("header", "body"):
        times = closes[kind]
        median = f"{np.median(times):.1f}s" if times else "-"
        parts.append(f"{len(times):6d} ({median:>6})")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, help="registry with an 'mnist' model (default: train one)")
    parser.add_argument("--mnist-dir", type=Path,
                        default=MNIST_DIR)
    parser.add_argument("--slow", type=int, default=256, help="slow sockets kept in flight")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the normal client runs per setup")
    parser.add_argument("--body-interval", type=float, default=15.0,
                        help="seconds between two body bytes of a slow body (above PROXY_BODY_TIMEOUT: closed)")
    parser.add_argument("--request-timeout", type=float, default=5.0, help="the normal client's timeout, seconds")
    args = parser.parse_args()

    models = ensure_model(args.models_dir, args.mnist_dir, [128])
    instances = load_dataset(args.mnist_dir).X[:1].astype(int).tolist()
    work = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    server = GunicornServer({"MODELS_DIR": str(models), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                             "LOG_LEVEL": "WARNING", "THREADS": "4"}, work / "logs", workers=2)
    server.start()
    proxy = NginxProxy(f"127.0.0.1:{server.port}", work / "nginx")
    results: dict[str, ScenarioResult] = {}
    peak_rss = [0]
    stop_sampling = threading.Event()

    def sample_rss() -> None:
        while not stop_sampling.wait(0.5):
            peak_rss[0] = max(peak_rss[0], proxy.rss_kib())

    try:
        proxy.start()
        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        results["nginx + gunicorn"] = slow_client_scenario(proxy.port, instances, args.slow, args.seconds,
                                                           args.request_timeout, body_interval=args.body_interval)
        stop_sampling.set()
        # Bare gunicorn last: its threads stay stuck until the slow sockets are gone.
        results["gunicorn alone (main)"] = slow_client_scenario(server.port, instances, args.slow, args.seconds,
                                                                args.request_timeout,
                                                                body_interval=args.body_interval)
    finally:
        stop_sampling.set()
        proxy.stop()
        server.stop()

    print(f"{args.slow} slow sockets for {args.seconds:.0f}s (header 1 byte/s, body 1 byte/{args.body_interval:.0f}s, "
          f"reopened when closed); normal client: 1-instance predictions, {args.request_timeout:.0f}s timeout; "
          f"gunicorn 2 workers x 4 threads; proxy timeouts: header/body "
          f"{os.environ.get('PROXY_HEADER_TIMEOUT', '10')}/{os.environ.get('PROXY_BODY_TIMEOUT', '10')}s; "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'setup':22} {'requests':>8} {'ok frac':>8} {'p50 ms':>8} {'p99 ms':>8} {'opened':>7} "
          f"{'closed header (median)':>22} {'closed body (median)':>20}")
    for name, result in results.items():
        print(describe(name, result))
    proxied, bare = results["nginx + gunicorn"], results["gunicorn alone (main)"]
    print(f"success fraction: proxied {proxied.success_fraction:.3f} vs bare {bare.success_fraction:.3f} "
          f"(goal >= 0.99); proxied p99 {proxied.percentile_ms(99):.1f} ms (goal < 250); "
          f"nginx peak RSS {peak_rss[0] / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
