"""V2 Open Inference Protocol (KServe V2 / Triton): health, metadata and ``infer``.

Input ``pixels`` ``[n, 784]`` FP32 or UINT8; outputs ``probabilities`` ``[n, 10]`` FP32 and
``labels`` ``[n]`` INT64, as JSON or with the binary tensor data extension.
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, g, request

from core.datasets import N_PIXELS
from core.registry import RegistryError
from service.auth import guard_blueprint
from service.errors import ApiError
from service.jsonio import JSON_OPTIONS, json_response, read_body
from service.metrics import record_predictions
from service.state import get_state
from service.targets import check_model_name, parse_version
from service.v2_codec import INPUT_NAME, encode_response, input_pixels, parse_request, wanted_outputs

blueprint = Blueprint("v2", __name__)
SERVER_NAME, SERVER_VERSION = "mnist-serve", "0.1.0"
# Probes stay open under REQUIRE_KEY_FOR_ALL; metadata and inference need the key.
guard_blueprint(blueprint, frozenset({"v2.server_metadata", "v2.live", "v2.ready"}))


@blueprint.get("/v2")
def server_metadata() -> Response:
    return json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]})


@blueprint.get("/v2/health/live")
def live() -> Response:
    return json_response({"live": True})


@blueprint.get("/v2/health/ready")
def ready() -> Response:
    try:
        get_state().predictor.get()
    except RegistryError as exc:
        return json_response({"ready": False, "error": str(exc)}, 503)
    return json_response({"ready": True})


def _metadata(name: str, version: int | None) -> Response:
    check_model_name(name)
    registry = get_state().registry
    versions = registry.versions(name)
    if version is not None:
        registry.resolve(name, version=version)  # 404 for an unknown version
        versions = [version]
    return json_response({
        "name": name, "versions": [str(v) for v in versions], "platform": "numpy-mlp",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, N_PIXELS],
                    "parameters": {"also_accepts": "UINT8", "range": "0..255, 0 = background"}}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
                    {"name": "labels", "datatype": "INT64", "shape": [-1]}],
    })


@blueprint.get("/v2/models/<name>")
def model_metadata(name: str) -> Response:
    return _metadata(name, None)


@blueprint.get("/v2/models/<name>/versions/<version>")
def version_metadata(name: str, version: str) -> Response:
    return _metadata(name, parse_version(version))


def _ready(name: str, version: int | None) -> Response:
    check_model_name(name)
    model = get_state().predictor.get(version=version)  # 404 unknown version, 503 nothing published
    return json_response({"name": name, "version": str(model.version), "ready": True})


@blueprint.get("/v2/models/<name>/ready")
def model_ready(name: str) -> Response:
    return _ready(name, None)


@blueprint.get("/v2/models/<name>/versions/<version>/ready")
def version_ready(name: str, version: str) -> Response:
    return _ready(name, parse_version(version))


def _infer(name: str, version: int | None) -> Response:
    check_model_name(name)
    header_length = request.headers.get("Inference-Header-Content-Length")
    mimetype = request.mimetype
    allowed = {"", "application/json"} if header_length is None else {"", "application/octet-stream",
                                                                       "application/json"}
    if mimetype not in allowed:
        raise ApiError(415, f"expected Content-Type {' or '.join(sorted(allowed - {''}))}"
                            f"{' (with Inference-Header-Content-Length)' if header_length else ''}, "
                            f"got {request.content_type!r}")
    if request.headers.get("Content-Encoding", "identity") != "identity":
        raise ApiError(415, f"Content-Encoding {request.headers['Content-Encoding']!r} is not supported")
    state = get_state()
    infer, binary = parse_request(read_body(), header_length)
    pixels = input_pixels(infer, binary, state.settings.max_instances)
    wanted = wanted_outputs(infer)
    labels, probabilities, model = state.predictor.predict(pixels, version=version)
    g.model_version = model.version
    record_predictions(model.name, model.version, labels)
    header = {"model_name": name, "model_version": str(model.version)}
    if infer.id is not None:
        header["id"] = infer.id
    header, tail = encode_response(header, {"probabilities": probabilities, "labels": labels}, wanted)
    if not tail:
        return json_response(header)
    head = orjson.dumps(header, option=JSON_OPTIONS)
    return Response(head + tail, mimetype="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})


@blueprint.post("/v2/models/<name>/infer")
def infer(name: str) -> Response:
    return _infer(name, None)


@blueprint.post("/v2/models/<name>/versions/<version>/infer")
def infer_version(name: str, version: str) -> Response:
    return _infer(name, parse_version(version))
