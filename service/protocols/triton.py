"""Triton's model configuration and statistics extensions over HTTP.

``GET /v2/models/<m>[/versions/<v>]/config``: what the server knows of the model in Triton's
model-configuration JSON (platform, ``max_batch_size`` = ``MAX_INSTANCES``, inputs and outputs with
Triton's data types and per-row dims). ``GET /v2/models[/<m>[/versions/<v>]]/stats``: Triton's
``model_stats`` from the server-wide request metrics (``service.inference_stats``). Both read the
registry and the metrics only, so they answer for an unloaded model too.
"""

from __future__ import annotations

from flask import Blueprint, Response

from core.model import class_names_of, platform_of
from service import inference_stats
from service.auth import guard_blueprint
from service.codecs.jsonio import json_response
from service.codecs.model_io import triton_config
from service.metrics import metric_source
from service.state import get_state
from service.targets import check_model_name, described_manifest, parse_version

blueprint = Blueprint("triton", __name__)
guard_blueprint(blueprint)


def _config(name: str, version: int | None) -> Response:
    check_model_name(name)
    state = get_state()
    described = state.registry.resolve(name, version)  # 404 for an unknown version, 503 when nothing is published
    manifest = described_manifest(name, described)
    return json_response(triton_config(name, platform_of(manifest.get("architecture")), state.settings.max_instances,
                                       class_names_of(manifest)))


@blueprint.get("/v2/models/<model:name>/config")
def model_config(name: str) -> Response:
    return _config(name, None)


@blueprint.get("/v2/models/<model:name>/versions/<version:version>/config")
def version_config(name: str, version: str) -> Response:
    return _config(name, parse_version(version))


def _stats(targets: list[tuple[str, int]]) -> Response:
    collected = inference_stats.collect(metric_source())
    return json_response({"model_stats": inference_stats.model_stats(collected, targets)})


@blueprint.get("/v2/models/stats")
def all_stats() -> Response:
    """Every served model's versions (tritonclient's ``get_inference_statistics()`` without a name)."""
    state = get_state()
    return _stats([(name, v) for name in state.models.names(refresh=True) for v in state.registry.versions(name)])


@blueprint.get("/v2/models/<model:name>/stats")
def model_stats(name: str) -> Response:
    check_model_name(name)
    return _stats([(name, v) for v in get_state().registry.versions(name)])


@blueprint.get("/v2/models/<model:name>/versions/<version:version>/stats")
def version_stats(name: str, version: str) -> Response:
    check_model_name(name)
    number = get_state().registry.resolve(name, parse_version(version))  # 404 for an unknown version
    return _stats([(name, number)])
