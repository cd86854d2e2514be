"""gunicorn: what service/server/'s workers and hooks take from gthread, and the settings of the config.

``BalancedThreadWorker`` turns gthread's ``nr_conns`` into a property over ``_nr_conns`` and wraps
``accept``; ``InlineThreadWorker`` also overrides ``init_process``, ``enqueue_req``,
``wait_for_and_dispatch_events`` and ``handle_request``, calls ``handle`` and ``finish_request``
itself, reads ``_accepting`` and ``sockets``, and reads ``TConn.is_http2``, ``parser`` (down to its
unreader's buffer), ``sock`` and ``data_ready`` and ``cfg.is_ssl``. The hooks read the arbiter's
``WORKERS``, a worker's ``wsgi``, ``cfg`` and ``pid``. Beyond the signatures, one test runs the
inline worker's loop in this process, as gunicorn's ``run()`` does, against real sockets.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from types import ModuleType
from typing import Any

import pytest
from gunicorn import glogging
from gunicorn.arbiter import Arbiter
from gunicorn.config import Config
from gunicorn.workers import base
from gunicorn.workers.gthread import TConn, ThreadWorker

from service.server import balanced
from service.server.balanced import BalancedThreadWorker
from service.server.inline import InlineThreadWorker
from tests.contracts.contract import Contract
from tests.support import REPO_ROOT, wait_until

GUNICORN = Contract("gunicorn")
CONF = REPO_ROOT / "deploy" / "gunicorn.conf.py"


@pytest.fixture(scope="module")
def conf() -> Iterator[ModuleType]:
    """deploy/gunicorn.conf.py as a module, loaded as gunicorn loads it, without keeping what it sets
    in this process's environment (PROMETHEUS_MULTIPROC_DIR would put the other tests' metrics into
    multiprocess mode)."""
    saved = dict(os.environ)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        spec = importlib.util.spec_from_file_location("contract_gunicorn_conf", CONF)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        made = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield module
    shutil.rmtree(made, ignore_errors=True)


def test_the_names_the_project_uses_from_gunicorn() -> None:
    GUNICORN.names_used("gunicorn")


def test_thread_worker_methods_the_workers_override_or_call() -> None:
    for name, expected in [("accept", "(self, listener)"), ("enqueue_req", "(self, conn)"),
                           ("wait_for_and_dispatch_events", "(self, timeout)"), ("handle", "(self, conn)"),
                           ("finish_request", "(self, conn, fs)"), ("handle_request", "(self, req, conn)"),
                           ("init_process", "(self)"), ("run", "(self)")]:
        GUNICORN.signature(ThreadWorker, name, expected)
    # The property only works while gthread keeps its count in a plain instance attribute.
    GUNICORN.check(not isinstance(vars(ThreadWorker).get("nr_conns"), property),
                   "ThreadWorker.nr_conns became a property: BalancedThreadWorker's nr_conns property hides it")


def _worker(conf: ModuleType, cls_name: str, sockets: list[socket.socket], cfg: Config | None = None) -> Any:
    """A worker of the class the config names by dotted path (``conf`` loaded: the shared counts exist)."""
    cfg = cfg or Config()
    cls = {"InlineThreadWorker": InlineThreadWorker, "BalancedThreadWorker": BalancedThreadWorker}[cls_name]
    with GUNICORN.behaviour(f"building a {cls_name} as the arbiter does, Worker(age, ppid, sockets, app, timeout, "
                            "cfg, log)"):
        return cls(1, os.getppid(), sockets, None, 30, cfg, glogging.Logger(cfg))


def test_a_worker_has_the_attributes_the_workers_read(conf: ModuleType) -> None:
    worker = _worker(conf, "InlineThreadWorker", [])
    try:
        # gthread's __init__ sets nr_conns = 0, which the property stores as _nr_conns
        GUNICORN.check(getattr(worker, "_nr_conns", None) == 0,
                       "ThreadWorker.__init__ no longer sets nr_conns (BalancedThreadWorker's _nr_conns is unset)")
        GUNICORN.check(GUNICORN.attribute(worker, "_accepting", "ThreadWorker()._accepting") is False,
                       "ThreadWorker()._accepting is no longer False before run()")
        GUNICORN.check(GUNICORN.attribute(worker, "sockets", "Worker().sockets") == [],
                       "Worker().sockets is not the listeners it was given")
        GUNICORN.attribute(worker, "pid", "Worker().pid")  # child_exit: multiprocess.mark_process_dead(worker.pid)
        GUNICORN.attribute(worker, "cfg", "Worker().cfg")
        ssl_cfg = Config()
        GUNICORN.check(not GUNICORN.attribute(ssl_cfg, "is_ssl", "Config().is_ssl"), "Config().is_ssl is on by default")
        ssl_cfg.set("certfile", str(CONF))
        GUNICORN.check(ssl_cfg.is_ssl, "Config().is_ssl stays false with a certfile set")
        GUNICORN.check(isinstance(vars(Arbiter).get("WORKERS"), dict),
                       "Arbiter.WORKERS (pid -> worker, read by pre_fork) is no longer a class-level dict")
    finally:
        worker.tmp.close()


def test_a_connection_has_the_attributes_the_inline_worker_reads() -> None:
    GUNICORN.signature(TConn, "__init__", "(self, cfg, sock, client, server)")
    left, right = socket.socketpair()
    with left, right:
        conn = TConn(Config(), left, ("127.0.0.1", 1), ("127.0.0.1", 2))
        for name, value in [("is_http2", False), ("parser", None), ("data_ready", False)]:
            GUNICORN.check(getattr(conn, name, "missing") == value,
                           f"a new TConn's {name} is {getattr(conn, name, 'missing')!r}, not {value!r}")
        GUNICORN.check(conn.sock is left, "TConn.sock is not the accepted socket")
        with GUNICORN.behaviour("TConn.init() then conn.parser.unreader.buf.tell() (the bytes read ahead)"):
            conn.init()
            GUNICORN.check(conn.parser.unreader.buf.tell() == 0, "a new parser's unreader buffer is not empty")


def test_every_setting_of_the_config_file_is_a_gunicorn_setting(conf: ModuleType) -> None:
    # gunicorn ignores a name of the config file it does not know: a renamed setting would be dropped
    # without a word. Every public name there is a setting, or a module or class it imports or defines.
    cfg = Config()
    for name, value in vars(conf).items():
        if name.startswith("_") or isinstance(value, (ModuleType, type)):
            continue
        GUNICORN.check(name in cfg.settings, f"deploy/gunicorn.conf.py sets {name!r}, which is not a setting")
        with GUNICORN.behaviour(f"setting {name} = {value!r} as deploy/gunicorn.conf.py does"):
            cfg.set(name, value)


class _Client:
    """One HTTP/1.1 client connection that reads Content-Length framed answers, pipelined ones too."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def send(self, request: bytes) -> None:
        self.sock.sendall(request)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {self.buffer!r}")
        self.buffer += chunk

    def answer(self) -> int:
        """The next answer's status (its body is read and dropped)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                       if line.lower().startswith("content-length:")), 0)
        while len(self.buffer) < length:
            self._fill()
        self.buffer = self.buffer[length:]
        return int(lines[0].split()[1])

    def close(self) -> None:
        self.sock.close()


def _predict(path: str = "/v1/models/digits:predict") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 203.0.113.9\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").encode()


def test_the_inline_worker_answers_whole_requests_on_its_main_thread(conf: ModuleType,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The inline worker's loop as gunicorn runs it (init_process, post_worker_init, run), in a thread
    of this process: a predict that has arrived whole is answered on the loop's own thread, at accept
    and again on the kept-alive connection; other requests go to the pool; the balanced count of held
    connections follows gthread's; the worker stops with no connection left.

    Pipelined requests: the parser reads the second with the first, so no poll event is left for it.
    gthread's finish_request hands such a connection (bytes in ``parser.unreader.buf``) back to
    ``enqueue_req``, where the inline worker sends it to the pool; gthread before 27 put it back in the
    poller, and the second request waited out the keep-alive timeout unanswered."""
    seen: list[tuple[str, int, str]] = []

    def app(environ: dict, start_response: Any) -> list[bytes]:
        seen.append((environ["PATH_INFO"], threading.get_ident(), environ["REMOTE_ADDR"]))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    cfg = Config()
    for name, value in [("threads", 2), ("keepalive", 5), ("graceful_timeout", 2)]:
        cfg.set(name, value)
    listener = socket.create_server(("127.0.0.1", 0))
    worker = _worker(conf, "InlineThreadWorker", [listener], cfg)
    worker.slot = 0
    # base.Worker.init_process loads the app, installs signal handlers and calls run(): the test does
    # those parts itself, so that run() goes on in a thread it can stop.
    monkeypatch.setattr(base.Worker, "init_process", lambda self: None)
    with GUNICORN.behaviour("InlineThreadWorker.init_process() over gthread's (thread pool, poller)"):
        worker.init_process()
    worker.wsgi = app
    conf.post_worker_init(worker)  # wraps worker.wsgi with the X-Forwarded-For rewrite

    port = listener.getsockname()[1]
    inline, pooled = _Client(port), _Client(port)
    loop = threading.Thread(target=worker.run, name="gthread-main", daemon=True)
    predict = "/v1/models/digits:predict"
    try:
        # Sent before the loop accepts: the request has arrived whole when it is accepted.
        inline.send(_predict())
        loop.start()
        with GUNICORN.behaviour("the inline worker answering a predict that arrived whole"):
            GUNICORN.check(inline.answer() == 200, "the first predict was not answered 200")
        with GUNICORN.behaviour("a second predict on the kept-alive connection"):
            inline.send(_predict())
            GUNICORN.check(inline.answer() == 200, "the kept-alive predict was not answered 200")
        with GUNICORN.behaviour("two predicts pipelined in one write, answered in order"):
            inline.send(_predict() + _predict())
            GUNICORN.check([inline.answer(), inline.answer()] == [200, 200], "pipelined predicts not answered 200")
        with GUNICORN.behaviour("a GET answered by the thread pool"):
            pooled.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            GUNICORN.check(pooled.answer() == 200, "the GET was not answered 200")

        GUNICORN.check([path for path, _, _ in seen] == [predict] * 4 + ["/healthz"], f"the app saw {seen}")
        GUNICORN.check(seen[0][1] == loop.ident and seen[1][1] == loop.ident,
                       "a predict that arrived whole was not answered on the worker's main thread (run()'s)")
        GUNICORN.check(seen[-1][1] != loop.ident, "the GET was answered on the main thread, not by the pool")
        GUNICORN.check(seen[0][2] == "203.0.113.9", f"REMOTE_ADDR {seen[0][2]!r}: post_worker_init's wrapper "
                       "of worker.wsgi did not apply (cfg.forwarded_allow_ips, environ REMOTE_ADDR)")
        wait_until(lambda: worker._nr_conns == 2 and balanced.held[0] == 2, 5, "two connections counted")
    except TimeoutError:
        GUNICORN.fail(f"gthread's nr_conns: {worker._nr_conns} held, published {balanced.held[0]}, expected 2")
    finally:
        inline.close()
        pooled.close()
    try:
        wait_until(lambda: worker._nr_conns == 0, 10, "the connections' close")
    except TimeoutError:
        GUNICORN.fail(f"closed connections are still counted by nr_conns ({worker._nr_conns})")
    GUNICORN.check(balanced.held[0] == 0, f"the count published for the balance is {balanced.held[0]}, not 0")
    worker.handle_exit(signal.SIGTERM, None)
    loop.join(10)
    GUNICORN.check(not loop.is_alive(), "the worker's run() did not return after handle_exit")
    listener.close()
    worker.tmp.close()


def test_handle_and_finish_request_as_the_inline_worker_calls_them(conf: ModuleType) -> None:
    # wait_for_and_dispatch_events hands finish_request a done Future of handle()'s result, as gthread's
    # pool would: a result of False (nothing to keep alive) closes the connection and uncounts it.
    worker = _worker(conf, "InlineThreadWorker", [])
    left, right = socket.socketpair()
    right.close()  # the client went away: handle() finds no request
    conn = TConn(worker.cfg, left, ("127.0.0.1", 1), ("127.0.0.1", 2))
    worker.nr_conns = 1
    with GUNICORN.behaviour("handle(conn) then finish_request(conn, done future) for a closed client"):
        conn.data_ready = True
        answered: futures.Future = futures.Future()
        answered.set_result(worker.handle(conn))
        worker.finish_request(conn, answered)
    GUNICORN.check(worker._nr_conns == 0, f"finish_request left nr_conns at {worker._nr_conns}")
    worker.tmp.close()

