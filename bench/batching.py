"""Adaptive batching on and off under gunicorn: single-instance V1 predicts driven by wrk.

For each model (default 784-1024-10 and a wide 784-4096-4096-10, untrained weights: the cost is
the same) and each batching setting (``off`` is MAX_BATCH_SIZE=1; ``64:0`` is MAX_BATCH_SIZE=64
with MAX_BATCH_DELAY_US=0, and so on), one gunicorn runs (all of a model's at once) and wrk sends
one real MNIST digit per request at each connection count, the settings alternating within each
round so that a busy machine's swings fall on all of them; the median of the rounds is kept.
Printed per row: req/s, p50, p99, the ratio to batching off
at the same model and connections (same run), the mean requests per batched pass (from the
server's own ``mnist_batch_size_requests`` histogram) and wrk's CPU share.

    .venv/bin/python -m bench.batching [--seconds 2] [--rounds 3] [--connections 1 8 64] [--workers 2]
                                       [--threads 4] [--settings off 64:0 64:2000] [--models 1024 4096x4096]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson
import requests

from bench.bulk_json import untrained_model
from bench.wrk import WrkResult, lua_script, run_wrk, wrk_binary
from core.datasets import load_dataset
from tests.support import MNIST_DIR, GunicornServer, free_port

PREDICT = "/v1/models/mnist:predict"


@dataclass
class Row:
    model: str
    setting: str
    connections: int
    result: WrkResult
    requests_per_batch: float | None  # None: batching off


def batch_counts(url: str) -> tuple[float, float]:
    """(batched passes, requests in them) so far, summed over the workers (multiprocess /metrics)."""
    text = requests.get(url + "/metrics", timeout=120).text  # after a wide model's backlog drains
    found = {}
    for key in ("count", "sum"):
        match = re.search(rf'^mnist_batch_size_requests_{key}{{model="mnist"}} ([\d.e+]+)$', text, re.M)
        found[key] = float(match[1]) if match else 0.0
    return found["count"], found["sum"]


def parse_setting(text: str) -> dict[str, str]:
    if text == "off":
        return {"MAX_BATCH_SIZE": "1", "MAX_BATCH_DELAY_US": "0"}
    size, _, delay = text.partition(":")
    return {"MAX_BATCH_SIZE": str(int(size)), "MAX_BATCH_DELAY_US": str(int(delay or 0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--threads", type=int, default=4, help="gthread threads per worker (THREADS)")
    parser.add_argument("--settings", nargs="+", default=["off", "64:0", "64:2000"],
                        help="'off' or MAX_BATCH_SIZE:MAX_BATCH_DELAY_US")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is kept")
    parser.add_argument("--models", nargs="+", default=["1024", "4096x4096"], help="hidden widths, 'x'-separated")
    args = parser.parse_args()
    if wrk_binary() is None:
        print("bench.batching needs wrk: apt-get install -y wrk", file=sys.stderr)
        raise SystemExit(2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-batching-"))
    try:
        rows, load_before = run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(rows, args, load_before)


def run(args: argparse.Namespace, tmp: Path) -> tuple[list[Row], float]:
    digit = load_dataset(args.mnist_dir).X[:1].astype(int).tolist()
    body = orjson.dumps({"instances": digit})
    (tmp / "one.body").write_bytes(body)
    script = lua_script(tmp / "one.lua", "POST", {"Content-Type": "application/json"}, tmp / "one.body",
                        server_timing=False)
    rows: list[Row] = []
    load_before = os.getloadavg()[0]
    for spec in args.models:
        hidden = [int(width) for width in spec.split("x")]
        name = f"784-{'-'.join(map(str, hidden))}-10"
        models = untrained_model(tmp / f"models-{spec}", hidden)
        # Every setting's server runs at once and the rows alternate between them, so that on a
        # shared machine each comparison is made within the same few seconds.
        servers = {}
        try:
            for setting in args.settings:
                env = {"MODELS_DIR": str(models), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                       "LOG_LEVEL": "WARNING", "THREADS": str(args.threads), **parse_setting(setting)}
                servers[setting] = GunicornServer(env, tmp / "logs", workers=args.workers)
                servers[setting].start()
                with requests.Session() as session:  # every worker loads its model outside the timed runs
                    for _ in range(8 * args.workers):
                        session.post(servers[setting].url + PREDICT, data=body,
                                     headers={"Content-Type": "application/json"}, timeout=60).raise_for_status()
            for connections in args.connections:
                measured: dict[str, list[tuple[WrkResult, float | None]]] = {s: [] for s in args.settings}
                for round_ in range(args.rounds):
                    order = args.settings if round_ % 2 == 0 else args.settings[::-1]
                    for setting in order:
                        url = servers[setting].url
                        count, total = batch_counts(url)
                        result = run_wrk(url + PREDICT, connections, args.seconds, script, timeout_s=30)
                        count2, total2 = batch_counts(url)
                        measured[setting].append((result, (total2 - total) / (count2 - count)
                                                  if count2 > count else None))
                for setting, results in measured.items():
                    results.sort(key=lambda m: m[0].rps)
                    result, per_batch = results[len(results) // 2]  # the median round
                    rows.append(Row(name, setting, connections, result, per_batch))
                    print(f"measured {name} {setting} {connections}: {result.rps:.1f} req/s", file=sys.stderr,
                          flush=True)
        finally:
            for server in servers.values():
                server.stop()
    return rows, load_before


def report(rows: list[Row], args: argparse.Namespace, load_before: float) -> None:
    print(f"gunicorn {args.workers} workers x {args.threads} threads, single-instance V1 predict, wrk -t1, "
          f"{args.seconds:.0f} s per row")
    print(f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'model':22} {'batching':>9} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'/ off':>6} "
          f"{'req/batch':>9} {'errors':>6} {'wrk CPU':>7}")
    off = {(r.model, r.connections): r.result.rps for r in rows if r.setting == "off"}
    for r in sorted(rows, key=lambda r: (r.model, r.connections, r.setting != "off")):
        reference = off.get((r.model, r.connections)) or float("nan")
        ratio = r.result.rps / reference
        per_batch = f"{r.requests_per_batch:9.2f}" if r.requests_per_batch is not None else f"{'-':>9}"
        print(f"{r.model:22} {r.setting:>9} {r.connections:5d} {r.result.rps:9.1f} {r.result.p50_ms:8.2f} "
              f"{r.result.p99_ms:8.2f} {ratio:6.2f} {per_batch} {r.result.errors:6d} {r.result.wrk_cpu:6.0%}")
    if any(r.result.errors for r in rows):
        raise SystemExit("some requests failed (errors column): the figures above are not valid")


if __name__ == "__main__":
    main()
