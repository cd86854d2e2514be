"""V1 predictions (TensorFlow Serving / KServe V1 row format) and multipart image uploads.

``POST /v1/models/<name>[/versions/<v>|/labels/<alias>]:predict`` with ``{"instances": [...]}``
and ``POST /v1/models/<name>[...]:predict_image`` with one or more multipart ``file`` fields.
Both are thin adapters: request -> (n, 784) float32 -> ``Predictor.predict`` -> JSON.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flask import Blueprint, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from service.auth import guard_blueprint
from service.errors import ApiError
from service.images import ImageBudget, ImageError, ImageTooLarge, image_to_pixels
from service.instances import check_count, check_image_count, instances_to_pixels
from service.jsonio import json_response, parse_json, read_body, require_json_content_type, validate
from service.metrics import record_predictions
from service.schemas import PredictRequest
from service.state import get_state
from service.targets import check_model_name, parse_version

blueprint = Blueprint("v1", __name__)
guard_blueprint(blueprint)
_EXTRA_FORM_PARTS = 8  # multipart fields besides the files a client may send (ignored)


def _image_budget() -> ImageBudget:
    settings = get_state().settings
    return ImageBudget(settings.max_images_per_request, settings.max_image_pixels)


def predict_with(pixels: np.ndarray, version: int | None, alias: str | None,
                 filenames: list[str] | None = None) -> Response:
    """One forward pass over the whole batch with one model reference, then the V1 response."""
    labels, probabilities, model = get_state().predictor.predict(pixels, version=version, alias=alias)
    g.model_version = model.version
    record_predictions(model.name, model.version, labels)
    label_list = labels.tolist()
    if filenames is None:
        predictions = [{"label": label, "probabilities": probabilities[i]} for i, label in enumerate(label_list)]
    else:
        predictions = [{"label": label, "probabilities": probabilities[i], "filename": filenames[i]}
                       for i, label in enumerate(label_list)]
    return json_response({"predictions": predictions, "model_version": model.version})


def _predict_json(version: int | None, alias: str | None) -> Response:
    require_json_content_type()
    body = validate(PredictRequest, parse_json(read_body()))
    pixels = instances_to_pixels(body.instances, get_state().settings.max_instances, _image_budget())
    return predict_with(pixels, version, alias)


def _predict_upload(version: int | None, alias: str | None) -> Response:
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, f"expected Content-Type multipart/form-data with 'file' fields, "
                            f"got {request.content_type or 'none'!r}")
    budget = _image_budget()
    # Werkzeug stops parsing after MAX_FORM_PARTS parts (default 1,000, each a temporary file):
    # hold it to the image budget so that limit, not a larger one, decides, with our message.
    request.max_form_parts = budget.max_images + _EXTRA_FORM_PARTS
    try:
        files = request.files.getlist("file")
    except RequestEntityTooLarge:
        raise ApiError(413, f"multipart body over a limit: at most {budget.max_images} 'file' parts "
                            f"(MAX_IMAGES_PER_REQUEST) and {_EXTRA_FORM_PARTS} other fields of at most "
                            f"{request.max_form_memory_size or 0:,} bytes each") from None
    if not files:
        raise ApiError(422, "file: no file uploaded (send one or more multipart fields named 'file')")
    check_count(len(files), get_state().settings.max_instances, field="file")
    check_image_count(range(len(files)), budget, "file")
    pixels = np.empty((len(files), 784), dtype=np.float32)
    for i, upload in enumerate(files):
        try:
            pixels[i] = image_to_pixels(upload.read(), budget.max_pixels)
        except ImageTooLarge as exc:
            raise ApiError(413, f"file[{i}] ({upload.filename or 'unnamed'}): {exc}") from None
        except ImageError as exc:
            raise ApiError(422, f"file[{i}] ({upload.filename or 'unnamed'}): {exc}") from None
    return predict_with(pixels, version, alias, [upload.filename or "" for upload in files])


def _routes(verb: str, handler: Callable[[int | None, str | None], Response]) -> None:
    """Register the default, ``/versions/<v>`` and ``/labels/<alias>`` forms of one verb."""

    def default(name: str) -> Response:
        check_model_name(name)
        return handler(None, None)

    def by_version(name: str, version: str) -> Response:
        check_model_name(name)
        return handler(parse_version(version), None)

    def by_label(name: str, alias: str) -> Response:
        check_model_name(name)
        return handler(None, alias)

    blueprint.add_url_rule(f"/v1/models/<name>:{verb}", f"{verb}", default, methods=["POST"])
    blueprint.add_url_rule(f"/v1/models/<name>/versions/<version>:{verb}", f"{verb}_version", by_version,
                           methods=["POST"])
    blueprint.add_url_rule(f"/v1/models/<name>/labels/<alias>:{verb}", f"{verb}_label", by_label, methods=["POST"])


_routes("predict", _predict_json)
_routes("predict_image", _predict_upload)
