"""gunicorn settings for the API (also what docker-compose and deploy/run-local use).

``BIND`` and ``WEB_CONCURRENCY`` (workers) come from the environment, ``THREADS`` threads per
worker (gthread: keep-alive connections, requests overlap numpy work that releases the GIL),
``WORKER_CLASS`` (default ``inline``, below) and ``REUSE_PORT`` (default off).
Prometheus multiprocess mode needs ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports
prometheus_client, so it is set here, in the master, and inherited by every worker.
"""

import ctypes
import glob
import ipaddress
import multiprocessing
import os
import re
import socket
import tempfile
import time
from concurrent import futures

from gunicorn.workers.gthread import ThreadWorker

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("THREADS", "4"))
# "inline" (default): gthread whose workers share out the keep-alive connections and answer
# requests that have arrived whole on their main thread; "balanced": the sharing without that (both
# below); any gunicorn class by name otherwise ("gthread", "gevent", "sync").
_worker_class = os.environ.get("WORKER_CLASS", "")
# REUSE_PORT=1: one SO_REUSEPORT socket per worker, the kernel hashing connections over them (all
# 4 of 4 clients on one worker in 1 run of 8 by chance); the balanced worker needs the shared one.
reuse_port = os.environ.get("REUSE_PORT", "0").lower() not in ("0", "false", "no", "")
timeout = 60
keepalive = 5
# No gunicornc control socket: its default path is shared by every gunicorn of the user, so
# parallel servers (tests, benchmarks) would take it from each other.
control_socket_disable = True
# nginx (deploy/nginx.conf.template) is the only client in both run modes; gunicorn honours its
# X-Forwarded-Proto, and post_worker_init below its X-Forwarded-For, only from these addresses
# (FORWARDED_ALLOW_IPS; docker-compose sets "*": the api container is reachable on its private
# network only).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# One BLAS thread per process: workers x threads already use every core, and oversubscribed
# BLAS thread pools made a 1,000-row forward pass 20x slower under load. Workers inherit this
# environment and import numpy only after the fork.
for _blas in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas, "1")

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mnist-serve-metrics-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def on_starting(server) -> None:
    # Samples of a previous run would otherwise be summed into this one's counters.
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.unlink(path)


def _trusted_proxy(address: str, allowed: list[str]) -> bool:
    if "*" in allowed:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a unix socket peer: gunicorn trusts it as well
        return True
    return any(ip in ipaddress.ip_network(net, strict=False) for net in allowed)


def post_worker_init(worker) -> None:
    # gunicorn never rewrites REMOTE_ADDR, so the app's access log would show nginx's address.
    # nginx sets X-Forwarded-For to the one client address it saw (it does not append), so from
    # a trusted proxy that header is the real client; from anyone else it is ignored (forgeable).
    app, allowed = worker.wsgi, list(worker.cfg.forwarded_allow_ips)

    def real_client_address(environ, start_response):
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded and _trusted_proxy(environ.get("REMOTE_ADDR", ""), allowed):
            environ["REMOTE_ADDR"] = forwarded.rsplit(",", 1)[-1].strip()
        return app(environ, start_response)

    worker.wsgi = real_client_address


# Keep-alive connections held by each worker, in memory shared by the master's forks (-1: a free
# slot). gunicorn's workers race to accept on one socket and the worker that happens to be awake
# wins: with 4 keep-alive clients one worker often held all 4 (6 of 6 runs) while the other core
# idled. A balanced worker leaves a new connection to a worker holding fewer, for at most 100 ms.
_held = multiprocessing.RawArray("i", [-1] * (workers + 16))
_BALANCE_WAIT_S = 0.1


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker that accepts only while it holds no more connections than the others."""

    slot: int | None = None
    _declining_since = _last_decline = 0.0

    @property
    def nr_conns(self) -> int:
        return self._nr_conns

    @nr_conns.setter
    def nr_conns(self, value: int) -> None:  # gthread counts its connections here: publish the count
        self._nr_conns = value
        if self.slot is not None:
            _held[self.slot] = value

    def run(self) -> None:
        if self.slot is not None:  # counted from now on: a worker still loading the app takes no share
            _held[self.slot] = self._nr_conns
        super().run()

    def holds_more_than_another(self) -> bool:
        others = [held for i, held in enumerate(_held) if held >= 0 and i != self.slot]
        return bool(others) and self._nr_conns > min(others)

    def accept(self, listener) -> None:
        if self.holds_more_than_another():
            now = time.monotonic()
            if now - self._last_decline > 0.01:  # a new connection, not the same one again
                self._declining_since = now
            self._last_decline = now
            if now - self._declining_since < _BALANCE_WAIT_S:  # then take it: the other may be stuck
                time.sleep(0.0005)  # the listener stays readable: do not spin while the other accepts
                return
        super().accept(listener)


# A keep-alive request that has arrived whole is answered by the worker's main thread, where its
# connection's poll event lands, instead of being handed to a pool thread and the connection back
# to the main thread (a queue, a pipe write and two thread switches fought over one GIL per request:
# about half of a one-digit predict's time in a worker). Partial and large requests still go to
# the pool, so a slow client holds a pool thread, never the main thread. A new connection whose
# first request is already there when it is accepted (nginx sends it at once) is answered so too.
_INLINE_MAX_BYTES = 64 * 1024  # head and body; larger requests (batches, uploads) go to the pool
# A client that stops reading its answers would block the main thread in sendall(): a sendall
# that has not finished in 1 s fails instead, the connection is closed, and the worker goes on
# (gunicorn sends the head and the body of an answer apart: 2 s at most).
_INLINE_SEND_TIMEOUT_S = 1.0
# Answered by a pool thread whatever their size. Images above all: a small PNG can decode to 32 MiB,
# and decoding waits (up to seconds) for the bytes the process may hold decoded at once.
_POOL_FIELDS = (b"\r\ntransfer-encoding:", b"\r\nexpect:", b"\r\nupgrade:", b"\r\ncontent-type: multipart/")
# Only predictions are answered there: every other request may wait (a job's ?wait=, Redis while it
# is down, a dataset upload), and a wait on the main thread stalls every client of the worker.
_INLINE_TARGETS = re.compile(rb"POST /[^ ?]*(?::predict|/infer)(?:\?[^ ]*)? HTTP/1\.[01]\r\n")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)\r\n")


def _arrived_whole(sock: socket.socket) -> bool:
    """Whether the socket holds a whole HTTP/1 request (head and Content-Length body), unread."""
    try:
        head = sock.recv(_INLINE_MAX_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return False
    if not _INLINE_TARGETS.match(head):
        return False
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return False
    fields = head[:end + 2].lower()
    if head.startswith(b"PRI ") or any(name in fields for name in _POOL_FIELDS):
        return False  # HTTP/2, a chunked body, a 100-continue exchange, image uploads
    if b'"b64"' in head[end:]:  # images in JSON: decoding may wait for the process's decode budget
        return False
    match = _CONTENT_LENGTH.search(fields)
    return end + 4 + (int(match.group(1)) if match else 0) <= len(head)


class InlineThreadWorker(BalancedThreadWorker):
    """The balanced worker, answering requests that have arrived whole on its main thread.

    Requests still arriving go to the thread pool as in gthread. Requests found ready in one poll
    are answered after that poll's accepts; a poll, and each answer, accepts every connection
    waiting that the balance allows, so a worker busy answering still takes its share of new clients.
    """

    def init_process(self) -> None:
        self._ready: list = []
        self._answering = None  # the connection the main thread is answering
        super().init_process()

    def accept(self, listener) -> None:
        while True:  # one connection per poll would make a ramp of 64 clients wait 32 polls
            held = self._nr_conns
            super().accept(listener)
            if self._nr_conns == held:  # nothing waiting, or the balance left it to the other
                return

    def enqueue_req(self, conn) -> None:
        if (not self.cfg.is_ssl and not conn.is_http2 and not (conn.parser and conn.parser.unreader.buf.tell())
                and _arrived_whole(conn.sock)):
            conn.data_ready = True  # gthread's handle() would otherwise wait for a new connection's data
            self._ready.append(conn)
        else:
            super().enqueue_req(conn)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Requests of connections accepted between the last poll's answers are ready already.
        super().wait_for_and_dispatch_events(0 if self._ready else timeout)
        ready, self._ready = self._ready, []
        for conn in ready:
            self._answering = conn
            answered = futures.Future()
            try:
                answered.set_result(self.handle(conn))
            finally:
                self._answering = None
            self.finish_request(conn, answered)
            self._take_share_of_waiting()

    def _take_share_of_waiting(self) -> None:
        """Accept the connections waiting that are this worker's share, between two answers.

        A poll's answers can take tens of ms, and the balance lets each worker take one connection
        more than the other per poll: 64 clients connecting at once waited up to a second for
        their first answer. Non-blocking accepts, only while this worker holds no more than another.
        """
        if not self._accepting:
            return
        for listener in self.sockets:
            while not self.holds_more_than_another():
                held = self._nr_conns
                ThreadWorker.accept(self, listener)  # EAGAIN when nobody is waiting: nothing happens
                if self._nr_conns == held:
                    break

    def handle_request(self, req, conn):
        if conn is self._answering:  # after handle()'s setblocking(True), which clears any timeout
            conn.sock.settimeout(_INLINE_SEND_TIMEOUT_S)
        return super().handle_request(req, conn)


# Batching merges requests that run at once in one worker's threads: answered one at a time on the
# main thread they never would, so with MAX_BATCH_SIZE > 1 the default is the balanced gthread.
_worker_class = _worker_class or ("balanced" if int(os.environ.get("MAX_BATCH_SIZE", "1")) > 1 else "inline")
worker_class = {"balanced": BalancedThreadWorker, "inline": InlineThreadWorker}.get(_worker_class, _worker_class)


def pre_fork(server, worker) -> None:
    used = {w.slot for w in server.WORKERS.values() if isinstance(w, BalancedThreadWorker)}
    worker.slot = next((i for i in range(len(_held)) if i not in used), None)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    if getattr(worker, "slot", None) is not None:
        _held[worker.slot] = -1


# glibc's malloc raises its mmap threshold to the size of any large block freed (up to 32 MiB), after
# which such blocks come from per-thread arenas and stay in the process once freed: decoded images
# (Pillow allocates them in blocks of up to 16 MiB) left each thread of a worker holding tens of MiB.
# Fixed thresholds stop that adjustment. Mmap from 16 MiB: Pillow's image blocks are mapped and go
# back to the system when freed. Trim above 32 MiB: the smaller numpy temporaries of a large JSON
# request (a few MiB each) are reused from the heap instead of being handed back and page-faulted
# in again on every request; fixing only the mmap threshold, at 128 KiB, had made a 1,000-instance
# V1 request 2.4x slower under gunicorn than in one process. See bench/README.md, "Images".
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
_MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024


def post_fork(server, worker) -> None:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return
    if not (mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) and mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)):
        server.log.warning("mallopt(M_TRIM_THRESHOLD, M_MMAP_THRESHOLD) failed; freed image memory may stay in "
                           "the worker")
