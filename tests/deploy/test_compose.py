"""docker-compose for real: build, first model from mounted MNIST, predict, score, retrain, a worker
killed mid-job, slow clients held off by the proxy, ``down -v``; and a first ``up`` that cannot
train says so instead of failing silently.

Needs a Docker engine (``eval "$(../shared/tools/docker-sandbox start)"``); skipped otherwise.
Each run uses its own compose project, env file, port and image tag, and removes its
containers, networks and volumes whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from core.datasets import Dataset
from tests.deploy.helpers import (
    cancel_storm,
    grpc_predict,
    predict_accuracy,
    score_round_trip,
    submit_retrain,
    submit_score,
    wait_for_job,
)
from tests.deploy.proxy import slow_client_scenario
from tests.support import REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.docker

API_KEY = "compose-test-key"
TINY = "--preset default --epochs 2 --hidden 32 --dropout 0 --augment-shift 0 --early-stopping 0 --lr-schedule constant"
# Long enough (tens of seconds on 2 cores) that the worker can be killed while it trains.
PROXY_TIMEOUT = 3  # the proxy's header and body timeouts in this test, seconds
RETRAIN = {"hidden": [512, 256], "epochs": 12, "dropout": 0.0, "augment_shift": 1, "early_stopping": 0, "seed": 5}


def docker_unavailable() -> str | None:
    if shutil.which("docker") is None or shutil.which("docker-compose") is None:
        return "docker and docker-compose CLIs are not installed"
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer"
    if info.returncode != 0:
        return (f"no Docker engine at DOCKER_HOST={os.environ.get('DOCKER_HOST', '(unset)')}: "
                f"{info.stderr.strip()[:200]} - run: eval \"$(../shared/tools/docker-sandbox start)\"")
    return None


def require_docker() -> None:
    """Skip the test without an engine; fail it under REQUIRE_DOCKER (.ci/run started one: a skip hides a failure)."""
    reason = docker_unavailable()
    if reason and os.environ.get("REQUIRE_DOCKER"):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


class Stack:
    def __init__(self, tmp_path: Path, mnist_dir: Path, *extra_env: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.project = f"mnisttest{suffix}"
        self.port = free_port()
        self.grpc_port = free_port()
        self.env_file = tmp_path / f"{self.project}.env"
        self.images = [f"mnist-serve-test:{suffix}", f"mnist-serve-proxy-test:{suffix}"]
        self.env_file.write_text("\n".join([
            f"API_KEY={API_KEY}", f"API_PORT={self.port}", f"GRPC_PORT={self.grpc_port}", f"DATA_PATH={mnist_dir}",
            f"TRAIN_ARGS={TINY}",
            f"IMAGE={self.images[0]}", f"PROXY_IMAGE={self.images[1]}", "WEB_CONCURRENCY=2",
            "WORKER_STOP_GRACE_PERIOD=10s", "JOB_MONITORING_INTERVAL=2", "JOB_HEARTBEAT_GRACE=3",
            "WORKER_MAINTENANCE_INTERVAL=3", "JOB_RETRIES=2",
            f"PROXY_HEADER_TIMEOUT={PROXY_TIMEOUT}", f"PROXY_BODY_TIMEOUT={PROXY_TIMEOUT}", *extra_env,
        ]) + "\n")
        self.timings: dict[str, float] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-p", self.project, "--env-file", str(self.env_file),
                   "-f", str(REPO_ROOT / "docker-compose.yml"), *args]
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()

    def state(self, container: str) -> dict:
        out = subprocess.run(["docker", "inspect", "--format", "{{json .State}}", container], capture_output=True,
                             text=True, timeout=30, check=True)
        return json.loads(out.stdout)

    def restart_count(self, container: str) -> int:
        out = subprocess.run(["docker", "inspect", "--format", "{{.RestartCount}}", container], capture_output=True,
                             text=True, timeout=30, check=True)
        return int(out.stdout)

    def published_ports(self, service: str) -> list[int]:
        out = subprocess.run(["docker", "inspect", "--format", "{{json .NetworkSettings.Ports}}",
                              *self.containers(service)], capture_output=True, text=True, timeout=30, check=True)
        return [int(b["HostPort"]) for line in out.stdout.split() for bindings in json.loads(line).values()
                for b in bindings or []]

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, cmd in (("containers", ["docker", "ps", "-aq", "--filter", label]),
                          ("volumes", ["docker", "volume", "ls", "-q", "--filter", label]),
                          ("networks", ["docker", "network", "ls", "-q", "--filter", label])):
            found[kind] = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.split()
        return found

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
        subprocess.run(["docker", "image", "rm", "-f", *self.images], capture_output=True, timeout=60)


def kill_worker_process(container: str) -> None:
    """SIGKILL a worker container's ``python -m worker`` (the child of the container's init), from inside."""
    script = ("import os, signal\n"
              "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
              "    argv = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
              "    parent = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1]\n"
              "    if argv[1:3] == [b'-m', b'worker'] and parent == '1':\n"
              "        os.kill(int(pid), signal.SIGKILL)\n"
              "        print(pid)\n")
    killed = subprocess.run(["docker", "exec", container, "python", "-c", script], capture_output=True, text=True,
                            timeout=30)
    assert killed.stdout.strip(), f"no worker process found in {container}: {killed.stderr}"


@pytest.fixture()
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    require_docker()
    stacks: list[Stack] = []

    def make(data_path: Path, *extra_env: str) -> Stack:
        stacks.append(Stack(tmp_path, data_path, *extra_env))
        return stacks[-1]

    try:
        yield make
    finally:
        for stack in stacks:
            stack.down()
            print(f"\ncompose timings: {json.dumps({k: round(v, 1) for k, v in stack.timings.items()})}")


@pytest.fixture()
def stack(make_stack: Callable[..., Stack], mnist_dir: Path) -> Stack:
    return make_stack(mnist_dir)


def test_compose_stack_end_to_end(stack: Stack, mnist: Dataset) -> None:
    started = time.monotonic()
    up = stack.compose("up", "-d", "--build", "--scale", "worker=2")
    stack.timings["up_seconds"] = time.monotonic() - started
    # One app image, built once (by the trainer), and the proxy's: not once per service.
    built = re.findall(r"^Building (\S+)$", up.stdout + up.stderr, flags=re.M)  # docker-compose 1.29's line
    assert sorted(built) == ["proxy", "trainer"], up.stdout + up.stderr

    trainer = stack.containers("trainer")
    assert len(trainer) == 1
    state = stack.state(trainer[0])
    assert state["Status"] == "exited" and state["ExitCode"] == 0
    assert "published mnist version 1" in stack.compose("logs", "--no-color", "trainer").stdout

    def answers() -> bool:
        try:
            return requests.get(stack.url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, 120, "the API on the published port", interval=0.5)
    accuracy, version = predict_accuracy(stack.url, mnist, slice(9000, 9200))
    stack.timings["cold_start_to_first_prediction_seconds"] = time.monotonic() - started
    assert version == 1 and accuracy > 0.8
    # The README's examples for Docker-only users make their request files inside the stack.
    exported = stack.compose("exec", "-T", "api", "python", "-m", "trainer", "export", "--data", "/data",
                             "--rows", "3", "--format", "v1-json")
    body = json.loads(exported.stdout)
    assert np.array_equal(np.array(body["instances"]), mnist.X[:3].astype(int))
    for service in ("api", "proxy"):
        wait_until(lambda s=service: stack.state(stack.containers(s)[0]).get("Health", {}).get("Status") == "healthy",
                   60, f"the {service} container's /readyz healthcheck")
    # Only the proxy is published for HTTP (gunicorn is out of reach of slow clients); the api's gRPC port is,
    # and answers as REST does.
    assert stack.published_ports("api") == [stack.grpc_port] and stack.published_ports("proxy") == [stack.port]
    grpc_labels, grpc_version = grpc_predict(stack.grpc_port, mnist.X[9000:9200])
    assert grpc_version == "1" and (grpc_labels == mnist.y[9000:9200]).mean() == pytest.approx(accuracy)

    # 32 slow sockets (4 x gunicorn's 2 x 4 threads) trickling headers and bodies: predictions
    # still answered, and the proxy closes the slow sockets after its timeouts.
    result = slow_client_scenario(stack.port, mnist.X[:1].astype(int).tolist(), 32, seconds=8, request_timeout=5,
                                  body_interval=PROXY_TIMEOUT + 2)
    assert result.attempts >= 10 and result.success_fraction >= 0.95, result
    assert min(map(len, result.slow.seconds_to_close.values())) >= 16, result.slow

    # The trainer is idempotent: with a model published it does nothing and exits 0.
    again = stack.compose("run", "--rm", "trainer")
    assert again.returncode == 0 and "nothing to do" in again.stdout + again.stderr

    assert score_round_trip(stack.url, mnist, slice(9500, 9800), timeout=120) > 0.8

    workers = stack.containers("worker")
    assert len(workers) == 2
    job_id = submit_retrain(stack.url, API_KEY, "t10k-images-idx3-ubyte.gz", RETRAIN)
    wait_until(lambda: requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=5).json().get("epoch", 0) >= 1,
               180, "the retraining job to finish its first epoch", interval=0.3)
    busy = [c for c in workers if job_id in subprocess.run(["docker", "logs", c], capture_output=True,
                                                            text=True, timeout=30).stderr]
    assert len(busy) == 1, "exactly one worker container should have picked up the job"
    subprocess.run(["docker", "kill", busy[0]], check=True, capture_output=True, timeout=30)

    status = wait_for_job(stack.url, job_id, 300)
    assert status["status"] == "finished", status
    assert status["produced_version"] == 2 and status["retries_left"] < 2  # it ran again after the kill
    models = requests.get(f"{stack.url}/v1/models/mnist", timeout=10).json()
    assert [v["version"] for v in models["versions"]] == [1, 2]  # the killed attempt published nothing
    wait_until(lambda: predict_accuracy(stack.url, mnist, slice(0, 100))[1] == 2, 30,
               "the API to serve the retrained version")

    # Every worker process killed (an OOM kill, a crash): the containers' restart policy brings them
    # back, and a job queued while none ran still finishes.
    # (`docker kill` above stopped a container by hand: its restart policy leaves it stopped.)
    running = [c for service in ("worker", "worker-scoring") for c in stack.containers(service)
               if stack.state(c)["Running"]]
    for container in running:
        kill_worker_process(container)
    job_id = submit_score(stack.url, mnist, slice(9000, 9100))
    assert wait_for_job(stack.url, job_id, 120)["status"] == "finished"
    assert all(stack.restart_count(c) >= 1 for c in running)

    # Four clients repeating DELETE on a running retrain until it answers 409 (issue 22's storm):
    # the job ends canceled, and every service keeps serving.
    job_id = submit_retrain(stack.url, API_KEY, "t10k-images-idx3-ubyte.gz", RETRAIN)
    wait_until(lambda: requests.get(f"{stack.url}/v1/jobs/{job_id}", timeout=5).json()["status"] == "started",
               120, "the retrain to start", interval=0.2)
    codes = cancel_storm(stack.url, job_id, {"Authorization": f"Bearer {API_KEY}"})
    assert set(codes) <= {202, 409} and codes[409] == 4, codes
    assert wait_for_job(stack.url, job_id, 60)["status"] == "canceled"
    assert score_round_trip(stack.url, mnist, slice(9500, 9600), timeout=120) > 0.8
    assert all(stack.state(c)["Running"] for c in running + [c for service in ("redis", "api", "proxy")
                                                            for c in stack.containers(service)])

    # An idle worker stops on SIGTERM well within its grace period: exit 0, not compose's SIGKILL (137).
    started = time.monotonic()
    stack.compose("stop", "-t", "20", "worker-scoring")
    stack.timings["idle_worker_stop_seconds"] = time.monotonic() - started
    assert stack.state(stack.containers("worker-scoring")[0])["ExitCode"] == 0

    # A recreated api container (new address) is found again by the running proxy.
    old_api = stack.containers("api")
    stack.compose("up", "-d", "--no-deps", "--force-recreate", "api")
    assert stack.containers("api") != old_api
    wait_until(answers, 120, "the recreated api through the same proxy", interval=0.5)

    stack.down()
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}


def test_first_up_that_cannot_train_fails_loudly(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    """Issue 9 (5): no silent failure and no root-owned DATA_PATH created by Docker."""
    missing = tmp_path / "no-such-folder"
    result = make_stack(missing).compose("up", "-d", "--build", check=False)
    assert result.returncode != 0
    assert "bind source path does not exist" in result.stderr, result.stderr
    assert not missing.exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    stack = make_stack(empty, "MNIST_URLS=none")
    result = stack.compose("up", "-d", "--build", check=False)
    assert result.returncode != 0 and "exited with code 2" in result.stderr, result.stderr
    assert "no training data for the first model" in stack.compose("logs", "--no-color", "trainer").stdout
    assert stack.containers("api") == [] and stack.containers("proxy") == []  # nothing half-up answering 502


def test_an_empty_api_key_is_refused_in_one_short_line(tmp_path: Path, mnist_dir: Path) -> None:
    """docker-compose 1.29 prints the whole option it interpolates: the key's check sits in a field of its own."""
    if shutil.which("docker-compose") is None:
        require_docker()  # the reason, as a skip (or a failure under REQUIRE_DOCKER)
    env_file = tmp_path / "empty.env"
    env_file.write_text(f"API_KEY=\nDATA_PATH={mnist_dir}\n")
    result = subprocess.run(["docker-compose", "--env-file", str(env_file), "-f", str(REPO_ROOT / "docker-compose.yml"),
                             "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    message = result.stderr.strip()
    assert message.endswith("API_KEY is required - copy .env.example to .env and set API_KEY"), message
    assert len(message) < 300 and "MODEL_NAME" not in message, message
