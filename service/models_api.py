"""Model management: list versions and aliases, read a manifest, promote or roll back an alias."""

from __future__ import annotations

import re

from flask import Blueprint, Response, request

from core.registry import PRODUCTION, ModelRegistry
from service.auth import guard_blueprint, require_api_key
from service.errors import ApiError
from service.jsonio import json_response, parse_json, read_body, require_json_content_type, validate
from service.schemas import AliasUpdate
from service.state import get_state
from service.targets import check_model_name, parse_version

blueprint = Blueprint("models", __name__)
guard_blueprint(blueprint)
_ALIAS = re.compile(r"^(?!\d+$)[A-Za-z0-9_-]{1,64}$")


def _version_summary(registry: ModelRegistry, name: str, version: int, aliases: dict[str, int],
                     loaded: set[int]) -> dict[str, object]:
    manifest = registry.manifest(name, version)
    return {"version": version, "created_at": manifest.get("created_at"), "metrics": manifest.get("metrics", {}),
            "aliases": sorted(a for a, v in aliases.items() if v == version), "loaded": version in loaded}


@blueprint.get("/v1/models/<name>")
def model_info(name: str) -> Response:
    if ":" in name:  # GET on a ":predict" URL lands here, since <name> may contain ':'
        raise ApiError(405, f"{request.path} accepts POST only", headers={"Allow": "POST"})
    check_model_name(name)
    state = get_state()
    registry = state.registry
    versions = registry.versions(name)
    aliases = registry.aliases(name)
    production = aliases.get(PRODUCTION, versions[-1] if versions else None)
    loaded = state.predictor.loaded_versions()
    return json_response({
        "name": name,
        "production_version": production,
        "aliases": aliases,
        "versions": [_version_summary(registry, name, v, aliases, loaded) for v in versions],
        "model_version_status": [{"version": str(v), "state": "AVAILABLE",
                                  "status": {"error_code": "OK", "error_message": ""}} for v in versions],
    })


@blueprint.get("/v1/models/<name>/versions/<version>")
def version_manifest(name: str, version: str) -> Response:
    check_model_name(name)
    return json_response(get_state().registry.manifest(name, parse_version(version)))


@blueprint.put("/v1/models/<name>/aliases/<alias>")
@require_api_key(always=True)
def set_alias(name: str, alias: str) -> Response:
    """Point an alias (``production``, ``staging``, ...) at an existing version: promote or roll back."""
    check_model_name(name)
    if not _ALIAS.match(alias):
        raise ApiError(422, f"alias {alias!r}: use 1-64 letters, digits, '-' or '_', not only digits")
    require_json_content_type()
    body = validate(AliasUpdate, parse_json(read_body()))
    registry = get_state().registry
    previous = registry.aliases(name).get(alias)
    aliases = registry.set_alias(name, alias, body.version)  # 404 for an unknown version
    return json_response({"model": name, "alias": alias, "version": body.version, "previous_version": previous,
                          "aliases": aliases})
