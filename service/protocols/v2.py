"""V2 Open Inference Protocol (KServe V2 / Triton): health, metadata and ``infer``.

Input ``pixels`` ``[n, 784]`` FP32 or UINT8; outputs ``probabilities`` ``[n, 10]`` FP32 and
``labels`` ``[n]`` INT64, as JSON or with the binary tensor data extension. A protocol adapter
only: decode (``service.codecs.v2_codec``) -> the app's ``DataPlane`` -> encode.
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, request

from core.registry import RegistryError
from service.auth import guard_blueprint
from service.codecs.jsonio import JSON_OPTIONS, json_response, read_body
from service.codecs.v2_codec import encode_response, input_pixels, parse_request, wanted_outputs
from service.protocols import v2_model
from service.protocols.v2_model import SERVER_NAME, SERVER_VERSION, ready_version, server_ready
from service.service_error import ServiceError
from service.state import get_state
from service.targets import check_model_name, parse_version

blueprint = Blueprint("v2", __name__)
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
    reason = server_ready(get_state())
    return json_response({"ready": True} if reason is None else {"ready": False, "error": reason},
                         200 if reason is None else 503)


@blueprint.get("/v2/models")
def list_models() -> Response:
    """Every served model with its versions and readiness (the default version of each loads here,
    as ``/v2/models/<name>/ready`` would load it), after Triton's repository index."""
    state = get_state()
    models = []
    for name in state.models.names(refresh=True):  # fresh, as GET /v1/models lists
        entry = {"name": name, "versions": [str(v) for v in state.registry.versions(name)],
                 "state": "READY", "reason": ""}
        try:
            state.models.get(model=name)
        except RegistryError as exc:
            entry.update(state="UNAVAILABLE", reason=str(exc))
        models.append(entry)
    return json_response({"models": models})


@blueprint.get("/v2/models/<model:name>")
def model_metadata(name: str) -> Response:
    return json_response(v2_model.model_metadata(get_state(), name, None))


@blueprint.get("/v2/models/<model:name>/versions/<version:version>")
def version_metadata(name: str, version: str) -> Response:
    return json_response(v2_model.model_metadata(get_state(), name, parse_version(version)))


def _ready(name: str, version: int | None) -> Response:
    return json_response({"name": name, "version": str(ready_version(get_state(), name, version)), "ready": True})


@blueprint.get("/v2/models/<model:name>/ready")
def model_ready(name: str) -> Response:
    return _ready(name, None)


@blueprint.get("/v2/models/<model:name>/versions/<version:version>/ready")
def version_ready(name: str, version: str) -> Response:
    return _ready(name, parse_version(version))


def _infer(name: str, version: int | None) -> Response:
    check_model_name(name)
    environ = request.environ  # read directly: Werkzeug's header lookups cost 4-5 us each here
    header_length = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
    mimetype = request.mimetype
    allowed = {"", "application/json"} if header_length is None else {"", "application/octet-stream",
                                                                       "application/json"}
    if mimetype not in allowed:
        raise ServiceError(415, f"expected Content-Type {' or '.join(sorted(allowed - {''}))}"
                                f"{' (with Inference-Header-Content-Length)' if header_length else ''}, "
                                f"got {request.content_type!r}")
    encoding = environ.get("HTTP_CONTENT_ENCODING", "identity")
    if encoding != "identity":
        raise ServiceError(415, f"Content-Encoding {encoding!r} is not supported")
    infer, binary = parse_request(read_body(), header_length)
    state = get_state()
    pixels = input_pixels(infer, binary, state.settings.max_instances)
    wanted = wanted_outputs(infer)
    result = state.dataplane.infer(name, version, None, pixels)
    header = {"model_name": name, "model_version": str(result.version)}
    if infer.id is not None:
        header["id"] = infer.id
    header, tail = encode_response(header, {"probabilities": result.probabilities, "labels": result.labels}, wanted)
    if not tail:
        return json_response(header)
    head = orjson.dumps(header, option=JSON_OPTIONS)
    return Response(head + tail, mimetype="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})


@blueprint.post("/v2/models/<model:name>/infer")
def infer(name: str) -> Response:
    return _infer(name, None)


@blueprint.post("/v2/models/<model:name>/versions/<version:version>/infer")
def infer_version(name: str, version: str) -> Response:
    return _infer(name, parse_version(version))
