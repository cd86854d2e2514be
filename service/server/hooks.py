"""gunicorn's server hooks for the API: ``deploy/gunicorn.conf.py`` names each one.

- ``on_starting``: samples of a previous run are removed from the Prometheus multiprocess
  directory, or they would be summed into this run's counters;
- ``post_worker_init``: the client's address from the proxy's X-Forwarded-For (trusted peers only),
  and the worker's gRPC server (``grpc_server``) when ``GRPC_PORT`` is set; ``worker_exit`` drains it;
- ``pre_fork``/``child_exit``: a balanced worker's slot in the shared connection counts; a dead
  worker's metrics files are marked dead;
- ``post_fork``: fixed malloc thresholds, so that freed image memory goes back to the system.
"""

from __future__ import annotations

import ctypes
import glob
import ipaddress
import os
from collections.abc import Callable, Iterable
from typing import Any

from service.server.balanced import assign_slot, free_slot

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def on_starting(server: Any) -> None:
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.unlink(path)


def trusted_proxy(address: str, allowed: list[str]) -> bool:
    """Whether ``address`` is one of ``allowed`` (addresses or networks; "*": any)."""
    if "*" in allowed:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a unix socket peer: gunicorn trusts it as well
        return True
    return any(ip in ipaddress.ip_network(net, strict=False) for net in allowed)


def real_client_address(app: WSGIApp, allowed: list[str]) -> WSGIApp:
    """``app`` with REMOTE_ADDR set from X-Forwarded-For when the peer is a trusted proxy.

    gunicorn never rewrites REMOTE_ADDR, so the app's access log would show nginx's address.
    nginx sets X-Forwarded-For to the one client address it saw (it does not append), so from a
    trusted proxy that header is the real client; from anyone else it is ignored (forgeable).
    """

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded and trusted_proxy(environ.get("REMOTE_ADDR", ""), allowed):
            environ["REMOTE_ADDR"] = forwarded.rsplit(",", 1)[-1].strip()
        return app(environ, start_response)

    return wrapped


def post_worker_init(worker: Any) -> None:
    app = worker.wsgi
    worker.wsgi = real_client_address(app, list(worker.cfg.forwarded_allow_ips))
    state = getattr(app, "extensions", {}).get("mnist_serve")  # service.state.STATE_KEY: our app's state
    if state is not None and state.settings.grpc_port:
        from service.server import grpc_server  # here, after the fork: grpc starts threads

        try:
            worker.grpc_server = grpc_server.start(state)
        except RuntimeError as exc:  # not booted yet: gunicorn stops (worker boot error), nothing half-served
            worker.log.error("gRPC cannot listen on %s:%s (%s); is GRPC_PORT in use?", state.settings.grpc_host,
                             state.settings.grpc_port, exc)
            raise


def worker_exit(server: Any, worker: Any) -> None:
    """The worker's HTTP loop has ended: its gRPC calls in flight finish (GRPC_GRACE_SECONDS), then it exits."""
    running = getattr(worker, "grpc_server", None)
    if running is not None:
        running.stop()


def pre_fork(server: Any, worker: Any) -> None:
    assign_slot(server.WORKERS, worker)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess  # here: the master imports it only once a worker dies

    multiprocess.mark_process_dead(worker.pid)
    free_slot(worker)


# glibc's malloc raises its mmap threshold to the size of any large block freed (up to 32 MiB), after
# which such blocks come from per-thread arenas and stay in the process once freed: decoded images
# (Pillow allocates them in blocks of up to 16 MiB) left each thread of a worker holding tens of MiB.
# Fixed thresholds stop that adjustment. Mmap from 16 MiB: Pillow's image blocks are mapped and go
# back to the system when freed. Trim above 32 MiB: the smaller numpy temporaries of a large JSON
# request (a few MiB each) are reused from the heap instead of being handed back and page-faulted
# in again on every request; fixing only the mmap threshold, at 128 KiB, had made a 1,000-instance
# V1 request 2.4x slower under gunicorn than in one process. See docs/decisions/.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024


def post_fork(server: Any, worker: Any) -> None:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return
    if not (mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)):
        server.log.warning("mallopt(M_TRIM_THRESHOLD, M_MMAP_THRESHOLD) failed; freed image memory may stay in "
                           "the worker")
