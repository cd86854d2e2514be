"""``deploy/run-local`` end to end, without Docker: up with a tiny first training, predict (HTTP and gRPC),
score, Ctrl-C.

Every process the launcher starts inherits a unique marker in its environment, so after the
SIGINT the test can prove that not one of them (redis, gunicorn and its workers, RQ worker
and work-horses) is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests

from core.datasets import Dataset
from core.registry import ModelRegistry
from tests.deploy.helpers import grpc_predict, predict_accuracy, score_round_trip
from tests.deploy.launcher import Launcher, alive, marked_pids
from tests.support import REPO_ROOT, free_port, wait_until


@pytest.fixture()
def launcher(tmp_path: Path, mnist_dir: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path, mnist_dir)
    try:
        yield launcher
    finally:
        launcher.stop()


def test_run_local_serves_scores_and_stops_on_ctrl_c(launcher: Launcher, mnist: Dataset) -> None:
    launcher.start()
    assert ModelRegistry(launcher.models).versions("mnist") == [1]  # the bootstrap trained the first model
    accuracy, version = predict_accuracy(launcher.url, mnist, slice(9000, 9100))
    assert version == 1 and accuracy > 0.8
    assert score_round_trip(launcher.url, mnist, slice(9500, 9800), timeout=90) > 0.8
    grpc_labels, grpc_version = grpc_predict(launcher.grpc_port, mnist.X[9000:9010])
    assert grpc_version == "1" and (grpc_labels == mnist.y[9000:9010]).mean() > 0.5

    # Clients reach gunicorn through nginx only: a header that never ends is cut off after
    # PROXY_HEADER_TIMEOUT (2 s here; bound generous), and nginx's own errors are JSON.
    with socket.create_connection(("127.0.0.1", launcher.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(4096) == b""
    too_long = requests.get(launcher.url + "/healthz", headers={"X-Big": "x" * 20_000}, timeout=10)
    assert too_long.status_code == 431 and "error" in too_long.json()
    assert (launcher.run_dir / "nginx" / "nginx.conf").exists()

    pids = [int(p) for p in (launcher.run_dir / "pids").read_text().split()]  # redis, gunicorn, nginx, RQ worker
    assert len(pids) == 4 and all(alive(pid) for pid in pids)
    assert len(marked_pids(launcher.marker)) >= 4  # launcher, gunicorn master + 2 workers, RQ worker

    launcher.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert launcher.proc.wait(60) == 0, launcher.log()
    wait_until(lambda: not marked_pids(launcher.marker) and not any(map(alive, pids)), 10,
               "every launched process to exit")
    assert "[run-local] stopped" in launcher.log(), launcher.log()
    with pytest.raises(requests.ConnectionError):
        requests.get(launcher.url + "/healthz", timeout=2)
    with pytest.raises(grpc.RpcError):
        grpc_predict(launcher.grpc_port, mnist.X[:1])



def test_second_start_reuses_the_model(launcher: Launcher, mnist: Dataset) -> None:
    """A registry that already has a model is served as is: no training at start-up."""
    launcher.start()
    launcher.proc.send_signal(signal.SIGTERM)
    assert launcher.proc.wait(60) == 0, launcher.log()
    first = launcher.log()
    launcher.start()
    assert "nothing to do" in launcher.log().removeprefix(first)
    assert ModelRegistry(launcher.models).versions("mnist") == [1]
    assert predict_accuracy(launcher.url, mnist, slice(0, 50))[1] == 1


def test_no_training_data_stops_everything_with_the_message(launcher: Launcher, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    launcher.env.update({"DATA_DIR": str(tmp_path / "empty"), "MNIST_URLS": "none"})
    with pytest.raises(RuntimeError, match="exited with 2"):
        launcher.start()
    log = launcher.log()
    assert "no training data for the first model" in log and "train.csv" in log
    assert "[run-local] stopped" in log  # the redis-server it had started was stopped too
    assert not marked_pids(launcher.marker)
    assert not (launcher.run_dir / "pids").exists()


def assert_all_stopped(launcher: Launcher, pids: list[int]) -> None:
    wait_until(lambda: not marked_pids(launcher.marker) and not any(map(alive, pids)), 10,
               "every launched process to exit")
    assert "[run-local] stopped" in launcher.log(), launcher.log()


def test_a_second_launcher_refuses_before_touching_anything(launcher: Launcher, mnist: Dataset) -> None:
    """Same RUN_DIR: no false "ready", no second redis on the AOF folder, the first copy's pids kept."""
    launcher.start()
    pids_file = launcher.run_dir / "pids"
    before_pids = pids_file.read_text()

    second = launcher.run_second()
    assert second.returncode == 1, second.stderr
    assert "ready:" not in second.stderr
    first_line = second.stderr.splitlines()[0]
    assert "already running" in first_line and f"launcher pid {launcher.proc.pid}" in first_line
    assert f"127.0.0.1:{launcher.port}" in first_line and f"kill {launcher.proc.pid}" in second.stderr
    assert pids_file.read_text() == before_pids  # nothing started, nothing deleted
    assert predict_accuracy(launcher.url, mnist, slice(0, 20))[1] == 1  # the first copy still serves

    pids = [int(p) for p in before_pids.split()]
    launcher.proc.send_signal(signal.SIGINT)
    assert launcher.proc.wait(60) == 0, launcher.log()
    assert_all_stopped(launcher, pids)
    assert not (launcher.run_dir / "launcher").exists()


def test_a_busy_port_is_reported_before_anything_starts(launcher: Launcher) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", launcher.port))
        busy.listen()
        result = launcher.run_second()
    assert result.returncode == 1
    assert result.stderr.startswith(f"[run-local] port {launcher.port} is in use"), result.stderr
    assert "API_PORT=" in result.stderr
    assert not (launcher.run_dir / "redis").exists() and not launcher.models.exists()  # no redis, no training


def test_a_busy_grpc_port_is_reported_before_anything_starts(launcher: Launcher) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", launcher.grpc_port))
        busy.listen()
        result = launcher.run_second()
    assert result.returncode == 1
    assert result.stderr.startswith(f"[run-local] gRPC port {launcher.grpc_port} is in use"), result.stderr
    assert "GRPC_PORT=0: no gRPC" in result.stderr
    assert not (launcher.run_dir / "redis").exists() and not launcher.models.exists()


def test_a_fresh_checkout_hears_of_a_busy_port_before_the_install(tmp_path: Path) -> None:
    """`make run` in a clone with no .venv yet: the port is checked first, not after a minute of pip."""
    checkout = tmp_path / "fresh"
    (checkout / "deploy").mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml", "deploy/run-local"):
        (checkout / name).write_bytes((REPO_ROOT / name).read_bytes())
    (checkout / "deploy" / "run-local").chmod(0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "RUN_DIR", "MAKE"))}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = subprocess.run(["make", "run", f"API_PORT={port}"], cwd=checkout, capture_output=True, text=True,
                                timeout=60, env={**env, "API_PORT": str(port)})
    assert result.returncode != 0
    assert f"[run-local] port {port} is in use" in result.stderr, result.stderr
    assert not (checkout / ".venv").exists()  # refused before `make install` created anything


def test_sigint_to_make_run_stops_every_child(launcher: Launcher) -> None:
    """make keeps SIGINT to itself and waits; the launcher must notice and stop everything."""
    # -o: never reinstall the venv in a test, even when pyproject.toml is newer than it
    launcher.start(["make", "-s", "-o", ".venv/.runtime-installed", "run"])
    pids = [int(p) for p in (launcher.run_dir / "pids").read_text().split()]
    assert len(pids) == 4
    make = launcher.proc
    make.send_signal(signal.SIGINT)
    assert make.wait(60) in (-signal.SIGINT, 0, 130), launcher.log()
    assert_all_stopped(launcher, pids)


def test_sigterm_stops_a_make_run_started_by_a_script(launcher: Launcher) -> None:
    """A script's `make run &` starts make with SIGINT ignored, which make cannot undo: `kill -INT`
    reaches nothing there (the README says so) and `kill -TERM` of make's pid must stop everything."""
    launcher.start(["make", "-s", "-o", ".venv/.runtime-installed", "run"], sigint=signal.SIG_IGN)
    pids = [int(p) for p in (launcher.run_dir / "pids").read_text().split()]
    make = launcher.proc
    make.send_signal(signal.SIGTERM)
    make.wait(60)  # make passes SIGTERM to its child, waits for it, then dies of the signal itself
    assert_all_stopped(launcher, pids)


def test_sigint_stops_a_launcher_started_with_sigint_ignored(launcher: Launcher) -> None:
    """A script's `deploy/run-local &` hands it SIGINT ignored; `kill -INT $!` must still stop it."""
    launcher.start(sigint=signal.SIG_IGN)
    pids = [int(p) for p in (launcher.run_dir / "pids").read_text().split()]
    launcher.proc.send_signal(signal.SIGINT)
    assert launcher.proc.wait(60) == 0, launcher.log()
    assert_all_stopped(launcher, pids)


def test_sigint_during_the_first_training_stops_at_once(launcher: Launcher) -> None:
    """The bootstrap trains for minutes here; a signal must not wait for it to finish."""
    launcher.env["TRAIN_ARGS"] = "--epochs 200 --early-stopping 0"
    proc = launcher.spawn()
    launcher.wait_for_log("training the first", 60, "the first training to start")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0, launcher.log()  # a generous bound: the point is "not after 200 epochs"
    assert_all_stopped(launcher, [])
    assert ModelRegistry(launcher.models).versions("mnist") == []


def test_an_empty_api_key_gets_a_generated_one(launcher: Launcher) -> None:
    """`API_KEY= make run` is "unset": the launcher's generated key, which then works for promotion."""
    launcher.env["API_KEY"] = ""
    launcher.start()
    key = (launcher.run_dir / "api-key").read_text().strip()
    assert len(key) >= 32 and "API_KEY not set" in launcher.log()
    response = requests.put(launcher.url + "/v1/models/mnist/aliases/production", json={"version": 1},
                            headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200, response.text


def worker_pids(launcher: Launcher) -> list[int]:
    """The launcher's RQ workers: its children whose command line is ``python -m worker``."""
    found = []
    for pid in marked_pids(launcher.marker):
        try:
            cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
            parent = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if parent == launcher.proc.pid and cmdline[1:3] == [b"-m", b"worker"]:
            found.append(pid)
    return found


def test_a_killed_worker_is_restarted_and_predictions_never_fail(launcher: Launcher, mnist: Dataset) -> None:
    """Supervision: a worker SIGKILLed (an OOM kill, a crash) is back within seconds while the API
    answers every prediction; past WORKER_MAX_RESTARTS restarts a minute it is given up, and the
    service goes on serving."""
    launcher.env["WORKER_MAX_RESTARTS"] = "1"
    launcher.start()
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def predict_all_along() -> None:
        nonlocal answered
        body = {"instances": mnist.X[:2].astype(int).tolist()}
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.post(launcher.url + "/v1/models/mnist:predict", json=body, timeout=10)
                    if response.status_code == 200:
                        answered += 1
                    else:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                except requests.RequestException as exc:
                    failures.append(repr(exc))
                time.sleep(0.02)

    client = threading.Thread(target=predict_all_along, daemon=True)
    client.start()
    try:
        wait_until(lambda: len(worker_pids(launcher)) == 1, 10, "the worker's process")
        [first] = worker_pids(launcher)
        os.kill(first, signal.SIGKILL)  # identified above: the launcher's own `python -m worker`
        launcher.wait_for_log("worker 1 restarted", 30, "the worker's restart")
        assert f"worker 1 (pid {first}) exited (killed by SIGKILL); restarting it in 1s" in launcher.log()
        # The launcher logs the restart as soon as it has forked: the child is `python -m worker` only
        # once setsid has exec'd it
        wait_until(lambda: len(worker_pids(launcher)) == 1, 10, "the restarted worker's process")
        [second] = worker_pids(launcher)
        assert second != first
        assert score_round_trip(launcher.url, mnist, slice(9500, 9600), timeout=60) > 0.8  # the new one works

        os.kill(second, signal.SIGKILL)  # the second death within the minute: given up
        launcher.wait_for_log("giving up on it", 30, "the launcher to give the worker up")
        time.sleep(1)
        assert launcher.proc.poll() is None, launcher.log()
        assert worker_pids(launcher) == []
        assert requests.get(launcher.url + "/readyz", timeout=10).status_code == 200
    finally:
        stop.set()
        client.join(15)
    assert answered > 50 and not failures, (answered, failures[:5])
