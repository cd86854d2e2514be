"""Liveness and readiness: ``/healthz`` (process up) and ``/readyz`` (model loaded, Redis answers).

``/readyz`` names the version this process serves (``serving_version``) and, when the production
alias designates a version it could not load, the reason (``error``, status ``degraded``).
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from core.registry import RegistryError
from service.state import get_state

blueprint = Blueprint("health", __name__)


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
    except RegistryError as exc:
        body["model_error"] = str(exc)
        model_ready = False
    # A production alias pointing at a version this process refused (bad digest, vanished) while
    # the previous one keeps serving: still ready (200), but "degraded" with the reason.
    body["error"] = predictor.last_error
    try:
        body["redis"] = bool(state.redis.ping())
    except Exception as exc:  # any connection failure means "not answering"
        body["redis"] = False
        body["redis_error"] = str(exc)
    body["status"] = ("degraded" if predictor.last_error else "ready") if model_ready else "not ready"
    return jsonify(body), 200 if model_ready else 503
