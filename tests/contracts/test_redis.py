"""redis-py: the command listener thread worker/rq_worker.py starts, and what RQ does with it.

``JobWorker.subscribe`` calls ``PubSub.run_in_thread(sleep_time=COMMAND_POLL_SECONDS, daemon=True,
exception_handler=...)``; RQ's ``Worker.unsubscribe`` then calls the thread's ``stop()`` (which in
redis-py 8 joins the thread without a timeout): a stopping worker waits at most about one poll.
The handler gets ``(exception, pubsub, thread)``, the signature of RQ's ``_pubsub_exception_handler``.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis
from redis.client import PubSub

from tests.contracts.contract import Contract
from tests.support import RedisServer, wait_until
from worker.rq_worker import COMMAND_POLL_SECONDS

REDIS = Contract("redis")


@pytest.fixture()
def pubsub(redis_server: RedisServer) -> PubSub:
    heard: list[Any] = []
    pubsub = redis.Redis.from_url(redis_server.url).pubsub()
    pubsub.subscribe(**{f"contract-{uuid.uuid4().hex[:8]}": heard.append})
    return pubsub


def test_the_names_the_project_uses_from_redis() -> None:
    REDIS.names_used("redis")


def test_run_in_thread_takes_the_keywords_the_worker_passes() -> None:
    REDIS.accepts(PubSub, "run_in_thread", ["sleep_time", "daemon", "exception_handler"])


def test_stop_returns_within_about_one_poll(pubsub: PubSub) -> None:
    with REDIS.behaviour("PubSub.run_in_thread(sleep_time=, daemon=, exception_handler=)"):
        thread = pubsub.run_in_thread(sleep_time=COMMAND_POLL_SECONDS, daemon=True,
                                      exception_handler=lambda exc, pubsub, thread: None)
    REDIS.check(thread.daemon, "run_in_thread(daemon=True) started a thread that is not a daemon")
    time.sleep(0.1)  # the thread is inside get_message, waiting for its poll
    started = time.monotonic()
    with REDIS.behaviour("the listener thread's stop()"):
        thread.stop()
    thread.join(COMMAND_POLL_SECONDS + 2)
    took = time.monotonic() - started
    REDIS.check(not thread.is_alive(), f"the listener thread still runs {took:.1f} s after stop()")
    REDIS.check(took < COMMAND_POLL_SECONDS + 1.5,
                f"stop() and the thread's end took {took:.1f} s with sleep_time={COMMAND_POLL_SECONDS}")


def test_the_exception_handler_gets_the_exception_the_pubsub_and_the_thread(pubsub: PubSub) -> None:
    calls: list[tuple[Any, ...]] = []
    failure = redis.exceptions.ConnectionError("contract test")
    read = pubsub.get_message

    def get_message(*args: Any, **kwargs: Any) -> Any:
        if not calls:
            raise failure
        return read(*args, **kwargs)

    pubsub.get_message = get_message  # type: ignore[method-assign]

    def handler(exc: BaseException, source: PubSub, thread: threading.Thread) -> None:
        calls.append((exc, source, thread))

    with REDIS.behaviour("run_in_thread with an exception_handler, get_message raising"):
        thread = pubsub.run_in_thread(sleep_time=0.1, daemon=True, exception_handler=handler)
        try:
            wait_until(lambda: bool(calls), 5, "the exception handler")
        finally:
            thread.stop()
            thread.join(3)
    exc, source, called_with = calls[0]
    REDIS.check(exc is failure and source is pubsub and called_with is thread,
                f"the exception handler was called with {calls[0]}, not (exception, pubsub, thread)")
