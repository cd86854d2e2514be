"""Triton's model repository extension over HTTP: the index, load and unload.

``POST /v2/repository/index`` lists every served model's versions with Triton's states (READY, or
UNAVAILABLE with the reason); ``POST /v2/repository/models/<m>/unload`` and ``.../load`` take a
model out of service and back, for the whole server: the decision is a file in the registry
(``core.unloading``) that every gunicorn worker and RQ worker notices within ``RELOAD_INTERVAL``,
as they notice a new alias. Both need the API key (they change what is served) and are idempotent.
An unloaded model answers inference and readiness with a 404 naming the way back, as TF Serving
and Triton answer for a model they do not hold; its metadata, configuration and statistics stay
readable (they come from the registry and the metrics, not from the weights).
"""

from __future__ import annotations

import contextlib
from typing import Any

from flask import Blueprint, Response
from pydantic import BaseModel

from core.registry import RegistryError
from core.serving import Predictor
from core.unloading import set_unloaded
from service.auth import guard_blueprint, require_api_key
from service.codecs.jsonio import json_response, parse_json, read_body, require_json_content_type, validate
from service.codecs.triton_schemas import IndexRequest, ModelActionRequest
from service.service_error import ServiceError
from service.state import get_state
from service.targets import predictor_of

blueprint = Blueprint("repository", __name__)
guard_blueprint(blueprint)


def _body(model: type[BaseModel]) -> Any:
    """The optional JSON body: tritonclient sends an empty one (the index) or ``{}`` without a Content-Type."""
    require_json_content_type(allow_missing=True)
    raw = read_body()
    return validate(model, parse_json(raw) if raw else {})


def version_states(predictor: Predictor) -> list[dict[str, str]]:
    """Triton's index entries of one model: READY for each version the server answers for (versions
    load on first request; the production version is loaded here), UNAVAILABLE with the reason when
    the model is unloaded or this process could not load the version."""
    unloaded = predictor.unloaded_reason()
    if unloaded is None:
        with contextlib.suppress(RegistryError):  # a refused production is in load_errors
            predictor.get()
    entries = []
    for version in get_state().registry.versions(predictor.name):
        reason = "unloaded" if unloaded is not None else predictor.load_errors.get(version, "")
        entries.append({"name": predictor.name, "version": str(version),
                        "state": "UNAVAILABLE" if reason else "READY", "reason": reason})
    return entries


@blueprint.post("/v2/repository/index")
def repository_index() -> Response:
    body = _body(IndexRequest)
    state = get_state()
    entries = [entry for name in state.models.names(refresh=True)
               for entry in version_states(state.models.predictor(name))]
    return json_response([e for e in entries if e["state"] == "READY"] if body.ready else entries)


def _refuse_overrides(body: ModelActionRequest, allowed: frozenset[str]) -> None:
    extra = sorted(set(body.parameters) - allowed)
    if extra:
        raise ServiceError(422, f"parameters: {', '.join(map(repr, extra))} not supported: models come from the "
                                "registry as published (no configuration or file overrides)")


@blueprint.post("/v2/repository/models/<model:name>/load")
@require_api_key(always=True)
def load(name: str) -> Response:
    """Serve the model again everywhere; the production version is loaded here to say whether it can be."""
    predictor = predictor_of(name)
    _refuse_overrides(_body(ModelActionRequest), frozenset())
    changed = set_unloaded(get_state().registry, name, False)
    predictor.notice_changes()
    try:
        predictor.get()
    except RegistryError as exc:
        raise ServiceError(409, f"model {name!r} is loaded again but cannot serve: {exc}") from None
    return json_response({"name": name, "state": "READY", "changed": changed})


@blueprint.post("/v2/repository/models/<model:name>/unload")
@require_api_key(always=True)
def unload(name: str) -> Response:
    """Stop serving the model everywhere (within RELOAD_INTERVAL); its versions stay on disk."""
    predictor = predictor_of(name)
    body = _body(ModelActionRequest)
    _refuse_overrides(body, frozenset({"unload_dependents"}))
    if not isinstance(body.parameters.get("unload_dependents", False), bool):
        raise ServiceError(422, "parameters.unload_dependents: expected a boolean")
    changed = set_unloaded(get_state().registry, name, True)
    predictor.notice_changes()
    return json_response({"name": name, "state": "UNAVAILABLE", "changed": changed})
