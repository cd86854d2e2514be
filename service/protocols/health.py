"""Liveness and readiness: ``/healthz`` (process up) and ``/readyz`` (model loaded, Redis answers).

``/readyz`` names the version this process serves (``serving_version``) and, when the production
alias designates a version it could not load, the reason (``error``, status ``degraded``).
It counts the RQ workers alive (``workers``: in all and per queue) and says so when none is
(``workers_error``): predictions need no worker, so neither changes the status, but jobs wait.
Other served models are listed under ``models`` with the same two fields; their trouble makes the
status "degraded", never not ready. It is open to anyone, so a Redis failure is named by kind only
(``"redis_error": "unreachable"``); the exception, with Redis's host and port, goes to the log.
"""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from core.registry import ModelUnloaded, NoModelPublished, RegistryError
from service.jobs import queue as jobs_queue
from service.state import get_state

log = logging.getLogger(__name__)
blueprint = Blueprint("health", __name__)


def redis_failure(exc: Exception) -> str:
    """What failed, for anyone to read: a kind, never the address or the server's words."""
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return "unreachable"
    if isinstance(exc, redis.exceptions.RedisError):
        return f"refused the command ({type(exc).__name__})"
    return f"failed ({type(exc).__name__})"


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    state = get_state()
    body: dict[str, object] = {"model": state.settings.model_name}
    predictor = state.predictor
    try:
        model = predictor.get()
        body["model_version"] = body["serving_version"] = model.version
        model_ready = True
    except ModelUnloaded as exc:  # unloaded on purpose: the server still serves the other models
        body["model_error"] = str(exc)
        model_ready = True
    except RegistryError as exc:
        body["model_error"] = str(exc)
        model_ready = False
    # A production alias pointing at a version this process refused (bad digest, vanished) while
    # the previous one keeps serving: still ready (200), but "degraded" with the reason.
    body["error"] = predictor.last_error
    try:
        body["redis"] = bool(state.redis.ping())
        body["workers"] = jobs_queue.workers_alive(state.redis)
        if not body["workers"]["alive"]:
            body["workers_error"] = "no job worker is running: scoring and training jobs wait in their queues"
    except Exception as exc:  # any connection failure means "not answering"
        body["redis"] = False
        body["redis_error"] = redis_failure(exc)
        log.warning("readiness: Redis %s: %s", body["redis_error"], exc)
    # Every other served model, each on its own: one model's trouble never makes the server unready
    # (its requests fail on their own), but it makes the status "degraded" and is named here.
    # A model directory without a version yet (a first training run) is not trouble.
    others: dict[str, dict[str, object]] = {}
    troubled = bool(predictor.last_error)
    for name in state.models.names():
        if name == state.models.default:
            continue
        other = state.models.predictor(name)
        try:
            others[name] = {"serving_version": other.get().version, "error": other.last_error}
            troubled = troubled or bool(other.last_error)
        except RegistryError as exc:
            others[name] = {"serving_version": None, "error": str(exc)}
            troubled = troubled or not isinstance(exc, NoModelPublished | ModelUnloaded)
    if others:
        body["models"] = others
    body["status"] = ("degraded" if troubled else "ready") if model_ready else "not ready"
    return jsonify(body), 200 if model_ready else 503
