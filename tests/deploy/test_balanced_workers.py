"""The balanced gthread worker (service/server/balanced.py): a few keep-alive clients reach every worker.

With gunicorn's plain gthread workers on one socket, the worker that happens to be awake accepts,
and 4 keep-alive clients often all landed on one worker while the other core idled. Each client
here connects from its own loopback address, so the access log's ``remote`` and ``pid`` say which
worker holds which connection.
"""

from __future__ import annotations

import http.client
import itertools
import json
import time
from collections import Counter
from pathlib import Path

CLIENTS = 4
_next_address = itertools.count()


def _addresses(n: int) -> list[str]:
    """Loopback addresses never used before in this session: one per connection."""
    return [f"127.0.{20 + i // 250}.{1 + i % 250}" for i in itertools.islice(_next_address, n)]


def _worker_of_each(server, addresses: list[str]) -> dict[str, int]:
    """Open one keep-alive connection per address (one after another, each answered before the
    next opens), then say which worker pid answered each."""
    connections = []
    try:
        for address in addresses:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10,
                                                    source_address=(address, 0))
            for _ in range(3):  # the same connection, kept alive
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                assert response.status == 200 and response.getheader("Connection") != "close"
                response.read()
            connections.append(connection)
        time.sleep(0.3)  # the access line is written after the response
        lines = [json.loads(line) for line in Path(server.log_path).read_text().splitlines()
                 if line.startswith("{") and '"event":"access"' in line]
        found = {line["remote"]: line["pid"] for line in lines if line["remote"] in addresses}
        assert set(found) == set(addresses), found
        # one connection is one worker: every request on it came from the same pid
        assert all(len({line["pid"] for line in lines if line["remote"] == address}) == 1 for address in addresses)
        return found
    finally:
        for connection in connections:
            connection.close()


def _wait_for_both_workers(server) -> None:
    """gunicorn answers once one worker is up; the other may still be loading the app."""
    deadline = time.monotonic() + 30
    while len(set(_worker_of_each(server, _addresses(2)).values())) < 2:
        assert time.monotonic() < deadline, "the second worker never took a connection"
        time.sleep(0.5)


def test_keep_alive_clients_reach_both_workers(start_api, base_registry):
    server = start_api(base_registry, workers=2)
    _wait_for_both_workers(server)
    for round_ in range(3):
        addresses = _addresses(CLIENTS)
        per_worker = Counter(_worker_of_each(server, addresses).values())
        assert len(per_worker) == 2, f"round {round_}: all {CLIENTS} keep-alive clients on one worker: {per_worker}"
        time.sleep(0.5)  # the workers notice the closed connections before the next round
