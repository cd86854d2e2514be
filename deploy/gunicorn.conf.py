"""gunicorn settings for the API (also what docker-compose and deploy/run-local use).

``BIND`` and ``WEB_CONCURRENCY`` (workers) come from the environment, ``THREADS`` threads per
worker (gthread: keep-alive connections, requests overlap numpy work that releases the GIL).
Prometheus multiprocess mode needs ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports
prometheus_client, so it is set here, in the master, and inherited by every worker.
"""

import glob
import os
import tempfile

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("THREADS", "4"))
worker_class = "gthread"
timeout = 60
keepalive = 5
# No gunicornc control socket: its default path is shared by every gunicorn of the user, so
# parallel servers (tests, benchmarks) would take it from each other.
control_socket_disable = True

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


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
