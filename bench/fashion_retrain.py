"""Fashion-MNIST through the retraining API: train on all 60,000, measure on the 10,000 test images.

    .venv/bin/python -u -m bench.fashion_retrain --arch cnn --channels 32 64 --hidden 512 --epochs 40 \\
        --augment-shift 1 --augment-rotate 0 --augment-scale 0 --augment-elastic 0 --ema 0.999 \\
        --dropout 0.4 --blas-threads 2
    .venv/bin/python -u -m bench.fashion_retrain --hidden 1024 1024 --epochs 50 --augment-shift 0 \\
        --dropout 0.4 --ema 0.999 --blas-threads 2

Starts its own redis-server (free port), gunicorn and ``python -m worker`` processes (training
queue) in a temporary directory whose DATA_DIR holds a copy of the four IDX files (a symlink out
of DATA_DIR is refused by design), then submits ``POST /v1/jobs/train`` into the model
``fashion`` with ``dataset: fashion`` (its train-* split, every row) and ``dev_dataset:
fashion/t10k-images-idx3-ubyte.gz``. Early stopping is off unless asked for, so the test set
selects nothing: each epoch's dev figure is the test accuracy of that epoch's weights and the
last one is the result. Prints every epoch as the job's meta reports it (``GET /v1/jobs/{id}``,
its ``curve``), the work horse's peak RSS (VmHWM sampled from /proc, and the job's own
``peak_rss_mb``), its CPU time (the worker's reaped-children time), the wall time and the load
average before and after. Exits 2 when the dataset is absent (``apt-get install
dataset-fashion-mnist``, or ``--fashion DIR`` / env FASHION_MNIST_DIR).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests

from core.training_config import TrainConfig
from tests.support import REPO_ROOT, GunicornServer, RedisServer, stop_process, wait_until

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
API_KEY = "bench-key"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def vm_hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own utime + stime, reaped children's cutime + cstime) of ``pid`` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    reaped = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return own, reaped


def config_from(args: argparse.Namespace) -> TrainConfig:
    preset = "cnn" if args.arch == "cnn" else "default"
    return TrainConfig.for_preset(preset, arch=args.arch, channels=args.channels, hidden=args.hidden,
                                  epochs=args.epochs, dropout=args.dropout, augment_shift=args.augment_shift,
                                  early_stopping=args.early_stopping, lr=args.lr, weight_decay=args.weight_decay,
                                  batch_size=args.batch_size, seed=args.seed, augment_rotate=args.augment_rotate,
                                  augment_scale=args.augment_scale, augment_elastic=args.augment_elastic,
                                  ema=args.ema)


def run(args: argparse.Namespace, source: Path, workdir: Path) -> dict[str, Any]:
    data = workdir / "data" / "fashion"
    data.mkdir(parents=True)
    for name in FILES:
        shutil.copyfile(source / name, data / name)
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    env = {"MODELS_DIR": str(workdir / "models"), "REDIS_URL": redis_server.url, "JOBS_DIR": str(workdir / "jobs"),
           "DATA_DIR": str(workdir / "data"), "API_KEY": API_KEY, "LOG_LEVEL": "WARNING", "MODEL_NAME": "fashion"}
    worker_env = {**os.environ, **env, **{name: str(args.blas_threads) for name in
                                          ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    api = GunicornServer(env, workdir / "logs", workers=1)
    workers: list[subprocess.Popen] = []
    try:
        api.start()
        for _ in range(args.workers):
            workers.append(subprocess.Popen([sys.executable, "-m", "worker", "--queues", "training"], cwd=REPO_ROOT,
                                            env=worker_env, stdout=open(workdir / "logs" / "worker.log", "ab"),  # noqa: SIM115
                                            stderr=subprocess.STDOUT))
        connection = redis.Redis.from_url(redis_server.url)
        wait_until(lambda: connection.scard("rq:workers") == args.workers, 60, "the workers to register")
        config = config_from(args)
        body = {"model": "fashion", "dataset": "fashion", "dev_dataset": "fashion/t10k-images-idx3-ubyte.gz",
                "class_names": "fashion", "config": config.model_dump(), "promote": "always"}
        print(f"config: {config.model_dump_json()}")
        load_before = load_average()
        cpu_before = {w.pid: cpu_seconds(w.pid) for w in workers}
        started = time.perf_counter()
        response = requests.post(api.url + "/v1/jobs/train", json=body, timeout=30,
                                 headers={"Authorization": f"Bearer {API_KEY}"})
        if response.status_code != 202:
            raise RuntimeError(f"submission refused: {response.status_code} {response.text}")
        status_url = api.url + response.json()["status_url"]
        print(f"job {response.json()['job_id']} accepted; load average before: {load_before}")
        status: dict[str, Any] = {}
        printed, sampled_rss = 0, 0.0
        sampled_cpu: dict[int, float] = {}  # horse pid -> its CPU seconds when last seen
        while status.get("status") not in ("finished", "failed", "canceled"):
            time.sleep(args.poll)
            status = requests.get(status_url, timeout=30).json()
            for worker in workers:
                for horse in children(worker.pid):
                    sampled_rss = max(sampled_rss, vm_hwm_mib(horse))
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        sampled_cpu[horse] = sum(cpu_seconds(horse))
            for point in (status.get("curve") or [])[printed:]:
                print(f"epoch {point['epoch']:3d}/{point['epochs']}  train loss {point['train_loss']:.4f} "
                      f"acc {point['train_accuracy']:.4f}  test loss {point['dev_loss']:.4f} "
                      f"acc {point['dev_accuracy']:.4f}  {point['seconds']:6.1f} s  "
                      f"(wall {time.perf_counter() - started:6.0f} s, horse RSS so far {sampled_rss:.0f} MiB, "
                      f"load {load_average()})", flush=True)
                printed += 1
        wall = time.perf_counter() - started
        if status["status"] != "finished":
            raise RuntimeError(f"the job ended {status['status']}: {status.get('error')}")
        # Once the worker has reaped its horse, its children's CPU time holds all of the horse's; the
        # horse's own figure as last sampled is a lower bound, printed beside it as a check.
        wait_until(lambda: not any(children(w.pid) for w in workers), 30, "the work horse to exit")
        time.sleep(0.5)
        horse_cpu = sum(cpu_seconds(w.pid)[1] - cpu_before[w.pid][1] for w in workers)
        return {"status": status, "wall": wall, "horse_cpu": horse_cpu, "sampled_rss": sampled_rss,
                "sampled_cpu": sum(sampled_cpu.values()),
                "load_before": load_before, "load_after": load_average(), "config": config}
    finally:
        for proc in workers:
            stop_process(proc)
        api.stop()
        redis_server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion", default=os.environ.get("FASHION_MNIST_DIR", DEFAULT_DIR),
                        help="folder with the four Fashion-MNIST IDX .gz files (env FASHION_MNIST_DIR)")
    parser.add_argument("--arch", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64], help="cnn only")
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--augment-shift", type=int, default=0)
    for name in ("augment-rotate", "augment-scale", "augment-elastic", "ema"):
        parser.add_argument(f"--{name}", type=float, help="default: the preset's")
    parser.add_argument("--early-stopping", type=int, default=0, help="0 (default): the last epoch is the result")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="python -m worker processes on the training queue")
    parser.add_argument("--blas-threads", type=int, default=1, help="OPENBLAS_NUM_THREADS of each worker")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between status polls")
    args = parser.parse_args()

    source = Path(args.fashion)
    missing = [name for name in FILES if not (source / name).is_file()]
    if missing:
        print(f"Fashion-MNIST not found: {source} lacks {', '.join(missing)} (apt-get install dataset-fashion-mnist, "
              f"or give --fashion DIR / FASHION_MNIST_DIR)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-fashion-"))
    try:
        result = run(args, source, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    status = result["status"]
    print(f"\nresult: test accuracy {status['dev']['accuracy']:.4f} (loss {status['dev']['loss']:.4f}) on "
          f"{status['dev_rows']:,} test images, trained on {status['train_rows']:,}; "
          f"version {status['produced_version']} of 'fashion'")
    print(f"wall {result['wall']:.0f} s ({result['wall'] / 60:.1f} min), work horse CPU {result['horse_cpu']:.0f} s "
          f"(last sampled {result['sampled_cpu']:.0f} s), "
          f"horse peak RSS {status.get('peak_rss_mb')} MiB (job meta; sampled VmHWM {result['sampled_rss']:.1f} MiB)")
    print(f"load average before {result['load_before']}, after {result['load_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
