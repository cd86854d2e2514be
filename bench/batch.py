"""Batch scoring benchmark: the full job (upload, queue, workers, result) against the raw limit.

    nice -n 10 .venv/bin/python -m bench.batch [--rows 1000000] [--workers 1 2 4] [--shards 16] [--no-prefetch]
                                               [--hidden 64]

(a) raw limit: pandas reads the whole CSV into memory and one numpy forward pass scores every row,
    best of two runs, measured twice: with one parser thread, and as pandas reads by default
    (from pandas 3.1 a large local file is parsed by several threads, one per core up to 6);
(b) one unsharded job (SCORING_SHARD_BYTES=0) on one worker: its reader thread parses while
    the forward pass runs (issue 12 goal 5: >= 0.9 of (a), one thread);
(c) the same CSV as a sharded job (about ``--shards`` shards) on 1, 2, 4 workers: rows/s from
    submission to result, the scoring time alone (job created -> ended, the upload excluded),
    the ratio to 1 worker (issue 14: 2 workers >= 1.7x, 4 no slower than 2), the work horses'
    peak RSS, and per-shard cost and Redis round trips for the paper model of 8 and 32 workers
    (docs/decisions/0006-sharded-scoring.md).
For (b) and (c), "cores busy" is the CPU time of the worker processes and of their work horses
(reaped children, /proc/<pid>/stat) over the job's scoring time: with one worker keeping c cores
busy, N workers on this machine's cores can be at most min(N * c, cores) / c times faster than
one, which the "bound" column prints. ``--no-prefetch`` runs every worker with SCORING_PREFETCH=false
(no reader thread: about one core per worker), to compare 1 and 2 workers at one core each.
The bound assumes free cores: "whole machine" (every process, /proc/stat) near the core count
means other work took what the workers did not get, and the ratios say little about scaling.
Every figure is a ratio against a reference of the same run; the machine's load average is
printed beside them. Digits are real MNIST rows repeated, so the file has the size and
sparsity of a Kaggle test.csv.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import redis
import requests
from rq.job import Job
from rq.worker import Worker

from core.datasets import PIXEL_COLUMNS, load_dataset
from core.registry import ModelRegistry
from core.training_config import TrainConfig
from tests.support import MNIST_DIR, REPO_ROOT, GunicornServer, RedisServer, stop_process, wait_until
from trainer.pipeline import train_and_publish


def write_csv(path: Path, pixels: np.ndarray, rows: int) -> None:
    lines = [",".join(map(str, row)) for row in pixels.astype(np.int64).tolist()]
    with open(path, "w") as out:
        out.write(",".join(PIXEL_COLUMNS) + "\n")
        for start in range(0, rows, len(lines)):
            out.write("\n".join(lines[: min(len(lines), rows - start)]) + "\n")


def raw_limit(path: Path, registry: ModelRegistry, parser_threads: int | None) -> float:
    """Seconds to read the whole CSV with pandas and score it in one forward pass, best of two;
    ``parser_threads`` None leaves pandas its default (several threads from pandas 3.1)."""
    model = registry.load("mnist")
    threads_set = parser_threads is not None and pandas_parses_in_threads()
    best = float("inf")
    with pd.option_context("mode.max_threads", parser_threads) if threads_set else contextlib.nullcontext():
        for _ in range(2):
            started = time.perf_counter()
            pixels = pd.read_csv(path).to_numpy(dtype=np.float32)
            model.predict(pixels)
            best = min(best, time.perf_counter() - started)
    return best


def pandas_parses_in_threads() -> bool:
    """Whether this pandas parses one large CSV in several threads (3.1 and later: ``mode.max_threads``)."""
    try:
        pd.get_option("mode.max_threads")
    except KeyError:  # pandas' OptionError
        return False
    return True


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of these processes and of the children they have reaped: a worker's
    work horses are forked and waited for by the worker, so their time lands in its cutime/cstime."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += sum(int(value) for value in fields[11:15])  # stat fields 14-17: utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used (all cores, /proc/stat): the bench's share is
    only readable beside what the rest of a shared machine took meanwhile."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def full_job(path: Path, workdir: Path, models: Path, workers: int, shard_bytes: int,
             prefetch: bool = True) -> tuple[float, dict]:
    """Submit ``path`` to a fresh stack with ``workers`` workers; (seconds to result, status, shard metas)."""
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    jobs = workdir / "jobs"
    env = {"MODELS_DIR": str(models), "REDIS_URL": redis_server.url, "JOBS_DIR": str(jobs),
           "DATA_DIR": str(workdir / "data"), "LOG_LEVEL": "WARNING", "SCORING_SHARD_BYTES": str(shard_bytes),
           "SCORING_PREFETCH": str(prefetch).lower()}
    api = GunicornServer(env, workdir / "logs", workers=2)
    procs: list[subprocess.Popen] = []
    try:
        api.start()
        for _ in range(workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "worker"], cwd=REPO_ROOT, env={**os.environ, **env},
                                          stdout=open(workdir / "logs" / "worker.log", "ab"),  # noqa: SIM115
                                          stderr=subprocess.STDOUT))
        connection = redis.Redis.from_url(redis_server.url)
        wait_until(lambda: connection.scard("rq:workers") == workers, 60, "the workers to register")
        pids = [proc.pid for proc in procs]
        cpu_before, machine_before = cpu_seconds(pids), machine_busy_seconds()
        started = time.perf_counter()
        with open(path, "rb") as fh:
            response = requests.post(api.url + "/v1/jobs/score", data=fh, headers={"Content-Type": "text/csv"},
                                     timeout=600)
        response.raise_for_status()
        status_url = api.url + response.json()["status_url"]
        status: dict = {}

        def finished() -> bool:
            status.update(requests.get(status_url + "?wait=5", timeout=10).json())
            if status["status"] in ("failed", "canceled"):
                raise RuntimeError(status)
            return status["status"] == "finished"

        wait_until(finished, 3600, "the scoring job", interval=0.02)

        def all_idle() -> bool:  # every horse has exited and been reaped: its CPU time is counted
            found = Worker.all(connection=connection)
            return len(found) == workers and all(worker.get_state() == "idle" for worker in found)

        wait_until(all_idle, 60, "the workers to be idle")
        cpu = cpu_seconds(pids) - cpu_before
        # every process, over the same window (the upload included): near the core count, the
        # workers got only what the rest of the machine left them
        machine_cores = (machine_busy_seconds() - machine_before) / (time.perf_counter() - started)
        rows = 0
        with requests.get(api.url + status["result_url"], stream=True, timeout=600) as result:
            for block in result.iter_content(1 << 20):
                rows += block.count(b"\n")
        elapsed = time.perf_counter() - started
        status["result_lines"] = rows
        job = Job.fetch(status["job_id"], connection=connection)
        status["scoring_seconds"] = (job.ended_at - job.created_at).total_seconds()
        status["worker_cpu_seconds"] = cpu
        status["cores_busy"] = cpu / status["scoring_seconds"]
        status["machine_cores_busy"] = machine_cores
        shards = [Job.fetch(i, connection=connection) for i in job.meta.get("shards", [])]
        status["shard_seconds"] = [(s.ended_at - s.started_at).total_seconds() for s in shards]
        status["shard_rss"] = [s.meta.get("peak_rss_mb") or 0.0 for s in shards]
        status["join_seconds"] = (job.ended_at - job.started_at).total_seconds() if shards else 0.0
        # Between one shard's end and the next one's start on the same worker: dequeue, fork, lock.
        gaps = sorted((s.started_at, s.ended_at, s.worker_name) for s in shards)
        between = [(b[0] - a[1]).total_seconds() for a, b in itertools.pairwise(gaps) if a[2] == b[2]]
        status["shard_overhead"] = sum(between) / len(between) if between else 0.0
        status["workers_used"] = len({s.worker_name for s in shards}) or 1
        return elapsed, status
    finally:
        for proc in procs:
            stop_process(proc)
        api.stop()
        redis_server.stop()
        shutil.rmtree(jobs, ignore_errors=True)


def redis_round_trip(workdir: Path, count: int = 2000) -> float:
    """Seconds per Redis round trip (a fenced meta write is one EVAL), measured on this machine."""
    server = RedisServer(workdir / "redis-rtt")
    server.start()
    try:
        connection = redis.Redis.from_url(server.url)
        started = time.perf_counter()
        for _ in range(count):
            connection.eval("return redis.call('exists', KEYS[1])", 1, "k")
        return (time.perf_counter() - started) / count
    finally:
        server.stop()


def paper_model(rows: int, csv_bytes: int, shard_rows_per_s: float, shard_overhead_s: float, join_rows_per_s: float,
                rtt_s: float, chunk_rows: int = 5_000, workers: tuple[int, ...] = (1, 2, 4, 8, 32)) -> None:
    """Rows/s expected with ``workers`` workers on their own cores, from one worker's measured figures.

    Each worker scores at ``shard_rows_per_s`` plus ``shard_overhead_s`` per shard (fork, lock, model,
    part file), four shards per worker (SCORING_SHARD_BYTES = size / 4W); the join is serial at
    ``join_rows_per_s``. Redis: per shard about 14 round trips (RQ dequeue, start, finish, enqueue of
    the join's check; the fence's acquire, release, final claim) plus 2 per chunk (cancel check, fenced
    progress write); its load is W times that over a shard's duration. Storage: every worker reads
    its shard's bytes at its own pace, so the shared filesystem must serve W times one worker's rate.
    """
    print("paper model: workers | shard rows/s each | rows/s | join share | Redis ops/s (busy %) | "
          "storage MB/s")
    for count in workers:
        shards = 4 * count
        per_shard_rows = rows / shards
        shard_s = per_shard_rows / shard_rows_per_s + shard_overhead_s
        parallel_s = shard_s * shards / count
        join_s = rows / join_rows_per_s
        total_s = parallel_s + join_s
        ops = count * (14 + 2 * per_shard_rows / chunk_rows) / shard_s
        storage = count * (csv_bytes / shards) / shard_s / 1e6
        print(f"    {count:3d} | {shard_rows_per_s:10,.0f} | {rows / total_s:10,.0f} | {join_s / total_s:5.0%} | "
              f"{ops:8,.0f} ({ops * rtt_s:.1%}) | {storage:7,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--shards", type=int, default=16, help="about this many shards per sharded job")
    parser.add_argument("--mnist", default=MNIST_DIR)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64],
                        help="hidden widths of the model scored (the production default is 1024)")
    parser.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                        help="run the workers with SCORING_PREFETCH=false (no reader thread)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        digits = load_dataset(args.mnist)
        registry = ModelRegistry(workdir / "models")
        train_and_publish(registry, "mnist", args.mnist, TrainConfig(hidden=args.hidden, epochs=2, dropout=0.0,
                                                                     augment_shift=0, early_stopping=0))
        csv_path = workdir / "test.csv"
        write_csv(csv_path, digits.X, args.rows)
        size = csv_path.stat().st_size
        shard_bytes = size // args.shards + 1
        cores = os.cpu_count() or 1
        widths = "-".join(map(str, [784, *args.hidden, 10]))
        print(f"rows: {args.rows:,}  csv: {size / 1e6:,.0f} MB  model: {widths}  shard: {shard_bytes / 1e6:.0f} MB"
              f"  SCORING_PREFETCH={str(args.prefetch).lower()}  cores: {cores}"
              f"  load average: {Path('/proc/loadavg').read_text().split()[:3]}")
        raw = raw_limit(csv_path, registry, parser_threads=1)
        raw_rate = args.rows / raw
        print(f"(a) raw limit, pandas read (1 thread) + one forward pass: {raw:7.2f} s  {raw_rate:10,.0f} rows/s")
        raw_default_rate = None
        if pandas_parses_in_threads():
            raw_default_rate = args.rows / raw_limit(csv_path, registry, parser_threads=None)
            print(f"    pandas {pd.__version__}'s default parallel read instead: {args.rows / raw_default_rate:7.2f} s"
                  f"  {raw_default_rate:10,.0f} rows/s")
        single, status = full_job(csv_path, workdir, workdir / "models", 1, 0, args.prefetch)
        assert status["rows_scored"] == args.rows and status["result_lines"] == args.rows + 1, status
        scoring = args.rows / status["scoring_seconds"]
        print(f"(b) one unsharded job, 1 worker: {single:7.2f} s to result ({args.rows / single:,.0f} rows/s); "
              f"scoring alone {status['scoring_seconds']:.2f} s = {scoring:,.0f} rows/s = {scoring / raw_rate:.2f}x raw"
              f"  (goal >= 0.9)"
              + (f", {scoring / raw_default_rate:.2f}x the parallel read" if raw_default_rate else "")
              + f"; peak RSS {status.get('peak_rss_mb')} MB; cores busy {status['cores_busy']:.2f}"
              f" ({status['worker_cpu_seconds']:.1f} CPU s; whole machine {status['machine_cores_busy']:.2f})")
        base = None
        one_worker: tuple[float, float, float] | None = None
        cores_one: float | None = None
        print("(c) sharded: workers | to result rows/s | scoring rows/s | vs 1 worker | shards | mean shard s | "
              f"join s | horse peak RSS MB | cores busy | bound on {cores} free cores | whole machine cores busy")
        for count in args.workers:
            elapsed, status = full_job(csv_path, workdir, workdir / "models", count, shard_bytes, args.prefetch)
            assert status["rows_scored"] == args.rows and status["result_lines"] == args.rows + 1, status
            rate = args.rows / status["scoring_seconds"]
            base = base or rate
            shards = status["shard_seconds"]
            if count == 1:  # one worker: the shards' cost without contention, for the paper model
                one_worker = (args.rows / sum(shards), status["shard_overhead"],
                              args.rows / max(status["join_seconds"], 1e-3))
            # cores one worker keeps busy, from the first configuration (normally 1 worker)
            cores_one = cores_one or status["cores_busy"] / count
            bound = min(count * cores_one, cores) / min(args.workers[0] * cores_one, cores)
            print(f"    {count} | {args.rows / elapsed:10,.0f} | {rate:10,.0f} | {rate / base:5.2f}x | {len(shards)} | "
                  f"{sum(shards) / len(shards):6.2f} | {status['join_seconds']:5.2f} | {max(status['shard_rss'])} | "
                  f"{status['cores_busy']:4.2f} | {bound:4.2f}x | {status['machine_cores_busy']:4.2f}"
                  f"  (workers used {status['workers_used']})")
        rtt = redis_round_trip(workdir)
        print(f"Redis round trip (EVAL): {rtt * 1e6:.0f} us; "
              f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")
        if one_worker:
            paper_model(args.rows, size, *one_worker, rtt_s=rtt)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
