"""Fixtures for the job tests: a private Redis DB per stack, the API, and real worker processes.

Every stack gets its own Redis database on the session's redis-server (flushed first), so
tests never see each other's queues or jobs. Workers run with intervals of a second or two,
so an abandoned job is retried within seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import requests

from core.datasets import PIXEL_COLUMNS, Dataset
from tests.conftest import API_KEY
from tests.support import REPO_ROOT, GunicornServer, RedisServer, child_pids, stop_process, wait_until

_databases = itertools.cycle(range(1, 16))
FINAL = ("finished", "failed", "canceled")

# Short intervals: heartbeat every second, abandoned 2 s after a missed one, idle workers
# clean up every 2 s. Production defaults are 10 s / 30 s / 60 s.
FAST_WORKER_ENV = {"JOB_MONITORING_INTERVAL": "1", "JOB_HEARTBEAT_GRACE": "2", "WORKER_MAINTENANCE_INTERVAL": "2",
                   "JOB_RETRIES": "2", "SCORING_CHUNK_ROWS": "1000", "LOG_LEVEL": "INFO",
                   # one job per upload unless a test shards on purpose (tests/jobs/test_shards.py)
                   "SCORING_SHARD_BYTES": "0"}


def write_kaggle_csv(path: Path, X: np.ndarray, y: np.ndarray | None = None) -> Path:
    """A Kaggle digit-recognizer CSV: test.csv layout, or train.csv layout when ``y`` is given."""
    header = ("label," if y is not None else "") + ",".join(PIXEL_COLUMNS)
    table = np.column_stack([y, X]) if y is not None else X
    np.savetxt(path, table.astype(np.int64), fmt="%d", delimiter=",", header=header, comments="")
    return path


def save_npz(path: Path, data: Dataset, rows: int) -> Path:
    np.savez(path, X=np.asarray(data.X[:rows], dtype=np.uint8), y=data.y[:rows])
    return path


@dataclass
class Stack:
    """The API (gunicorn) and its workers, sharing one models dir, jobs dir and Redis DB."""

    api: GunicornServer
    redis_url: str
    env: dict[str, str]
    models_dir: Path
    jobs_dir: Path
    data_dir: Path
    logdir: Path
    cwd: Path = REPO_ROOT
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    process_group: int | None = None  # workers start in it (default: the test runner's)

    @property
    def url(self) -> str:
        return self.api.url

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_connect_timeout=1)

    def start_worker(self, *queues: str) -> str:
        name = f"w{len(self.workers) + 1}-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        args = [sys.executable, "-m", "worker", "--name", name, *(["--queues", *queues] if queues else [])]
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(args, cwd=self.cwd, env={**os.environ, **self.env}, stdout=log,
                                stderr=subprocess.STDOUT, process_group=self.process_group)
        self.workers[name] = proc

        def registered() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}: {self.worker_log(name)}")
            return bool(self.redis().sismember("rq:workers", f"rq:worker:{name}"))

        wait_until(registered, 30, f"worker {name} to register")
        return name

    def worker_log(self, name: str) -> str:
        return (self.logdir / f"{name}.log").read_text()

    def stop(self) -> None:
        for proc in self.workers.values():
            stop_process(proc, timeout=10)
        self.api.stop()

    # ------------------------------------------------------------ HTTP helpers

    def submit_csv(self, path: Path, **params: Any) -> requests.Response:
        # Connection: close, or the streamed upload's connection stays open after the request, and
        # gunicorn's graceful stop lingers on it (GunicornServer.stop).
        with open(path, "rb") as fh:
            return requests.post(self.url + "/v1/jobs/score", data=fh, params=params,
                                 headers={"Content-Type": "text/csv", "Connection": "close"}, timeout=60)

    def submit_train(self, json: dict[str, Any], key: str | None = API_KEY) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.post(self.url + "/v1/jobs/train", json=json, headers=headers, timeout=30)

    def status(self, job_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.url}/v1/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, statuses: tuple[str, ...] = ("finished", "failed", "canceled"),
             timeout: float = 60, until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def done() -> bool:
            seen.update(self.status(job_id))
            return seen["status"] in statuses and (until is None or until(seen))

        try:
            wait_until(done, timeout, f"job {job_id} to reach {statuses}", interval=0.1)
        except TimeoutError as exc:
            logs = "\n".join(self.worker_log(n)[-3000:] for n in self.workers)
            raise AssertionError(f"{exc}; last status {seen}; worker logs:\n{logs}") from None
        return seen


class StatusWatch:
    """Polls a job's public status in a thread and records every change."""

    def __init__(self, stack: Stack, job_id: str) -> None:
        self.stack, self.job_id = stack, job_id
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(requests.RequestException, AssertionError):
                status = self.stack.status(self.job_id)["status"]
                if not self.seen or self.seen[-1] != status:
                    self.seen.append(status)
            time.sleep(0.05)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(10)
        return self.seen

    def left_a_final_state(self) -> bool:
        first_final = next((i for i, s in enumerate(self.seen) if s in FINAL), None)
        return first_final is not None and len(set(self.seen[first_final:])) > 1


def horse_pids(parent: int) -> list[int]:
    """Child processes of ``parent`` (RQ's work horse), from /proc."""
    return child_pids(parent)


def kill_worker_and_horse(proc: subprocess.Popen) -> None:
    """What a crashed container does: SIGKILL the worker and its work horse, nothing cleans up."""
    horses = horse_pids(proc.pid)
    proc.send_signal(signal.SIGKILL)
    for pid in horses:
        os.kill(pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture()
def make_stack(tmp_path: Path, models_dir: Path, redis_server: RedisServer) -> Iterator[Callable[..., Stack]]:
    """Factory: ``make_stack(workers=1, cwd=REPO_ROOT, redis_url=None, **env)`` -> a running API plus
    workers on a fresh Redis DB (of the session's server unless ``redis_url`` names another), all
    started in ``cwd``."""
    stacks: list[Stack] = []

    def make(workers: int = 1, cwd: Path = REPO_ROOT, redis_url: str | None = None, **env: str) -> Stack:
        if redis_url is None:
            redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{next(_databases)}"
        redis.Redis.from_url(redis_url).flushdb()  # a private server; this DB is ours now
        base = {"MODELS_DIR": str(models_dir), "REDIS_URL": redis_url, "API_KEY": API_KEY,
                "JOBS_DIR": str(tmp_path / "jobs"), "DATA_DIR": str(tmp_path / "data"), "RELOAD_INTERVAL": "0.2",
                **FAST_WORKER_ENV}
        full_env = {**base, **env}
        (tmp_path / "data").mkdir(exist_ok=True)
        logdir = tmp_path / "logs"
        logdir.mkdir(exist_ok=True)
        api = GunicornServer(full_env, logdir, cwd=cwd)
        stack = Stack(api, redis_url, full_env, models_dir, tmp_path / "jobs", tmp_path / "data", logdir, cwd)
        stacks.append(stack)
        api.start()
        for _ in range(workers):
            stack.start_worker()
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that reconfigure it (e.g. a tiny maxmemory)."""
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()
