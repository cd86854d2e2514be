"""Workers on a second host: a separate compose project, on its own network, joins the main stack
through Redis and the shared volumes only, and scores one sharded job together with its workers.

The "second host" is a second compose project on the same Docker engine: its own network (no
route to the main stack's containers), Redis reached through a published port on the host,
and the main stack's models and jobs volumes mounted as external volumes, as an NFS-backed
volume would be on another machine. Needs a Docker engine, like tests/deploy/test_compose.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from rq.job import Job

from core.datasets import Dataset
from tests.deploy.helpers import score_result_accuracy, submit_score, wait_for_job
from tests.deploy.test_compose import Stack, require_docker
from tests.support import REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.docker

ROWS = slice(0, 3000)  # about 5.5 MB of CSV: some 27 shards of 200 KB


class MainStack(Stack):
    """The main stack, with Redis published for the other host (deploy/compose.shared-redis.yml)."""

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-p", self.project, "--env-file", str(self.env_file),
                   "-f", str(REPO_ROOT / "docker-compose.yml"),
                   "-f", str(REPO_ROOT / "deploy/compose.shared-redis.yml"), *args]
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result


def remote(main: MainStack, env_file: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["docker-compose", "-p", f"{main.project}remote", "--env-file", str(env_file),
               "-f", str(REPO_ROOT / "deploy/compose.worker.yml"), *args]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def networks(container: str) -> set[str]:
    out = subprocess.run(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", container],
                         capture_output=True, text=True, timeout=30, check=True)
    return set(json.loads(out.stdout))


def logs(container: str) -> str:
    out = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


@pytest.fixture()
def main_stack(tmp_path: Path, mnist_dir: Path) -> Iterator[tuple[MainStack, Path]]:
    require_docker()
    redis_port = free_port()
    # SCORING_CHUNK_ROWS=20: shards of ~110 rows take a moment each, so every worker gets some.
    stack = MainStack(tmp_path, mnist_dir, "REDIS_BIND=0.0.0.0", f"REDIS_PORT={redis_port}",
                      "SCORING_SHARD_BYTES=200000", "SCORING_CHUNK_ROWS=20")
    env_file = tmp_path / "remote.env"
    env_file.write_text("\n".join([
        f"REDIS_URL=redis://host.docker.internal:{redis_port}/0", f"IMAGE={stack.images[0]}",
        f"MODELS_VOLUME={stack.project}_models", f"JOBS_VOLUME={stack.project}_jobs",
        "JOB_MONITORING_INTERVAL=2", "JOB_HEARTBEAT_GRACE=3", "WORKER_MAINTENANCE_INTERVAL=3", "JOB_RETRIES=2",
        "SCORING_CHUNK_ROWS=20", "WORKER_STOP_GRACE_PERIOD=10s",
    ]) + "\n")
    try:
        yield stack, env_file
    finally:
        remote(stack, env_file, "down", "--remove-orphans", "--timeout", "10", check=False)
        stack.down()


def test_workers_of_another_project_share_a_sharded_job(main_stack: tuple[MainStack, Path], mnist: Dataset):
    stack, env_file = main_stack
    # One `worker` and one `worker-scoring`. On a busy machine the API can miss its healthcheck
    # budget while it starts, and `up` then gives up on the proxy that waits for it; `up` again
    # picks up from there (it fails the test only when the stack never comes up).
    for attempt in range(3):
        result = stack.compose("up", "-d", *(["--build"] if attempt == 0 else []), check=False)
        if result.returncode == 0:
            break
        assert "is unhealthy" in result.stderr, result.stderr[-3000:]
    else:
        raise AssertionError(f"the main stack never came up:\n{stack.compose('logs', '--tail', '50', 'api').stdout}")
    wait_until(lambda: _ready(stack.url), 300, "the main stack's API", interval=0.5)
    remote(stack, env_file, "up", "-d", "--no-build", "--scale", "worker=2")

    redis_port = int(next(line.split("=")[1] for line in stack.env_file.read_text().splitlines()
                          if line.startswith("REDIS_PORT=")))
    connection = redis.Redis(port=redis_port)
    wait_until(lambda: connection.scard("rq:workers") == 4, 120, "the four workers to register in Redis")
    metrics = requests.get(stack.url + "/metrics", timeout=10).text
    assert "mnist_jobs_workers_total 4.0" in metrics

    # Their own network: no container of the second project is on any network of the first.
    remote_workers = remote(stack, env_file, "ps", "-q", "worker").stdout.split()
    main_workers = stack.containers("worker") + stack.containers("worker-scoring")
    assert len(remote_workers) == 2 and len(main_workers) == 2
    main_networks = set().union(*(networks(c) for c in main_workers + stack.containers("redis")))
    assert all(networks(c).isdisjoint(main_networks) for c in remote_workers)

    job_id = submit_score(stack.url, mnist, ROWS)
    status = wait_for_job(stack.url, job_id, 600)
    assert status["status"] == "finished", status
    assert status["rows_scored"] == ROWS.stop
    assert score_result_accuracy(stack.url, job_id, mnist, ROWS) > 0.8  # ImageIds 1..3000 in order

    shard_ids = Job.fetch(job_id, connection=connection).meta["shards"]
    assert len(shard_ids) > 10
    ran_shards = {c: sum(shard_id in logs(c) for shard_id in shard_ids) for c in main_workers + remote_workers}
    assert sum(ran_shards.values()) >= len(shard_ids)
    assert sum(ran_shards[c] for c in remote_workers) > 0, ran_shards
    assert sum(ran_shards[c] for c in main_workers) > 0, ran_shards


def _ready(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
