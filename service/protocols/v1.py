"""V1 predictions (TensorFlow Serving / KServe V1), multipart image uploads and TF Serving metadata.

``POST /v1/models/<name>[/versions/<v>|/labels/<alias>]:predict`` with ``{"instances": [...]}`` (row
format, answered with ``predictions``) or ``{"inputs": ...}`` (TF Serving's columnar format,
answered with ``outputs``); ``GET /v1/models/<name>[...]/metadata`` answers TF Serving's
``GetModelMetadata`` (its ``serving_default`` signature); ``POST /v1/models/<name>[...]:predict_image``
takes one or more multipart ``file`` fields; ``POST /v1/models/<name>[...]:explain`` takes
``instances`` and answers a 28x28 attribution map per instance (``core.explain``), as KServe's V1 ``:explain`` verb.
A protocol adapter only: decode (``service.codecs.instances``) -> the app's ``DataPlane`` -> encode.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from core.explain import METHOD
from core.model import class_names_of
from service.auth import guard_blueprint
from service.codecs.instances import SIDE, decode_predict_body, instances_to_pixels, uploads_to_pixels
from service.codecs.jsonio import json_response, parse_json, read_body, require_json_content_type, validate
from service.codecs.model_io import signature_def
from service.codecs.schemas import ExplainRequest
from service.dataplane import InferenceResult
from service.service_error import ServiceError
from service.state import get_state
from service.targets import check_model_name, described_manifest, parse_version

blueprint = Blueprint("v1", __name__)
guard_blueprint(blueprint)
_EXTRA_FORM_PARTS = 8  # multipart fields besides the files a client may send (ignored)
Handler = Callable[[str, int | None, str | None], Response]


def _encode(result: InferenceResult, filenames: list[str] | None = None) -> Response:
    """The V1 response: one ``{"label"[, "class"], "probabilities"[, "filename"]}`` per instance, in
    order; ``"class"`` (the label's name) when the model's manifest names its classes."""
    probabilities = result.probabilities
    predictions = [{"label": label, "probabilities": probabilities[i]}
                   for i, label in enumerate(result.labels.tolist())]
    names = result.class_names
    if names is not None:
        for prediction in predictions:
            prediction["class"] = names[prediction["label"]]
    if filenames is not None:
        for prediction, filename in zip(predictions, filenames, strict=True):
            prediction["filename"] = filename
    return json_response({"predictions": predictions, "model_version": result.version})


def _encode_columnar(result: InferenceResult) -> Response:
    """TF Serving's columnar answer to ``inputs``: one list per output (``label``, ``probabilities``,
    and ``class`` when the manifest names the classes), each in request order."""
    outputs: dict[str, object] = {"label": result.labels, "probabilities": result.probabilities}
    names = result.class_names
    if names is not None:
        outputs["class"] = [names[label] for label in result.labels.tolist()]
    return json_response({"outputs": outputs, "model_version": result.version})


def _predict_json(name: str, version: int | None, alias: str | None) -> Response:
    require_json_content_type()
    state = get_state()
    pixels, columnar = decode_predict_body(read_body(), state.settings.max_instances, state.image_budget)
    result = state.dataplane.infer(name, version, alias, pixels)
    return _encode_columnar(result) if columnar else _encode(result)


def _predict_upload(name: str, version: int | None, alias: str | None) -> Response:
    if request.mimetype != "multipart/form-data":
        raise ServiceError(415, f"expected Content-Type multipart/form-data with 'file' fields, "
                                f"got {request.content_type or 'none'!r}")
    state = get_state()
    budget = state.image_budget
    # Werkzeug stops parsing after MAX_FORM_PARTS parts (default 1,000, each a temporary file):
    # hold it to the image budget so that limit, not a larger one, decides, with our message.
    request.max_form_parts = budget.max_images + _EXTRA_FORM_PARTS
    try:
        files = request.files.getlist("file")
    except RequestEntityTooLarge:
        raise ServiceError(413, f"multipart body over a limit: at most {budget.max_images} 'file' parts "
                                f"(MAX_IMAGES_PER_REQUEST) and {_EXTRA_FORM_PARTS} other fields of at most "
                                f"{request.max_form_memory_size or 0:,} bytes each") from None
    pixels = uploads_to_pixels(files, state.settings.max_instances, budget)
    return _encode(state.dataplane.infer(name, version, alias, pixels), [upload.filename or "" for upload in files])


def _explain_json(name: str, version: int | None, alias: str | None) -> Response:
    require_json_content_type()
    body = validate(ExplainRequest, parse_json(read_body()))
    state = get_state()
    cap = state.settings.max_explain_instances
    if len(body.instances) > cap:
        # Checked before decoding anything: a backward pass per instance costs more than a prediction.
        raise ServiceError(422, f"instances: {len(body.instances)} instances, at most {cap} per :explain "
                                "request (MAX_EXPLAIN_INSTANCES); send the rest in another request")
    pixels = instances_to_pixels(body.instances, cap, state.image_budget)
    model, explanation = state.dataplane.explain(name, version, alias, pixels)
    # What the model saw: images after their MNIST-style preprocessing, numbers as sent (rounded).
    seen = np.clip(np.rint(pixels), 0, 255).astype(np.int64).reshape(-1, SIDE, SIDE).tolist()
    attributions = explanation.attributions.astype(np.float32).reshape(-1, SIDE, SIDE)
    names = model.class_names
    explanations = [{"label": label, **({"class": names[label]} if names else {}),
                     "probabilities": explanation.probabilities[i].astype(np.float32),
                     "pixels": seen[i], "attributions": attributions[i]}
                    for i, label in enumerate(explanation.labels.tolist())]
    return json_response({"model_name": model.name, "model_version": model.version, "method": METHOD,
                          "explanations": explanations})


def _metadata(name: str, version: int | None, alias: str | None) -> Response:
    """TF Serving's ``GetModelMetadata``: the version the URL designates (production without one), read
    from the registry (nothing is loaded), and its one ``serving_default`` predict signature."""
    check_model_name(name)
    number = get_state().registry.resolve(name, version, alias)  # 404 unknown version or alias, 503 none published
    manifest = described_manifest(name, number)
    return json_response({"model_spec": {"name": name, "signature_name": "", "version": str(number)},
                          "metadata": {"signature_def": {"signature_def": signature_def(class_names_of(manifest))}}})


def _routes(verb: str, handler: Handler) -> None:
    """Register the default, ``/versions/<v>`` and ``/labels/<alias>`` forms of one verb."""

    def default(name: str) -> Response:
        return handler(check_model_name(name), None, None)

    def by_version(name: str, version: str) -> Response:
        return handler(check_model_name(name), parse_version(version), None)

    def by_label(name: str, alias: str) -> Response:
        return handler(check_model_name(name), None, alias)

    base = "/v1/models/<model:name>"
    blueprint.add_url_rule(f"{base}:{verb}", f"{verb}", default, methods=["POST"])
    blueprint.add_url_rule(f"{base}/versions/<version:version>:{verb}", f"{verb}_version", by_version,
                           methods=["POST"])
    blueprint.add_url_rule(f"{base}/labels/<alias:alias>:{verb}", f"{verb}_label", by_label, methods=["POST"])


_routes("predict", _predict_json)
_routes("predict_image", _predict_upload)
_routes("explain", _explain_json)


@blueprint.get("/v1/models/<model:name>/metadata")
def metadata(name: str) -> Response:
    return _metadata(name, None, None)


@blueprint.get("/v1/models/<model:name>/versions/<version:version>/metadata")
def metadata_version(name: str, version: str) -> Response:
    return _metadata(name, parse_version(version), None)


@blueprint.get("/v1/models/<model:name>/labels/<alias:alias>/metadata")
def metadata_label(name: str, alias: str) -> Response:
    return _metadata(name, None, alias)
