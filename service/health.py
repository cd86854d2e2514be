"""Liveness and readiness: ``/healthz`` (process up) and ``/readyz`` (model loaded, Redis answers)."""

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
    try:
        model = state.predictor.get()
        body["model_version"] = model.version
        model_ready = True
    except RegistryError as exc:
        body["model_error"] = str(exc)
        model_ready = False
    try:
        body["redis"] = bool(state.redis.ping())
    except Exception as exc:  # any connection failure means "not answering"
        body["redis"] = False
        body["redis_error"] = str(exc)
    body["status"] = "ready" if model_ready else "not ready"
    return jsonify(body), 200 if model_ready else 503
