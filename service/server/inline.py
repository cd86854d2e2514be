"""The default worker: predictions that have arrived whole are answered on the worker's main thread.

A keep-alive request that has arrived whole is answered by the worker's main thread, where its
connection's poll event lands, instead of being handed to a pool thread and the connection back
to the main thread (a queue, a pipe write and two thread switches fought over one GIL per request:
about half of a one-digit predict's time in a worker). Partial and large requests still go to
the pool, so a slow client holds a pool thread, never the main thread. A new connection whose
first request is already there when it is accepted (nginx sends it at once) is answered so too.
See docs/decisions/ for the measurements.
"""

from __future__ import annotations

import re
import socket
from concurrent import futures
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from service.server.balanced import BalancedThreadWorker

INLINE_MAX_BYTES = 64 * 1024  # head and body; larger requests (batches, uploads) go to the pool
# A client that stops reading its answers would block the main thread in sendall(): a sendall
# that has not finished in 1 s fails instead, the connection is closed, and the worker goes on
# (gunicorn sends the head and the body of an answer apart: 2 s at most).
INLINE_SEND_TIMEOUT_S = 1.0
# Answered by a pool thread whatever their size. Images above all: a small PNG can decode to 32 MiB,
# and decoding waits (up to seconds) for the bytes the process may hold decoded at once.
_POOL_FIELDS = (b"\r\ntransfer-encoding:", b"\r\nexpect:", b"\r\nupgrade:", b"\r\ncontent-type: multipart/")
# Only predictions are answered there: every other request may wait (a job's ?wait=, Redis while it
# is down, a dataset upload), and a wait on the main thread stalls every client of the worker.
_INLINE_TARGETS = re.compile(rb"POST /[^ ?]*(?::predict|/infer)(?:\?[^ ]*)? HTTP/1\.[01]\r\n")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)\r\n")


def whole_prediction(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a connection's unread input) is a whole HTTP/1 prediction
    request, head and Content-Length body, that the main thread may answer."""
    if not _INLINE_TARGETS.match(head):
        return False
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return False
    fields = head[:end + 2].lower()
    if any(name in fields for name in _POOL_FIELDS):
        return False  # a chunked body, a 100-continue exchange, an upgrade, image uploads
    if b'"b64"' in head[end:]:  # images in JSON: decoding may wait for the process's decode budget
        return False
    match = _CONTENT_LENGTH.search(fields)
    return end + 4 + (int(match.group(1)) if match else 0) <= len(head)


def arrived_whole(sock: socket.socket) -> bool:
    """Whether the socket holds a whole prediction request (``whole_prediction``), unread."""
    try:
        head = sock.recv(INLINE_MAX_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return False
    return whole_prediction(head)


class InlineThreadWorker(BalancedThreadWorker):
    """The balanced worker, answering requests that have arrived whole on its main thread.

    Requests still arriving go to the thread pool as in gthread. Requests found ready in one poll
    are answered after that poll's accepts; a poll, and each answer, accepts every connection
    waiting that the balance allows, so a worker busy answering still takes its share of new clients.
    """

    def init_process(self) -> None:
        self._ready: list[Any] = []
        self._answering: Any = None  # the connection the main thread is answering
        super().init_process()

    def accept(self, listener: Any) -> None:
        while True:  # one connection per poll would make a ramp of 64 clients wait 32 polls
            count = self._nr_conns
            super().accept(listener)
            if self._nr_conns == count:  # nothing waiting, or the balance left it to the other
                return

    def enqueue_req(self, conn: Any) -> None:
        if (not self.cfg.is_ssl and not conn.is_http2 and not (conn.parser and conn.parser.unreader.buf.tell())
                and arrived_whole(conn.sock)):
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
            answered: futures.Future = futures.Future()
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
                count = self._nr_conns
                ThreadWorker.accept(self, listener)  # EAGAIN when nobody is waiting: nothing happens
                if self._nr_conns == count:
                    break

    def handle_request(self, req: Any, conn: Any) -> Any:
        if conn is self._answering:  # after handle()'s setblocking(True), which clears any timeout
            conn.sock.settimeout(INLINE_SEND_TIMEOUT_S)
        return super().handle_request(req, conn)
