"""``deploy/run-local`` end to end, without Docker: up with a tiny first training, predict, score, Ctrl-C.

Every process the launcher starts inherits a unique marker in its environment, so after the
SIGINT the test can prove that not one of them (redis, gunicorn and its workers, RQ worker
and work-horses) is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.datasets import Dataset
from core.registry import ModelRegistry
from tests.deploy.helpers import predict_accuracy, score_round_trip
from tests.support import REPO_ROOT, free_port, wait_until

TINY = "--epochs 2 --hidden 32 --dropout 0 --augment-shift 0 --early-stopping 0 --lr-schedule constant"


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (descendants of the launcher)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def alive(pid: int) -> bool:
    """Running (not a zombie). Redis rewrites its environment for its process title, so it is
    tracked by the pid the launcher recorded rather than by the marker."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Launcher:
    def __init__(self, tmp_path: Path, mnist_dir: Path) -> None:
        self.marker = f"RUN_LOCAL_TEST_MARKER={uuid.uuid4().hex}"
        self.port = free_port()
        self.run_dir = tmp_path / "run"
        self.models = tmp_path / "models"
        self.log_path = tmp_path / "run-local.log"
        key, value = self.marker.split("=")
        self.env = {**os.environ, key: value, "API_PORT": str(self.port), "RUN_DIR": str(self.run_dir),
                    "MODELS_DIR": str(self.models), "JOBS_DIR": str(tmp_path / "jobs"), "DATA_DIR": str(mnist_dir),
                    "TRAIN_ARGS": TINY, "API_KEY": "local-key", "WORKERS": "1", "STOP_TIMEOUT": "20",
                    "WEB_CONCURRENCY": "2", "RELOAD_INTERVAL": "0.2"}
        self.env.pop("REDIS_URL", None)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # A terminal delivers SIGINT with its default action; undo any "ignored" inherited from CI.
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([str(REPO_ROOT / "deploy" / "run-local")], cwd=REPO_ROOT, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"run-local exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return requests.get(self.url + "/readyz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 120, "run-local to answer /readyz", interval=0.3)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_leftovers(self) -> None:
        recorded = self.run_dir / "pids"
        pids = [int(p) for p in recorded.read_text().split()] if recorded.exists() else []
        for pid in [*marked_pids(self.marker), *filter(alive, pids)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture()
def launcher(tmp_path: Path, mnist_dir: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path, mnist_dir)
    try:
        yield launcher
    finally:
        if launcher.proc is not None and launcher.proc.poll() is None:
            launcher.proc.send_signal(signal.SIGTERM)
            try:
                launcher.proc.wait(30)
            except subprocess.TimeoutExpired:
                launcher.proc.kill()
        launcher.kill_leftovers()


def test_run_local_serves_scores_and_stops_on_ctrl_c(launcher: Launcher, mnist: Dataset) -> None:
    launcher.start()
    assert ModelRegistry(launcher.models).versions("mnist") == [1]  # the bootstrap trained the first model
    accuracy, version = predict_accuracy(launcher.url, mnist, slice(9000, 9100))
    assert version == 1 and accuracy > 0.8
    assert score_round_trip(launcher.url, mnist, slice(9500, 9800), timeout=90) > 0.8

    pids = [int(p) for p in (launcher.run_dir / "pids").read_text().split()]  # redis, gunicorn, RQ worker
    assert len(pids) == 3 and all(alive(pid) for pid in pids)
    assert len(marked_pids(launcher.marker)) >= 4  # launcher, gunicorn master + 2 workers, RQ worker

    launcher.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert launcher.proc.wait(60) == 0, launcher.log()
    wait_until(lambda: not marked_pids(launcher.marker) and not any(map(alive, pids)), 10,
               "every launched process to exit")
    assert "[run-local] stopped" in launcher.log()
    with pytest.raises(requests.ConnectionError):
        requests.get(launcher.url + "/healthz", timeout=2)


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
    launcher.env.update({"DATA_DIR": str(tmp_path / "empty"), "MNIST_URLS": "none"})
    with pytest.raises(RuntimeError, match="exited with 2"):
        launcher.start()
    log = launcher.log()
    assert "no training data for the first model" in log and "train.csv" in log
    assert "[run-local] stopped" in log  # the redis-server it had started was stopped too
    assert not marked_pids(launcher.marker)
    assert not (launcher.run_dir / "pids").exists()
