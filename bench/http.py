"""HTTP benchmark of the prediction API under real gunicorn on 127.0.0.1, load driven by ``wrk``.

Measures, in one run and against the same server: ``/healthz`` (the trivial reference), a
single-instance V1 predict and a single-instance V2 infer (one real MNIST digit, JSON) at 1, 8
and 64 connections, printing req/s, p50, p99 and the ratio predict / healthz at each; then a
1,000-instance V1 predict (JSON) and a 1,000-instance V2 infer (binary FP32) on one connection,
with the app's own time (``Server-Timing``). Beside each row: wrk's CPU share (a load generator
near a full core is measuring itself) and the server's CPU in cores. Gunicorn is reached
directly unless ``--proxy`` puts nginx (deploy/nginx-config) in front.

``--floor`` serves the bare Flask app of ``bench.peers`` instead (parse, check, forward pass, encode;
no metrics, logs, limits or registry) under the same gunicorn settings, V1 and ``/healthz`` only: what
no cut to mnist-serve's own per-request code can go beyond on this machine. It adds a row for the
floor's ``/forward-only``: the same POST body, read and ignored, and one forward pass of the model.

    .venv/bin/python -m bench.http [--seconds 3] [--rounds 1] [--connections 1 8 64] [--workers 2] [--threads 4]
                                   [--proxy] [--no-big] [--floor] [--models-dir DIR] [--env NAME=VALUE ...]
                                   [--repo CHECKOUT]

``--env`` passes settings to gunicorn and the app (``WORKER_CLASS=gevent``, ``REUSE_PORT=0``,
``ACCESS_LOG_SAMPLE=0.01``); ``--repo`` serves another checkout's service (for a before/after pair,
with this checkout's gunicorn config).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import requests

from bench.wrk import WrkResult, cpu_seconds, lua_script, run_wrk, wrk_binary
from core.datasets import load_dataset
from core.registry import ModelRegistry
from tests.support import MNIST_DIR, REPO_ROOT, GunicornServer, free_port

# scenario, connections, what wrk measured, server CPU in cores, each worker's CPU in cores
Row = tuple[str, int, WrkResult, float, list[float]]
WRK_CPU_WARN = 0.5  # of one core: above this, wrk's own speed may be what the row measures


SMALL = (("healthz", "GET /healthz"), ("v1_one", "V1 predict, 1 instance"), ("v2_one", "V2 infer, 1 instance (JSON)"))
FLOOR_ONLY = (("forward_only", "forward pass only (floor)"),)  # bench.peers' /forward-only
BIG = (("v1_many", "V1 predict, 1000 instances (JSON)"), ("v2_many", "V2 infer, 1000 instances (binary)"))


@dataclass
class Request:
    path: str
    body: bytes | None = None  # None: a GET
    headers: dict[str, str] = field(default_factory=dict)
    script: Path | None = None  # the wrk Lua script sending this request


def ensure_model(models_dir: Path | None, mnist_dir: Path, hidden: list[int], root: Path | None = None) -> Path:
    """``models_dir`` if given, else a quick model trained into ``root`` (default: a new temp folder).

    Also used by bench.images, bench.slow_clients and bench.proxy_bodies."""
    if models_dir is not None:
        return models_dir
    root = root or Path(tempfile.mkdtemp(prefix="bench-models-"))
    from core.training_config import TrainConfig
    from trainer.pipeline import train_and_publish

    config = TrainConfig(hidden=hidden, epochs=2, dropout=0.0, augment_shift=0, early_stopping=0, seed=1)
    train_and_publish(ModelRegistry(root), "mnist", mnist_dir, config)
    return root


def requests_for(digits: np.ndarray, tmp: Path) -> dict[str, Request]:
    """The benchmark's requests; each POST also written as a body file and a wrk script reading it."""
    one = digits[:1].astype(int).tolist()
    pixels = digits.astype(np.float32)
    head = orjson.dumps({"inputs": [{"name": "pixels", "shape": list(pixels.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": pixels.nbytes}}],
                         "parameters": {"binary_data_output": True}})
    json_type = {"Content-Type": "application/json"}
    found = {
        "healthz": Request("/healthz"),
        "v1_one": Request("/v1/models/mnist:predict", orjson.dumps({"instances": one}), json_type),
        "forward_only": Request("/forward-only", orjson.dumps({"instances": one}), json_type),
        "v2_one": Request("/v2/models/mnist/infer", orjson.dumps(
            {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "UINT8", "data": one}]}), json_type),
        "v1_many": Request("/v1/models/mnist:predict", orjson.dumps({"instances": digits.astype(int).tolist()}),
                           json_type),
        "v2_many": Request("/v2/models/mnist/infer", head + pixels.tobytes(),
                           {"Content-Type": "application/octet-stream",
                            "Inference-Header-Content-Length": str(len(head))}),
    }
    for key, request in found.items():
        if request.body is not None:
            (tmp / f"{key}.body").write_bytes(request.body)
            # Server-Timing is collected by a Lua hook that slows wrk: only for the slow big requests.
            request.script = lua_script(tmp / f"{key}.lua", "POST", request.headers, tmp / f"{key}.body",
                                        server_timing=key.endswith("many"))
    return found


def warm(url: str, found: dict[str, Request]) -> None:
    """A few answered requests of each kind, so that no worker loads its model inside a timed run."""
    with requests.Session() as session:
        for key, request in found.items():
            for _ in range(4):
                response = (session.get(url + request.path, timeout=30) if request.body is None else
                            session.post(url + request.path, data=request.body, headers=request.headers, timeout=30))
                if response.status_code != 200:
                    raise SystemExit(f"{key}: warm-up answered {response.status_code}: {response.text[:200]}")


def server_pids(master: int) -> list[int]:
    """gunicorn's master and its workers (the processes whose parent is the master)."""
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == master:  # exited meanwhile: skipped
                    pids.append(int(entry))
    return pids


def server_cpu(pids: list[int]) -> list[float]:
    """CPU seconds of each process (0 for one that exited)."""
    found = []
    for pid in pids:
        try:
            found.append(cpu_seconds(pid))
        except OSError:
            found.append(0.0)
    return found


def measure(url: str, request: Request, connections: int, seconds: float,
            pids: list[int]) -> tuple[WrkResult, float, list[float]]:
    """One wrk run; also the server's CPU over it, in cores (CPU seconds / wall seconds), in all and
    per worker (``pids[1:]``): whether the connections reached every worker shows there."""
    cpu_before, started = server_cpu(pids), time.monotonic()
    result = run_wrk(url + request.path, connections, seconds, request.script)
    wall = time.monotonic() - started
    cores = [(after - before) / wall for before, after in zip(cpu_before, server_cpu(pids), strict=True)]
    return result, sum(cores), cores[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, help="registry with an 'mnist' model (default: train one)")
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each wrk run (whole seconds)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64],
                        help="wrk connections for the single-instance scenarios")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every row this many times (alternating order) and keep the median")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--threads", type=int, default=4, help="gthread threads per worker (THREADS)")
    parser.add_argument("--proxy", action="store_true", help="send the load through nginx (deploy/nginx-config)")
    parser.add_argument("--no-big", action="store_true", help="skip the 1,000-instance scenarios")
    parser.add_argument("--floor", action="store_true",
                        help="serve the bare Flask floor (bench.peers) instead: V1 and /healthz only")
    parser.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="environment for gunicorn and the app, e.g. WORKER_CLASS=gevent REUSE_PORT=0")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="checkout whose service is served")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128],
                        help="hidden widths of the quickly trained model when no --models-dir is given")
    args = parser.parse_args()
    if wrk_binary() is None:
        print("bench.http needs wrk: apt-get install -y wrk", file=sys.stderr)
        raise SystemExit(2)
    if not 1 <= args.seconds <= 60 or not 1 <= args.rounds <= 9 or not 1 <= min(args.connections) <= max(
            args.connections) <= 1000:
        parser.error("--seconds must be 1..60, --rounds 1..9 and --connections 1..1000")

    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    try:
        rows, url, load_before = run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # bodies, scripts, logs and the quick model
    report(rows, args, url, load_before)


def run(args: argparse.Namespace, tmp: Path) -> tuple[list[Row], str, float]:
    models = ensure_model(args.models_dir, args.mnist_dir, args.hidden, root=tmp / "models")
    found = requests_for(load_dataset(args.mnist_dir).X[:1000], tmp)
    env = dict(pair.split("=", 1) for pair in args.env)
    server = GunicornServer({"MODELS_DIR": str(models), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                             "LOG_LEVEL": "WARNING", "THREADS": str(args.threads), **env}, tmp / "logs",
                            workers=args.workers, cwd=args.repo,
                            app="bench.peers:bare_app()" if args.floor else "service:create_app()")
    if args.floor:  # the floor answers V1 only
        found = {key: request for key, request in found.items() if not key.startswith("v2")}
    else:
        del found["forward_only"]
    proxy = None
    rows: list[Row] = []
    try:
        server.start()
        url = server.url
        if args.proxy:
            from tests.deploy.proxy import NginxProxy

            proxy = NginxProxy(f"127.0.0.1:{server.port}", tmp / "nginx")
            proxy.start()
            url = proxy.url
        warm(url, found)
        load_before = os.getloadavg()[0]
        pids = server_pids(server.proc.pid)
        plan = [(key, name, connections) for connections in args.connections
                for key, name in SMALL + FLOOR_ONLY if key in found]
        # One connection for the 1,000-instance requests: on two cores a second one would make the
        # server time measure waiting for a core.
        plan += [] if args.no_big else [(key, name, 1) for key, name in BIG if key in found]
        runs: dict[tuple[str, int], list[tuple[WrkResult, float, list[float]]]] = {}
        for round_ in range(args.rounds):
            # Every other round in reverse order, so that a machine getting busier or quieter
            # during the run does not favour the scenarios measured first.
            for key, name, connections in plan if round_ % 2 == 0 else plan[::-1]:
                runs.setdefault((name, connections), []).append(
                    measure(url, found[key], connections, args.seconds, pids))
        for (name, connections), measured in runs.items():
            measured.sort(key=lambda m: m[0].rps)
            rows.append((name, connections, *measured[len(measured) // 2]))  # the median round
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
    return rows, url, load_before


def report(rows: list[Row], args: argparse.Namespace, url: str,
           load_before: float) -> None:
    where = "nginx -> gunicorn" if args.proxy else "gunicorn directly (no nginx)"
    where += ", the bare Flask floor (bench.peers)" if args.floor else ""
    print(f"{where}, {args.workers} workers x {args.threads} threads, {args.repo} {' '.join(args.env)}, on {url}; "
          "client: wrk -t1, "
          f"{args.seconds:.0f} s per row, median of {args.rounds} round(s)")
    print(f"load average (1 min) {load_before:.2f} before the load, {os.getloadavg()[0]:.2f} after")
    print(f"{'scenario':36} {'conns':>5} {'requests':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6} {'server ms':>9} {'wrk CPU':>7} {'server CPU':>10}  workers' CPU")
    warned = False
    for name, connections, r, cores, per_worker in rows:
        server = f"{r.server_p50_ms:9.2f}" if r.server_p50_ms is not None else f"{'-':>9}"
        flag = " <- wrk busy" if r.wrk_cpu > WRK_CPU_WARN else ""
        warned = warned or bool(flag)
        print(f"{name:36} {connections:5d} {r.requests:8d} {r.rps:9.1f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} "
              f"{r.errors:6d} {server} {r.wrk_cpu:6.0%} {cores:10.2f}  "
              f"{'+'.join(f'{c:.2f}' for c in per_worker)}{flag}")
    by = {(name, c): r for name, c, r, _, _ in rows}
    for connections in args.connections:
        trivial = by[("GET /healthz", connections)].rps
        v1 = by[("V1 predict, 1 instance", connections)].rps / trivial
        v2 = by.get(("V2 infer, 1 instance (JSON)", connections))
        forward = by.get(("forward pass only (floor)", connections))
        print(f"{connections:3d} connections: V1 predict / healthz = {v1:.2f}"
              + (f", V2 infer / healthz = {v2.rps / trivial:.2f}" if v2 else "")
              + (f", forward pass only / healthz = {forward.rps / trivial:.2f}" if forward else ""))
    if warned:
        print(f"warning: wrk used more than {WRK_CPU_WARN:.0%} of a core on a marked row: "
              "there the client may be the bottleneck")
    if any(r.errors for _, _, r, _, _ in rows):
        raise SystemExit("some requests failed (errors column): the figures above are not valid")


if __name__ == "__main__":
    main()
