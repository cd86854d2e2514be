"""Batch scoring benchmark: the full job (upload, queue, worker, result) against the raw limit.

    .venv/bin/python -m bench.batch [--rows 100000 | --rows 1000000]

(a) raw limit: pandas reads the CSV and one numpy forward pass scores every row;
(b) full job: POST the CSV to gunicorn, RQ on a private redis-server, ``python -m worker``
    scores it in chunks, then the result CSV is downloaded.
Prints rows/s of each, the ratio (b)/(a) (goal >= 0.7) and the work horse's peak RSS
(VmHWM, recorded by the job; goal < 400 MB for 1,000,000 rows). Digits are real MNIST
rows repeated, so the file has the size and sparsity of a Kaggle test.csv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from core.datasets import PIXEL_COLUMNS, load_dataset
from core.registry import ModelRegistry
from core.training_config import TrainConfig
from tests.support import REPO_ROOT, GunicornServer, RedisServer, stop_process, wait_until
from trainer.pipeline import train_and_publish


def write_csv(path: Path, pixels: np.ndarray, rows: int) -> None:
    lines = [",".join(map(str, row)) for row in pixels.astype(np.int64).tolist()]
    with open(path, "w") as out:
        out.write(",".join(PIXEL_COLUMNS) + "\n")
        for start in range(0, rows, len(lines)):
            out.write("\n".join(lines[: min(len(lines), rows - start)]) + "\n")


def raw_limit(path: Path, registry: ModelRegistry) -> float:
    model = registry.load("mnist")
    started = time.perf_counter()
    pixels = pd.read_csv(path).to_numpy(dtype=np.float32)
    model.predict(pixels)
    return time.perf_counter() - started


def full_job(path: Path, workdir: Path, models: Path) -> tuple[float, dict]:
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    env = {"MODELS_DIR": str(models), "REDIS_URL": redis_server.url, "JOBS_DIR": str(workdir / "jobs"),
           "DATA_DIR": str(workdir / "data"), "LOG_LEVEL": "WARNING"}
    api = GunicornServer(env, workdir / "logs", workers=2)
    worker = None
    try:
        api.start()
        worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=REPO_ROOT, env={**os.environ, **env},
                                  stdout=open(workdir / "logs" / "worker.log", "ab"),  # noqa: SIM115
                                  stderr=subprocess.STDOUT)
        time.sleep(2)
        started = time.perf_counter()
        with open(path, "rb") as fh:
            response = requests.post(api.url + "/v1/jobs/score", data=fh, headers={"Content-Type": "text/csv"},
                                     timeout=600)
        response.raise_for_status()
        status_url = api.url + response.json()["status_url"]
        status: dict = {}

        def finished() -> bool:
            status.update(requests.get(status_url, timeout=10).json())
            if status["status"] in ("failed", "canceled"):
                raise RuntimeError(status)
            return status["status"] == "finished"

        wait_until(finished, 1800, "the scoring job", interval=0.05)
        rows = 0
        with requests.get(api.url + status["result_url"], stream=True, timeout=600) as result:
            for block in result.iter_content(1 << 20):
                rows += block.count(b"\n")
        elapsed = time.perf_counter() - started
        status["result_lines"] = rows
        return elapsed, status
    finally:
        if worker is not None:
            stop_process(worker)
        api.stop()
        redis_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--mnist", default=os.environ.get("MNIST_DIR", str(REPO_ROOT.parent / "shared/data/mnist")))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        digits = load_dataset(args.mnist)
        registry = ModelRegistry(workdir / "models")
        train_and_publish(registry, "mnist", args.mnist, TrainConfig(hidden=[64], epochs=2, dropout=0.0,
                                                                     augment_shift=0, early_stopping=0))
        csv_path = workdir / "test.csv"
        write_csv(csv_path, digits.X, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"rows: {args.rows:,}  csv: {size_mb:,.0f} MB  model: 784-64-10")

        raw = raw_limit(csv_path, registry)
        job, status = full_job(csv_path, workdir, workdir / "models")
        assert status["rows_scored"] == args.rows and status["result_lines"] == args.rows + 1, status
        raw_rate, job_rate = args.rows / raw, args.rows / job
        print(f"(a) raw limit, pandas read + one forward pass: {raw:7.2f} s  {raw_rate:10,.0f} rows/s")
        print(f"(b) full job, upload+queue+worker+download:    {job:7.2f} s  {job_rate:10,.0f} rows/s")
        print(f"ratio (b)/(a): {job_rate / raw_rate:.2f}  (goal >= 0.7)")
        print(f"worker peak RSS (work horse VmHWM): {status.get('peak_rss_mb')} MB  (goal < 400 MB at 1,000,000 rows)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
