"""``python -m worker [--queues scoring training]``: run one RQ worker for the job queues.

Queues are listened to in the order given; the default puts ``scoring`` before ``training``
so a worker on both takes short scoring jobs first. Run at least one worker with
``--queues scoring`` beside the others so a long retrain can never hold scoring up.
SIGTERM is RQ's warm shutdown: the job in hand finishes, then the worker exits.
"""

from __future__ import annotations

import argparse
import logging

from core.jobs import QUEUES
from core.settings import Settings
from worker.context import WorkerContext, set_context
from worker.runner import JobWorker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--queues", nargs="+", choices=QUEUES, default=list(QUEUES),
                        help="queues to listen to, in priority order (default: scoring training)")
    parser.add_argument("--name", help="worker name (default: RQ's random one)")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args(argv)

    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = WorkerContext.from_settings(settings)
    set_context(context)
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    worker = JobWorker(args.queues, connection=context.redis, name=args.name, context=context)
    worker.work(burst=args.burst, logging_level=settings.log_level.upper())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
