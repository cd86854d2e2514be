"""1,000-instance requests: the server's time against the bare forward pass of the same rows and model.

One gunicorn worker (``deploy/gunicorn.conf.py``: one BLAS thread) serves a 784-1024-10 model
(the trainer's default architecture; untrained weights, which cost the same). Each round measures,
one after the other so they share the machine's load:

- bare: ``Model.predict_proba`` of 1,000 real MNIST digits in this process, one BLAS thread, as a
  worker runs it;
- V1 JSON, plain rows (``{"instances": [[...]]}``, what orjson writes): the numpy fast path;
- V1 JSON, the same rows plus ``"signature_name"``: a body the fast path declines, so this is the
  general path (orjson, one Python int per pixel) measured in the same run: the "before" figure;
- V2 binary FP32 (``Inference-Header-Content-Length``).

Server time is the app's ``Server-Timing`` header (body read, decode, validation, forward pass and
response encoding); ratios are medians over every request against the median bare pass. The same
requests also go through the app in this process (Flask's test client, on the thread that runs the
bare pass): on a busy machine a server's thread wake-ups wait for a core and inflate its time, a
loop on one thread does not, so the in-process column shows the code's own cost.

    .venv/bin/python -m bench.bulk_json [--rounds 5] [--requests 10] [--hidden 1024] [--rows 1000]
"""

from __future__ import annotations

import os

# One BLAS thread, as deploy/gunicorn.conf.py gives every worker: the bare pass must run in the
# same thread configuration as the server's. Set before numpy is imported.
for _blas in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_blas] = "1"

import argparse  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import requests  # noqa: E402

from core.datasets import load_dataset  # noqa: E402
from core.network import Network  # noqa: E402
from core.registry import ModelRegistry  # noqa: E402
from core.settings import Settings  # noqa: E402
from service.app import create_app  # noqa: E402
from tests.support import MNIST_DIR, GunicornServer, free_port  # noqa: E402

_DUR = re.compile(r"dur=([\d.]+)")


def untrained_model(root: Path, hidden: list[int]) -> Path:
    """A registry at ``root`` whose 'mnist' v1 (production) is an untrained 784-hidden-10 MLP.

    Serving cost does not depend on the weights' values, and a wide model (4096 4096) would take
    minutes to train. Also used by bench.batching."""
    ModelRegistry(root).publish_version("mnist", Network.mlp([784, *hidden, 10], seed=1), {"note": "benchmark"})
    return root


def bodies(digits: np.ndarray) -> dict[str, tuple[bytes, dict[str, str]]]:
    rows = digits.astype(int).tolist()
    pixels = digits.astype(np.float32)
    head = orjson.dumps({"inputs": [{"name": "pixels", "shape": list(pixels.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": pixels.nbytes}}],
                         "parameters": {"binary_data_output": True}})
    json_type = {"Content-Type": "application/json"}
    return {
        "V1 JSON, plain rows (fast path)": (orjson.dumps({"instances": rows}), json_type),
        "V1 JSON, general path": (orjson.dumps({"instances": rows, "signature_name": "serving_default"}), json_type),
        "V2 binary FP32": (head + pixels.tobytes(), {"Content-Type": "application/octet-stream",
                                                      "Inference-Header-Content-Length": str(len(head))}),
    }


def server_ms(session: requests.Session, url: str, body: bytes, headers: dict[str, str]) -> float:
    response = session.post(url, data=body, headers=headers, timeout=60)
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}: {response.text[:200]}")
    match = _DUR.search(response.headers.get("Server-Timing", ""))
    if match is None:
        raise SystemExit("the app sent no Server-Timing header: this benchmark reads the server's time from it")
    return float(match[1])


def in_process_ms(client, path: str, body: bytes, headers: dict[str, str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.post(path, data=body, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code} in process: {response.text[:200]}")
    return times


def bare_ms(model, pixels: np.ndarray, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_proba(pixels)
        times.append((time.perf_counter() - started) * 1000)
    return times


def worker_peak_rss_mb(master: int) -> float:
    """VmHWM of gunicorn's workers (children of ``master``), the largest, in MB."""
    peak = 0.0
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) != master:
                    continue
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except (OSError, ValueError, IndexError):
            continue
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (bare, then each request kind)")
    parser.add_argument("--requests", type=int, default=10, help="requests of each kind per round")
    parser.add_argument("--rows", type=int, default=1000, help="instances per request")
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024], help="hidden widths of the model")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 50 or not 1 <= args.requests <= 100 or not 1 <= args.rows <= 4096:
        parser.error("--rounds 1..50, --requests 1..100, --rows 1..4096")
    tmp = Path(tempfile.mkdtemp(prefix="bench-bulk-json-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    models = untrained_model(tmp / "models", args.hidden)
    model = ModelRegistry(models).load("mnist")
    digits = load_dataset(args.mnist_dir).X[:args.rows]
    pixels = digits.astype(np.float32)
    found = bodies(digits)
    server = GunicornServer({"MODELS_DIR": str(models), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                             "LOG_LEVEL": "WARNING"}, tmp / "logs", workers=1)
    redis_url = f"redis://127.0.0.1:{free_port()}/0"  # never contacted: predictions do not touch Redis
    client = create_app(Settings(models_dir=models, redis_url=redis_url, log_level="WARNING")).test_client()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the access log still formats each line, as in a worker
    for handler in logging.getLogger("mnist_serve.access").handlers:
        handler.setStream(devnull)
    paths = {name: "/v2/models/mnist/infer" if name.startswith("V2") else "/v1/models/mnist:predict" for name in found}
    times: dict[str, list[float]] = {"bare predict_proba": [], **{name: [] for name in found}}
    local: dict[str, list[float]] = {name: [] for name in found}
    for name, (body, headers) in found.items():
        in_process_ms(client, paths[name], body, headers, 2)
    server.start()
    try:
        load_before = os.getloadavg()[0]
        with requests.Session() as session:
            for name, (body, headers) in found.items():  # warm: the model loaded, code paths run once
                server_ms(session, server.url + paths[name], body, headers)
            bare_ms(model, pixels, 3)
            for _ in range(args.rounds):
                times["bare predict_proba"] += bare_ms(model, pixels, args.requests)
                for name, (body, headers) in found.items():
                    local[name] += in_process_ms(client, paths[name], body, headers, args.requests)
                    times[name] += [server_ms(session, server.url + paths[name], body, headers)
                                    for _ in range(args.requests)]
        worker_rss = worker_peak_rss_mb(server.proc.pid)
    finally:
        server.stop()
    bare = float(np.median(times["bare predict_proba"]))
    print(f"{args.rows} instances, model 784-{'-'.join(map(str, args.hidden))}-10, one gunicorn worker, one BLAS "
          f"thread; {args.rounds} rounds x {args.requests} requests of each kind")
    print(f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'':36} {'body MB':>8} {'server p50 ms':>13} {'p90 ms':>8} {'/ bare':>7} {'in-process ms':>13} "
          f"{'/ bare':>7}")
    for name, measured in times.items():
        size = f"{len(found[name][0]) / 1e6:8.2f}" if name in found else f"{'-':>8}"
        p50, p90 = np.percentile(measured, [50, 90])
        here = float(np.median(local[name])) if name in local else bare
        print(f"{name:36} {size} {p50:13.2f} {p90:8.2f} {p50 / bare:7.2f} {here:13.2f} {here / bare:7.2f}")
    print(f"peak RSS: gunicorn worker {worker_rss:.0f} MB, this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
