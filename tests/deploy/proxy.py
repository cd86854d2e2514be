"""nginx in front of a test gunicorn, configured by the product's own deploy/nginx-config, and a
slow-client load (slowloris) to point at either.

``NginxProxy`` renders deploy/nginx.conf.template exactly as docker-compose's proxy image and
deploy/run-local do, with the timeouts and limits a test passes as environment variables.
``slow_client_scenario`` holds N connections that trickle a request header or body one byte a
second (reopening any the server closes, so N stay open the whole time) while one normal client
keeps asking for predictions; bench/slow_clients.py and tests/deploy/test_slow_clients.py share it.
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from tests.support import REPO_ROOT, free_port, stop_process, wait_until

NGINX_CONFIG = REPO_ROOT / "deploy" / "nginx-config"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


class NginxProxy:
    """``nginx`` on a free loopback port in front of ``upstream`` (host:port), in the foreground."""

    def __init__(self, upstream: str, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.config = workdir / "nginx.conf"
        self.access_log = workdir / "access.log"
        self.error_log = workdir / "error.log"
        self.env = {**os.environ, "PROXY_LISTEN": f"127.0.0.1:{self.port}", "PROXY_UPSTREAM": upstream,
                    "PROXY_PREFIX": str(workdir / "prefix"), "PROXY_ACCESS_LOG": str(self.access_log),
                    "PROXY_ERROR_LOG": str(self.error_log), **(env or {})}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(NGINX_CONFIG), str(self.config)], env=self.env, check=True, timeout=30)
        with open(self.error_log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([self.binary, "-e", str(self.error_log), "-c", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=log)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.error_log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        try:
            wait_until(up, timeout, f"nginx on {self.url}")
        except BaseException:
            self.stop()
            raise

    def rss_kib(self) -> int:
        """Resident memory of the master and its workers, KiB."""
        if self.proc is None:
            return 0
        pids = [self.proc.pid, *map(int, subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                                          text=True).stdout.split())]
        total = 0
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        return total

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)  # SIGTERM: nginx's fast shutdown
            self.proc = None


# --- slow clients -----------------------------------------------------------------------------

PREDICT_PATH = "/v1/models/mnist:predict"


def _slow_request_head(kind: str) -> bytes:
    """What a slow client sends at once: all but the end of its header, or a header announcing a
    body it will then trickle."""
    head = f"POST {PREDICT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if kind == "body":
        return (head + "Content-Length: 100000\r\n\r\n").encode()
    return (head + "X-Slow: ").encode()


@dataclass
class SlowStats:
    opened: int = 0
    connect_failures: int = 0
    # seconds from connect to the server closing the socket, by kind ("header", "body")
    seconds_to_close: dict[str, list[float]] = field(default_factory=lambda: {"header": [], "body": []})

    @property
    def closed_by_server(self) -> int:
        return sum(map(len, self.seconds_to_close.values()))


@dataclass
class _Slow:
    kind: str
    opened_at: float
    next_send: float


class SlowClients:
    """``count`` sockets, half trickling a header one byte every ``header_interval`` seconds, half
    sending a whole header and then a body one byte every ``body_interval`` seconds.

    With ``reopen`` a socket the server closed is replaced at once, so ``count`` stay in flight.
    Runs in one thread with non-blocking sockets; ``stop`` closes everything.
    """

    def __init__(self, port: int, count: int, header_interval: float = 1.0, body_interval: float = 1.0,
                 reopen: bool = True) -> None:
        self.port = port
        self.count = count
        self.intervals = {"header": header_interval, "body": body_interval}
        self.reopen = reopen
        self.stats = SlowStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, index: int, selector: selectors.BaseSelector) -> None:
        kind = "body" if index % 2 else "header"
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(_slow_request_head(kind))
        except OSError:
            self.stats.connect_failures += 1
            sock.close()
            return
        sock.setblocking(False)
        now = time.monotonic()
        selector.register(sock, selectors.EVENT_READ, _Slow(kind, now, now + self.intervals[kind]))
        self.stats.opened += 1

    def _closed(self, sock: socket.socket, selector: selectors.BaseSelector) -> None:
        slow: _Slow = selector.get_key(sock).data
        selector.unregister(sock)
        sock.close()
        self.stats.seconds_to_close[slow.kind].append(time.monotonic() - slow.opened_at)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        opened = 0
        while not self._stop.is_set():
            if self.reopen or opened < self.count:
                while len(selector.get_map()) < self.count and not self._stop.is_set():
                    self._open(opened, selector)
                    opened += 1
            now = time.monotonic()
            for key in list(selector.get_map().values()):
                slow: _Slow = key.data
                if now < slow.next_send:
                    continue
                slow.next_send = now + self.intervals[slow.kind]
                try:
                    key.fileobj.send(b"a")
                except BlockingIOError:
                    pass
                except OSError:  # reset or closed by the server
                    self._closed(key.fileobj, selector)
            for key, _ in selector.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # FIN or RST: the server gave up on this client
                    self._closed(key.fileobj, selector)
                # a response (e.g. a 408) is read and dropped; the close follows
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


@dataclass
class ScenarioResult:
    attempts: int
    ok: int
    latencies_ms: list[float]
    slow: SlowStats

    @property
    def success_fraction(self) -> float:
        return self.ok / self.attempts if self.attempts else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def normal_client(url: str, instances: list, seconds: float, request_timeout: float,
                  interval: float = 0.05) -> tuple[int, int, list[float]]:
    """Predictions one after another for ``seconds``, each on a new connection as a fresh client
    would make; (attempts, answered 200, latencies of the 200s in ms)."""
    attempts = ok = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        attempts += 1
        started = time.perf_counter()
        try:
            response = requests.post(url + PREDICT_PATH, json={"instances": instances}, timeout=request_timeout,
                                     headers={"Connection": "close"})
            if response.status_code == 200:
                ok += 1
                latencies.append((time.perf_counter() - started) * 1000)
        except requests.RequestException:
            pass
        time.sleep(interval)
    return attempts, ok, latencies


def slow_client_scenario(port: int, instances: list, slow: int, seconds: float, request_timeout: float = 2.0,
                         settle: float = 2.0, body_interval: float = 1.0) -> ScenarioResult:
    """``slow`` slow sockets against 127.0.0.1:``port`` for ``settle + seconds``, and a normal
    client on the same port during the last ``seconds``. The slow sockets stay open (reopened)
    until the normal client is done."""
    url = f"http://127.0.0.1:{port}"
    clients = SlowClients(port, slow, body_interval=body_interval)
    clients.start()
    try:
        time.sleep(settle)  # every slow socket connected and sending before the first prediction
        attempts, ok, latencies = normal_client(url, instances, seconds, request_timeout)
    finally:
        clients.stop()
    return ScenarioResult(attempts, ok, latencies, clients.stats)
