"""Where a request's time goes inside the app: ``/healthz`` against one-digit V1 and V2 predictions, in process.

The WSGI app is called directly with a prepared environ (no HTTP, no test client, whose own
environ building would dominate), with prometheus_client in multiprocess mode as under gunicorn
and the access log written to /dev/null. Prints each request's CPU time (best of 5 alternating
runs) and their ratio, then, with ``--profile``, cProfile's top functions for one of them.

    .venv/bin/python -m bench.profile_requests --models-dir DIR [--requests 2000] [--profile predict|v2]
                                               [--sort cumulative] [--repo CHECKOUT] [--bare]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="profile-metrics-"))
for _blas in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_blas, "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True, help="registry with a production 'mnist'")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--profile", choices=("health", "predict", "v2"))
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--repo", type=Path, help="profile another checkout's service (e.g. a copy of main)")
    parser.add_argument("--bare", action="store_true",
                        help="the bare Flask floor of bench.peers instead of the service (same harness)")
    args = parser.parse_args()
    if args.repo is not None:
        sys.path.insert(0, str(args.repo.resolve()))

    import cProfile
    import logging
    import pstats

    import orjson
    from werkzeug.test import EnvironBuilder

    from core.datasets import load_dataset
    from core.settings import Settings
    from service import create_app
    from tests.support import MNIST_DIR

    if args.bare:
        from bench.peers import bare_app

        os.environ["MODELS_DIR"] = str(args.models_dir)
        app = bare_app()
    else:
        app = create_app(Settings(models_dir=args.models_dir, log_level="WARNING"))
    for handler in logging.getLogger("mnist_serve.access").handlers:
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (for the process's lifetime)
    digit = load_dataset(MNIST_DIR).X[:1].astype(int)
    body = orjson.dumps({"instances": digit.tolist()})
    v2_body = orjson.dumps({"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "UINT8",
                                        "data": digit.ravel().tolist()}]})

    def environ(path: str, data: bytes | None) -> dict:
        built = EnvironBuilder(path=path, method="POST" if data else "GET", data=data,
                               headers={"Content-Type": "application/json"} if data else {}).get_environ()
        built.pop("wsgi.input")
        return built

    prepared = {"health": (environ("/healthz", None), b""),
                "predict": (environ("/v1/models/mnist:predict", body), body)}
    if not args.bare:  # the floor answers V1 only
        prepared["v2"] = (environ("/v2/models/mnist/infer", v2_body), v2_body)

    def call(name: str) -> None:
        base, data = prepared[name]
        statuses: list[str] = []
        answer = app({**base, "wsgi.input": io.BytesIO(data)},
                     lambda status, headers, exc=None: statuses.append(status))
        b"".join(answer)
        if not statuses[0].startswith("200"):
            raise SystemExit(f"{name}: {statuses[0]}")

    for name in prepared:
        for _ in range(300):  # warm: model loaded, label children created
            call(name)
    best: dict[str, float] = {}
    for name in tuple(prepared) * 5:
        started = time.process_time()
        for _ in range(args.requests):
            call(name)
        best[name] = min(best.get(name, float("inf")), (time.process_time() - started) / args.requests * 1000)
    print(f"CPU per request (best of 5): /healthz {best['health']:.3f} ms, V1 predict (1 digit) "
          f"{best['predict']:.3f} ms, ratio {best['health'] / best['predict']:.2f}"
          + (f", V2 infer (1 digit) {best['v2']:.3f} ms" if "v2" in best else "")
          + f"; load average {os.getloadavg()[0]:.2f}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.requests):
            call(args.profile)
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
