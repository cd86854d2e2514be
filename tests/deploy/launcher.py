"""A launcher under test: ``deploy/run-local`` (or ``make run``) started as a child with its own
ports, run directory and registry, every process it starts marked so that a test can prove none is
left behind. Shared by tests/deploy/test_run_local.py and tests/deploy/test_readme.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from pathlib import Path

import requests

from tests.support import REPO_ROOT, free_port, wait_until

TINY = "--preset default --epochs 2 --hidden 32 --dropout 0 --augment-shift 0 --early-stopping 0 --lr-schedule constant"


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
        self.grpc_port = free_port()
        self.run_dir = tmp_path / "run"
        self.models = tmp_path / "models"
        self.log_path = tmp_path / "run-local.log"
        key, value = self.marker.split("=")
        self.env = {**os.environ, key: value, "API_PORT": str(self.port), "GRPC_PORT": str(self.grpc_port),
                    "RUN_DIR": str(self.run_dir),
                    "MODELS_DIR": str(self.models), "JOBS_DIR": str(tmp_path / "jobs"), "DATA_DIR": str(mnist_dir),
                    "TRAIN_ARGS": TINY, "API_KEY": "local-key", "WORKERS": "1", "STOP_TIMEOUT": "20",
                    "WEB_CONCURRENCY": "2", "RELOAD_INTERVAL": "0.2", "PROXY_HEADER_TIMEOUT": "2"}
        self.env.pop("REDIS_URL", None)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, command: list[str] | None = None, sigint: signal.Handlers = signal.SIG_DFL) -> None:
        """Start ``command`` (default: the launcher itself) and wait until the API answers.

        A terminal delivers SIGINT with its default action; ``sigint`` sets what the child
        inherits (SIG_IGN is what a script's ``cmd &`` gives it), overriding CI's own setting.
        """
        self.spawn(command, sigint)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"run-local exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return requests.get(self.url + "/readyz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 120, "run-local to answer /readyz", interval=0.3)

    def spawn(self, command: list[str] | None = None, sigint: signal.Handlers = signal.SIG_DFL) -> subprocess.Popen:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(command or [str(REPO_ROOT / "deploy" / "run-local")], cwd=REPO_ROOT,
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
        return self.proc

    def run_second(self, **env: str) -> subprocess.CompletedProcess[str]:
        """Another launcher with the same settings (plus ``env``), run to its end."""
        return subprocess.run([str(REPO_ROOT / "deploy" / "run-local")], cwd=REPO_ROOT, env={**self.env, **env},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float, what: str) -> None:
        """Wait until the launcher's log holds ``text``; fail at once, with the log, if it exits first."""
        def logged() -> bool:
            if text in self.log():
                return True
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"run-local exited with {self.proc.returncode} before {what}:\n{self.log()}")
            return False

        try:
            wait_until(logged, timeout, what, interval=0.2)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; the launcher's log:\n{self.log()}") from None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for anything the launcher left behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        recorded = self.run_dir / "pids"
        pids = [int(p) for p in recorded.read_text().split()] if recorded.exists() else []
        for pid in [*marked_pids(self.marker), *filter(alive, pids)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
