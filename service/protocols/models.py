"""Model management: list the served models, list versions and aliases, read a manifest, promote or
roll back an alias (each model's aliases are its own)."""

from __future__ import annotations

import contextlib

from flask import Blueprint, Response

from core.registry import ModelRegistry, NoModelPublished, RegistryError, check_alias
from service.auth import guard_blueprint, require_api_key
from service.codecs.jsonio import json_response, parse_json, read_body, require_json_content_type, validate
from service.codecs.schemas import AliasUpdate
from service.state import get_state
from service.targets import check_model_name, parse_version, predictor_of

blueprint = Blueprint("models", __name__)
guard_blueprint(blueprint)


def _version_summary(registry: ModelRegistry, name: str, version: int, aliases: dict[str, int],
                     loaded: set[int]) -> dict[str, object]:
    try:
        manifest = registry.manifest(name, version)
    except RegistryError as exc:  # an unreadable manifest is listed with its reason, not a 500
        manifest = {"error": str(exc)}
    return {"version": version, "created_at": manifest.get("created_at"), "metrics": manifest.get("metrics", {}),
            "aliases": sorted(a for a, v in aliases.items() if v == version), "loaded": version in loaded}


def _version_status(version: int, loaded: set[int], load_errors: dict[int, str],
                    unloaded: str | None) -> dict[str, object]:
    """TensorFlow Serving's model_version_status, for the answering worker process: AVAILABLE when it
    holds the version in memory; START (known, not loaded yet: versions load on first request) when
    it is on disk only; END while the model is unloaded (for every process); UNKNOWN with the reason
    when this process tried to load it and was refused."""
    if unloaded is not None:
        state, code, message = "END", "OK", unloaded
    elif version in load_errors:
        state, code, message = "UNKNOWN", "FAILED_PRECONDITION", load_errors[version]
    elif version in loaded:
        state, code, message = "AVAILABLE", "OK", ""
    else:
        state, code, message = "START", "OK", "on disk, not loaded in this worker process; loaded on first request"
    return {"version": str(version), "state": state, "status": {"error_code": code, "error_message": message}}


@blueprint.get("/v1/models")
def list_models() -> Response:
    """Every served model: its versions, aliases and the production version (from the registry, so
    listing never loads weights); ``default`` is the model requests and jobs use when they name none."""
    state = get_state()
    registry = state.registry
    models = []
    # A fresh listing, not the per-process cache: each gunicorn worker caches its own, and a client
    # that has just been answered by a model another worker discovered must find it listed here.
    for name in state.models.names(refresh=True):
        aliases = registry.aliases(name)
        try:
            production: int | None = registry.resolve(name)
        except RegistryError:  # nothing published yet, or an alias to a vanished version
            production = None
        names = None
        if production is not None:
            with contextlib.suppress(RegistryError):
                names = registry.manifest(name, production).get("class_names")
        models.append({"name": name, "production_version": production, "aliases": aliases,
                       "versions": registry.versions(name), "class_names": names})
    return json_response({"default": state.models.default, "models": models})


@blueprint.get("/v1/models/<model:name>")
def model_info(name: str) -> Response:
    predictor = predictor_of(name)
    registry = get_state().registry
    with contextlib.suppress(RegistryError):
        predictor.get()  # notice a changed production now, so serving_version and error are current
    versions = registry.versions(name)
    aliases = registry.aliases(name)
    try:
        production: int | None = registry.resolve(name)
    except NoModelPublished:
        production = None
    loaded, load_errors, unloaded = predictor.loaded_versions(), predictor.load_errors, predictor.unloaded_reason()
    return json_response({
        "name": name,
        "production_version": production,
        "serving_version": predictor.loaded_version(),  # what this process answers with; may lag or differ
        "error": predictor.last_error,
        "aliases": aliases,
        "versions": [_version_summary(registry, name, v, aliases, loaded) for v in versions],
        "model_version_status": [_version_status(v, loaded, load_errors, unloaded) for v in versions],
    })


@blueprint.get("/v1/models/<model:name>/versions/<version:version>")
def version_manifest(name: str, version: str) -> Response:
    """The version's manifest, and its TF Serving ``model_version_status`` in the answering worker."""
    predictor = predictor_of(name)
    number = parse_version(version)
    manifest = get_state().registry.manifest(name, number)
    manifest["model_version_status"] = [_version_status(number, predictor.loaded_versions(), predictor.load_errors,
                                                        predictor.unloaded_reason())]
    return json_response(manifest)


@blueprint.put("/v1/models/<model:name>/aliases/<alias:alias>")
@require_api_key(always=True)
def set_alias(name: str, alias: str) -> Response:
    """Point an alias (``production``, ``staging``, ...) at an existing version: promote or roll back."""
    check_model_name(name)
    check_alias(alias)  # 422 before the body is read
    require_json_content_type()
    body = validate(AliasUpdate, parse_json(read_body()))
    registry = get_state().registry
    previous = registry.aliases(name).get(alias)
    # 404 for an unknown version, 409 for one that fails its digest or architecture check: an
    # alias is never pointed at a version every server would refuse (and silently not serve).
    aliases = registry.promote(name, alias, body.version, expected=previous)
    return json_response({"model": name, "alias": alias, "version": body.version, "previous_version": previous,
                          "aliases": aliases})
