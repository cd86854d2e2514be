"""Real processes for the tests: a private redis-server, the app under gunicorn, and helpers.

Every server binds 127.0.0.1 on a free port chosen here, so the suite never touches the
machine's own Redis on 6379 and can run beside other suites.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
# MNIST for tests and benchmarks: $MNIST_DIR, else the t10k files the repository ships in data/.
MNIST_DIR = Path(os.environ.get("MNIST_DIR", REPO_ROOT / "data"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def child_pids(parent: int) -> list[int]:
    """The live child processes of ``parent``, from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                children.append(int(entry.name))
    return children


class RedisServer:
    """A throw-away redis-server on a free loopback port; ``stop``/``start`` keep the same port.
    ``process_group``: start it in that process group (default: the test runner's)."""

    def __init__(self, workdir: Path, process_group: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process_group = process_group
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "yes"],
            stdout=open(self.workdir / "redis.log", "ab"), stderr=subprocess.STDOUT, process_group=self.process_group)
        try:
            wait_until(self.ping, 10, f"redis-server on port {self.port}")
        except BaseException:
            self.stop()
            raise

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class GunicornServer:
    """``gunicorn -c deploy/gunicorn.conf.py "service:create_app()"`` (or another ``app``, which must
    answer ``/healthz``) on a free loopback port; ``process_group`` as for ``RedisServer``."""

    def __init__(self, env: Mapping[str, str], logdir: Path, workers: int = 2, cwd: Path = REPO_ROOT,
                 app: str = "service:create_app()", process_group: int | None = None) -> None:
        self.port = free_port()
        self.cwd = cwd
        self.app = app
        self.process_group = process_group
        self.env = {**os.environ, **env, "BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(workers)}
        self.logdir = logdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.logdir / f"gunicorn-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(REPO_ROOT / "deploy" / "gunicorn.conf.py"),
             self.app],
            cwd=self.cwd, env=self.env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
            process_group=self.process_group)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; log:\n{self.log_path.read_text()}")
            try:
                return requests.get(self.url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_until(up, timeout, f"gunicorn on {self.url}")
        except BaseException:
            self.stop()  # a server that never came up must not outlive the test session
            raise

    def stop(self) -> None:
        """SIGTERM, and after a second SIGKILL for gunicorn and its workers. A graceful stop lingers up
        to 2 s on each connection whose client left unread data or kept it open (uploads refused
        before their body was read), and a test server has nothing to drain."""
        if self.proc is not None:
            workers = child_pids(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(1)
            except subprocess.TimeoutExpired:
                for pid in child_pids(self.proc.pid) or workers:  # this server's own workers, nothing else
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
