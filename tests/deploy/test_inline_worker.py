"""The default gunicorn worker (service/server/inline.py) answers whole keep-alive requests on its main thread.

What that must not break, each tried on real gunicorn with one worker (so a blocked main thread
would stall every client): requests that arrive whole, back to back or pipelined, are answered in
order; a request still arriving (a slow body, a chunked body) goes to a pool thread while the main
thread keeps answering others; a client that stops reading its answers is cut off after the send
timeout instead of holding the worker.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import GunicornServer

DIGIT_ROW = [0] * 300 + [255] * 184 + [0] * 300


@pytest.fixture()
def one_worker(start_api, base_registry) -> GunicornServer:
    return start_api(base_registry, workers=1)


def _predict_request(instances: int = 1) -> bytes:
    body = json.dumps({"instances": [DIGIT_ROW] * instances}).encode()
    head = (f"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _responses(sock: socket.socket, count: int, timeout: float = 10) -> Iterator[tuple[int, bytes]]:
    """Read ``count`` HTTP/1.1 responses (status, body) with Content-Length bodies off ``sock``."""
    sock.settimeout(timeout)
    buffer = b""
    for _ in range(count):
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed with {buffer[:200]!r} unanswered"
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed in the middle of a body"
            buffer += chunk
        yield int(lines[0].split()[1]), buffer[:length]
        buffer = buffer[length:]


def _connect(server: GunicornServer, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _labels(body: bytes) -> list[int]:
    return [prediction["label"] for prediction in json.loads(body)["predictions"]]


def test_back_to_back_and_pipelined_requests_are_answered_in_order(one_worker):
    with _connect(one_worker) as sock:
        for _ in range(20):  # one at a time: each arrives whole on a kept-alive connection
            sock.sendall(_predict_request())
            ((status, body),) = _responses(sock, 1)
            assert status == 200 and len(_labels(body)) == 1
        sock.sendall(_predict_request(2) + b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n" + _predict_request(3))
        answers = list(_responses(sock, 3))
    assert [status for status, _ in answers] == [200, 200, 200]
    assert len(_labels(answers[0][1])) == 2 and json.loads(answers[1][1])["status"] == "ok"
    assert len(_labels(answers[2][1])) == 3


@pytest.mark.parametrize("arrival", ["body in pieces", "chunked"])
def test_a_request_still_arriving_does_not_hold_up_other_clients(one_worker, arrival):
    slow, other = _connect(one_worker), _connect(one_worker)
    with slow, other:
        slow.sendall(_predict_request())  # kept alive: its next request comes through the worker's poll
        list(_responses(slow, 1))
        request = _predict_request()
        if arrival == "chunked":
            head, _, body = request.partition(b"\r\n\r\n")
            head = b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"Content-Length"))
            slow.sendall(head + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}\r\n".encode() + body[:100])
            rest = body[100:] + b"\r\n0\r\n\r\n"
        else:
            slow.sendall(request[:-100])
            rest = request[-100:]
        time.sleep(0.3)  # the worker has seen the first part
        started = time.monotonic()
        for _ in range(5):  # answered meanwhile, not after the slow request
            other.sendall(_predict_request())
            ((status, _),) = _responses(other, 1, timeout=3)
            assert status == 200
        assert time.monotonic() - started < 3
        slow.sendall(rest)
        ((status, body),) = _responses(slow, 1)
        assert status == 200 and len(_labels(body)) == 1


def test_a_client_that_stops_reading_is_cut_off_and_others_are_answered(one_worker):
    """Its answers fill the socket buffers until the main thread's send blocks: the 1 s send
    timeout (twice at most: a partial send, then the rest) closes that connection, and the other
    client, asking all along, waits no longer than that."""
    request = _predict_request(20)  # answered on the main thread: a prediction, whole, under 64 KiB
    stalled, other = _connect(one_worker, receive_buffer=4096), _connect(one_worker)

    def never_read() -> None:
        for _ in range(2000):  # one at a time, each answered before the next: on the main thread
            try:
                stalled.sendall(request)
            except OSError:  # the server has cut this connection off
                return
            time.sleep(0.005)

    with stalled, other:
        stalling = threading.Thread(target=never_read)
        stalling.start()
        waits = []
        while stalling.is_alive():
            started = time.monotonic()
            other.sendall(_predict_request())
            ((status, _),) = _responses(other, 1, timeout=15)
            assert status == 200
            waits.append(time.monotonic() - started)
            time.sleep(0.1)
        stalling.join()
    log = Path(one_worker.log_path).read_text()
    assert "TimeoutError: timed out" in log, "the stalled connection was never cut off"
    assert max(waits) < 3, waits


def test_a_client_accepted_between_two_answers_is_answered_at_once(one_worker):
    """A connection accepted while the main thread answers another (its request already whole) is
    answered right after, not when the worker's next poll times out (1 s)."""
    busy = _connect(one_worker)
    with busy:
        busy.sendall(_predict_request())  # kept alive: the next one is answered on the main thread
        list(_responses(busy, 1))
        waits = []
        for _ in range(8):
            busy.sendall(_predict_request(20))  # a few ms on the main thread
            time.sleep(0.002)
            started = time.monotonic()
            with _connect(one_worker) as newcomer:
                newcomer.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
                ((status, _),) = _responses(newcomer, 1)
                waits.append(time.monotonic() - started)
            assert status == 200
            list(_responses(busy, 1))
    assert max(waits) < 0.5, waits


INLINE, BALANCED = "service.server.inline.InlineThreadWorker", "service.server.balanced.BalancedThreadWorker"


@pytest.mark.parametrize(("env", "worker"), [({}, INLINE), ({"MAX_BATCH_SIZE": "8"}, BALANCED),
                                             ({"MAX_BATCH_SIZE": "8", "WORKER_CLASS": "inline"}, INLINE)])
def test_the_default_worker_is_inline_unless_requests_are_batched(start_api, base_registry, env, worker):
    """Batching merges requests running at once in pool threads: with MAX_BATCH_SIZE > 1 the
    default is the balanced worker; WORKER_CLASS still decides when it is set."""
    server = start_api(base_registry, workers=1, **env)
    assert f"Using worker: {worker}" in Path(server.log_path).read_text()
