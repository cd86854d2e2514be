"""Cancel storms against a stack that shares one process group, as under one init or shell script.

redis-server, gunicorn, an RQ worker and a sentinel process (``sleep``) all run in a process
group of their own (the sentinel leads it; the test runner is outside). Several clients repeat
a cancel until it answers 409, on a running, a queued, a sharded and a training job, the way
a retrying client or a double click does; a fifth test sends RQ's stop command straight to the
worker, again and again, past the API's idempotence. Afterwards every process of the group is
the one that started, each job ended ``canceled`` once and stayed so, and the next job finishes.

A stop command that reached the worker after its horse was reaped used to make RQ signal
``getpgid(0)``, the worker's own group: every process here, SIGKILLed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import requests
from rq.command import send_stop_job_command
from rq.job import Job

from core.datasets import PIXEL_COLUMNS
from core.jobs import cancel_key
from tests.conftest import API_KEY
from tests.deploy.helpers import cancel_storm
from tests.jobs.conftest import FAST_WORKER_ENV, Stack, StatusWatch, save_npz, write_kaggle_csv
from tests.support import GunicornServer, RedisServer, wait_until

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CLIENTS = 4
SHARD_BYTES = 48 * 1024 * 1024  # a 30 MB upload is one job, a 75 MB one three shards
# Many epochs on a small set: a training job that runs until it is canceled.
LONG = {"hidden": [32], "epochs": 400, "dropout": 0.0, "augment_shift": 0, "early_stopping": 0, "batch_size": 64}


class GroupStack:
    """The stack in one process group, the stop commands the worker was sent, and job helpers."""

    def __init__(self, stack: Stack, sentinel: subprocess.Popen, redis_server: RedisServer) -> None:
        self.stack = stack
        self.sentinel = sentinel
        self.redis_server = redis_server
        self.worker = next(iter(stack.workers.values()))
        self.stops: Counter[str] = Counter()  # job id -> stop-job commands published to any worker
        self._pubsub = stack.redis().pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(**{"rq:pubsub:*": self._heard})
        self._listener = self._pubsub.run_in_thread(sleep_time=0.2, daemon=True)

    def _heard(self, message: dict) -> None:
        payload = json.loads(message["data"])
        if payload.get("command") == "stop-job":
            self.stops[payload["job_id"]] += 1

    def close(self) -> None:
        self._listener.stop()

    def members(self) -> dict[str, subprocess.Popen]:
        return {"sentinel": self.sentinel, "redis-server": self.redis_server.proc, "gunicorn": self.stack.api.proc,
                "worker": self.worker}

    def assert_all_alive(self) -> None:
        dead = {name: proc.returncode for name, proc in self.members().items() if proc.poll() is not None}
        assert not dead, f"processes of the group died (exit status by name): {dead}"

    def wait_started(self, job_id: str, timeout: float = 30) -> None:
        self.stack.wait(job_id, ("started",), timeout=timeout)

    def assert_survived(self, csv: Path) -> None:
        """Every process of the group is the one that started, and the next job (``csv``) finishes."""
        self.assert_all_alive()
        response = self.stack.submit_csv(csv)
        assert response.status_code == 202, response.text
        assert self.stack.wait(response.json()["job_id"])["status"] == "finished"
        self.assert_all_alive()


def write_csv(path: Path, pixels: np.ndarray, times: int) -> Path:
    """A Kaggle test.csv of ``pixels`` repeated ``times`` times, written fast (no per-row numpy call)."""
    block = ("\n".join(",".join(map(str, row)) for row in pixels.astype(np.int64).tolist()) + "\n").encode()
    with open(path, "wb") as fh:
        fh.write((",".join(PIXEL_COLUMNS) + "\n").encode())
        for _ in range(times):
            fh.write(block)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, mnist) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("storm-files")
    return {"small": write_kaggle_csv(root / "small.csv", mnist.X[:50]),
            "one_job": write_csv(root / "one-job.csv", mnist.X[:5000], 4),  # about 30 MB, 20,000 rows
            "sharded": write_csv(root / "sharded.csv", mnist.X[:5000], 10)}


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory, base_registry: Path, mnist) -> Iterator[GroupStack]:
    root = tmp_path_factory.mktemp("one-group")
    sentinel = subprocess.Popen(["sleep", "3600"], process_group=0)  # leads a new group (same session)
    members: list[object] = []
    try:
        redis_server = RedisServer(root / "redis", process_group=sentinel.pid)
        redis_server.start()
        members.append(redis_server)
        shutil.copytree(base_registry, root / "models")
        (root / "data").mkdir()
        save_npz(root / "data" / "digits.npz", mnist, 1000)
        env = {"MODELS_DIR": str(root / "models"), "REDIS_URL": redis_server.url, "API_KEY": API_KEY,
               "JOBS_DIR": str(root / "jobs"), "DATA_DIR": str(root / "data"), "RELOAD_INTERVAL": "0.2",
               **FAST_WORKER_ENV, "SCORING_SHARD_BYTES": str(SHARD_BYTES)}
        (root / "logs").mkdir()
        api = GunicornServer(env, root / "logs", process_group=sentinel.pid)
        stack = Stack(api, redis_server.url, env, root / "models", root / "jobs", root / "data", root / "logs",
                      process_group=sentinel.pid)
        members.append(stack)
        api.start()
        stack.start_worker()
        group = GroupStack(stack, sentinel, redis_server)
        yield group
        group.close()
    finally:
        for member in reversed(members):
            member.stop()  # type: ignore[attr-defined]
        sentinel.kill()  # the leader of the group this fixture made; nothing else is signalled
        sentinel.wait(5)


def test_a_running_scoring_job_canceled_by_many_clients_is_stopped_once(group: GroupStack, files):
    stack = group.stack
    job_id = stack.submit_csv(files["one_job"]).json()["job_id"]
    group.wait_started(job_id)
    watch = StatusWatch(stack, job_id)
    codes = cancel_storm(stack.url, job_id, clients=CLIENTS)
    assert set(codes) <= {202, 409} and codes[409] == CLIENTS, codes
    assert stack.wait(job_id, timeout=30)["status"] == "canceled"
    assert group.stops[job_id] == 1, "the stop command goes to the worker once, whatever the number of cancels"
    group.assert_survived(files["small"])
    assert not watch.left_a_final_state(), watch.stop()
    watch.stop()


def test_a_queued_job_and_a_running_retrain_canceled_by_many_clients(group: GroupStack, files):
    stack = group.stack
    train_id = stack.submit_train({"dataset": "digits.npz", "config": LONG, "promote": "never"}).json()["job_id"]
    group.wait_started(train_id)
    queued_id = stack.submit_csv(files["small"]).json()["job_id"]  # behind the retrain, on the only worker
    assert stack.status(queued_id)["status"] == "queued"
    codes = cancel_storm(stack.url, queued_id, clients=CLIENTS)
    assert codes[200] == 1 and set(codes) <= {200, 202, 409} and codes[409] == CLIENTS, codes
    assert stack.status(queued_id)["status"] == "canceled"
    assert group.stops[queued_id] == 0, "a queued job is taken off its queue; no worker is signalled"
    assert not (stack.jobs_dir / queued_id).exists(), "a job canceled before it ran takes its upload with it"

    codes = cancel_storm(stack.url, train_id, headers=AUTH, clients=CLIENTS)
    assert set(codes) <= {202, 409} and codes[409] == CLIENTS, codes
    assert stack.wait(train_id, timeout=30)["status"] == "canceled"
    assert group.stops[train_id] == 1
    group.assert_survived(files["small"])


def test_a_sharded_job_canceled_by_many_clients_stops_each_shard_at_most_once(group: GroupStack, files):
    stack = group.stack
    job_id = stack.submit_csv(files["sharded"]).json()["job_id"]
    assert len(Job.fetch(job_id, connection=stack.redis()).meta["shards"]) >= 2
    wait_until(lambda: stack.status(job_id)["status"] == "started", 60, "a shard to start", interval=0.02)
    codes = cancel_storm(stack.url, job_id, clients=CLIENTS)
    assert set(codes) <= {200, 202, 409} and codes[409] == CLIENTS, codes
    assert stack.wait(job_id, timeout=30)["status"] == "canceled"
    assert all(count <= 1 for count in group.stops.values()), group.stops
    group.assert_survived(files["small"])
    assert stack.status(job_id)["status"] == "canceled"


def test_stop_commands_past_the_api_never_reach_beyond_the_horse(group: GroupStack, files):
    """RQ's own stop command, published again and again while the job ends (no API in between):
    the commands that arrive after the horse is reaped are logged and do nothing."""
    stack = group.stack
    job_id = stack.submit_train({"dataset": "digits.npz", "config": LONG, "promote": "never"}).json()["job_id"]
    group.wait_started(job_id)
    stack.redis().set(cancel_key(job_id), 1)  # as the API does first, so the job ends canceled
    done = threading.Event()

    def hammer() -> None:
        with redis.Redis.from_url(stack.redis_url) as own:
            while not done.is_set():
                with contextlib.suppress(Exception):  # InvalidJobOperation once the job has ended
                    send_stop_job_command(own, job_id)

    threads = [threading.Thread(target=hammer) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        status = stack.wait(job_id, timeout=30)
        time.sleep(1)  # commands still queued in the worker's pubsub arrive after the end
    finally:
        done.set()
        for thread in threads:
            thread.join(10)
    assert status["status"] == "canceled", status
    assert group.stops[job_id] > CLIENTS
    group.assert_survived(files["small"])


def test_a_finished_job_answers_409_to_every_cancel(group: GroupStack, files):
    stack = group.stack
    job_id = stack.submit_csv(files["small"]).json()["job_id"]
    assert stack.wait(job_id)["status"] == "finished"
    for method in ("delete", "post"):
        url = f"{stack.url}/v1/jobs/{job_id}" + (":cancel" if method == "post" else "")
        response = requests.request(method, url, timeout=10)
        assert response.status_code == 409 and "already finished" in response.json()["error"], response.text
    assert stack.status(job_id)["status"] == "finished"
    assert group.stops[job_id] == 0
