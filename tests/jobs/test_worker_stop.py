"""A stopped worker stops: SIGTERM starts the warm shutdown at once, idle or busy.

RQ's command listener polled Redis every 60 s, and redis-py 8 joins that thread without a
timeout when the worker unsubscribes on its way out: when the listener had just read the
unsubscribe reply, an idle worker sat in that join for up to a minute. The bound asserted
here (a few seconds) is not a timing of the code; it separates "exits" from "hangs".
"""

from __future__ import annotations

import signal
import threading
import time

import redis
import requests

from core.settings import Settings
from tests.jobs.conftest import Stack, save_npz
from tests.support import RedisServer, wait_until
from worker.context import WorkerContext
from worker.rq_worker import JobWorker

EXIT_BOUND_SECONDS = 5  # the hang was 60 s; a healthy exit takes well under one


def test_unsubscribing_never_waits_for_the_command_listeners_poll(redis_server: RedisServer):
    connection = redis.Redis.from_url(redis_server.url)
    worker = JobWorker(["scoring"], connection=connection, context=WorkerContext(Settings(), None, connection))
    worker.subscribe()
    unsubscribe = worker.pubsub.unsubscribe

    def unsubscribe_then_let_the_listener_run() -> None:
        # The unlucky order, every time: the listener reads the reply and waits again before the
        # worker asks it to stop.
        unsubscribe()
        time.sleep(0.3)

    worker.pubsub.unsubscribe = unsubscribe_then_let_the_listener_run
    stopper = threading.Thread(target=worker.unsubscribe, daemon=True)
    started = time.monotonic()
    stopper.start()
    stopper.join(EXIT_BOUND_SECONDS)
    assert not stopper.is_alive(), (f"unsubscribe still waiting for the command listener after {EXIT_BOUND_SECONDS} s "
                                    f"(its poll: {worker.pubsub_thread.sleep_time} s)")
    assert time.monotonic() - started < EXIT_BOUND_SECONDS


def test_idle_workers_exit_promptly_on_sigterm(make_stack):
    stack: Stack = make_stack(workers=3)
    for name, proc in stack.workers.items():
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.wait(EXIT_BOUND_SECONDS)
        print(f"{name}: exited {time.monotonic() - started:.2f} s after SIGTERM")
        assert proc.returncode == 0, stack.worker_log(name)
        assert "warm shut down requested" in stack.worker_log(name)
    assert not stack.redis().smembers("rq:workers"), "a stopped worker left its registration behind"


def test_a_busy_worker_finishes_its_job_then_exits(make_stack, mnist):
    stack: Stack = make_stack(workers=1)
    name, proc = next(iter(stack.workers.items()))
    save_npz(stack.data_dir / "digits.npz", mnist, 4000)
    config = {"hidden": [256], "epochs": 12, "dropout": 0.0, "augment_shift": 0, "early_stopping": 0}
    job_id = stack.submit_train({"dataset": "digits.npz", "config": config, "promote": "never"}).json()["job_id"]
    stack.wait(job_id, ("started",), until=lambda status: status.get("epoch", 0) >= 1)
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "warm shut down requested" in stack.worker_log(name), EXIT_BOUND_SECONDS,
               "the warm shutdown to begin")
    assert stack.status(job_id)["status"] == "started", "the job in hand goes on during the warm shutdown"
    proc.wait(120)
    assert proc.returncode == 0
    status = stack.status(job_id)
    assert status["status"] == "finished" and status["epoch"] == config["epochs"], status


def test_readyz_counts_the_workers_alive_and_says_when_none_is(make_stack):
    stack: Stack = make_stack(workers=0)

    def workers() -> dict:
        body = requests.get(stack.url + "/readyz", timeout=10).json()
        return {"count": body["workers"], "error": body.get("workers_error"), "status": body["status"]}

    none = workers()
    assert none["count"] == {"alive": 0, "queues": {"scoring": 0, "training": 0}}
    assert "no job worker is running" in none["error"] and none["status"] == "ready"  # predictions need none
    general = stack.start_worker()
    stack.start_worker("scoring")
    assert workers() == {"count": {"alive": 2, "queues": {"scoring": 2, "training": 1}}, "error": None,
                         "status": "ready"}
    stack.workers[general].send_signal(signal.SIGTERM)  # a stopped worker leaves the registry as it goes
    stack.workers[general].wait(EXIT_BOUND_SECONDS)
    assert workers()["count"] == {"alive": 1, "queues": {"scoring": 1, "training": 0}}
