"""gunicorn settings for the API (also what docker-compose and deploy/run-local use): settings only.

The worker classes and server hooks it names live in ``service/server/``.

``BIND`` and ``WEB_CONCURRENCY`` (workers) come from the environment, ``THREADS`` threads per
worker (gthread: keep-alive connections, requests overlap numpy work that releases the GIL),
``WORKER_CLASS`` (default ``inline``, below) and ``REUSE_PORT`` (default off).
Prometheus multiprocess mode needs ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports
prometheus_client, so it is set here, in the master, and inherited by every worker.
"""

import os
import sys
import tempfile

# gunicorn runs this file from anywhere: the project's root on the path, for service.server.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("THREADS", "4"))
os.environ["THREADS"] = str(threads)  # the app's batcher reads it too (Settings.threads)
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

# The worker classes and hooks (service/server/), imported after the environment above is set.
from service.server.hooks import (  # noqa: E402
    child_exit,
    on_starting,
    post_fork,
    post_worker_init,
    pre_fork,
    worker_exit,
)

# Batching merges requests that run at once in one worker's threads: answered one at a time on the
# main thread they never would, so with MAX_BATCH_SIZE > 1 the default is the balanced gthread.
_worker_class = _worker_class or ("balanced" if int(os.environ.get("MAX_BATCH_SIZE", "1")) > 1 else "inline")
worker_class = {"balanced": "service.server.balanced.BalancedThreadWorker",
                "inline": "service.server.inline.InlineThreadWorker"}.get(_worker_class, _worker_class)

__all__ = ["child_exit", "on_starting", "post_fork", "post_worker_init", "pre_fork", "worker_exit"]
