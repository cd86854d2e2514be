"""``python -m worker [--queues scoring training]``: run one RQ worker for the job queues.

Queues are listened to in the order given; the default puts ``scoring`` before ``training``
so a worker on both takes short scoring jobs first. Run at least one worker with
``--queues scoring`` beside the others so a long retrain can never hold scoring up.
SIGTERM is RQ's warm shutdown: the job in hand finishes, then the worker exits.
"""

from __future__ import annotations

import os

# One BLAS thread per worker process, set before numpy loads OpenBLAS (as deploy/gunicorn.conf.py
# does for the API). A second BLAS thread made a scoring job keep 1.8 cores busy for no speed at all,
# so a second worker had no core left; with one, 2 workers score about 1.8x the rows/s of 1
# (docs/decisions/0005-one-blas-thread-per-process.md). An operator who runs one worker per host for
# long retrains may set OPENBLAS_NUM_THREADS higher: it is only a default.
for _blas in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import redis  # noqa: E402

from core.jobs import QUEUES  # noqa: E402
from core.settings import Settings, SettingsError  # noqa: E402
from worker.context import WorkerContext, set_context  # noqa: E402
from worker.rq_worker import JobWorker  # noqa: E402

log = logging.getLogger("worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--queues", nargs="+", choices=QUEUES, default=list(QUEUES),
                        help="queues to listen to, in priority order (default: scoring training)")
    parser.add_argument("--name", help="worker name (default: RQ's random one)")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args(argv)

    try:
        settings = Settings()
    except SettingsError as exc:  # one short line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = WorkerContext.from_settings(settings)
    set_context(context)
    _import_job_modules()
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    _run_until_stopped(args.queues, args.name, args.burst, context)
    return 0


def _import_job_modules() -> None:
    """Import the job functions' modules (pandas's CSV reader among them) once, here: every job runs
    in a freshly forked work horse, which would otherwise import them again for each job (about
    half a second each, a cost that counts for the many short jobs of a sharded scoring job)."""
    import worker.retraining
    import worker.scoring
    import worker.shards  # noqa: F401


def _run_until_stopped(queues: list[str], name: str | None, burst: bool, context: WorkerContext) -> None:
    """Run RQ workers until a shutdown is requested.

    RQ's ``work()`` gives up when Redis drops while a job is being monitored; rather than
    leaving that to a container restart policy, wait for Redis to answer and start a fresh
    worker (same name), so a Redis restart never needs an operator.
    """
    level = context.settings.log_level.upper()
    terminated: list[int] = []
    for restart in itertools.count():
        # A restarted worker takes a fresh name: the old one's key may outlive the outage.
        worker_name = f"{name}-r{restart}" if name and restart else name
        worker = JobWorker(queues, connection=context.redis, name=worker_name, context=context)
        try:
            worker.work(burst=burst, logging_level=level)
        except redis.exceptions.ConnectionError as exc:
            log.error("Redis is unreachable (%s)", exc)
        # RQ records every SIGTERM/SIGINT (idle or busy) in _shutdown_requested_date; a work()
        # that returned without one gave up on Redis.
        if burst or getattr(worker, "_shutdown_requested_date", None) is not None:
            return
        signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
        delay = 0.5
        while not terminated:
            try:
                context.redis.ping()
                break
            except redis.exceptions.RedisError:
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        if terminated:
            return
        log.warning("Redis answers again; restarting the worker")


if __name__ == "__main__":
    raise SystemExit(main())
