"""V1 ``instances`` (or TF Serving's columnar ``inputs``) and uploaded images -> one float32 array
(n, 784), with errors that name the instance and pixel (Flask-free ``ServiceError``s).

A V1 body of plain rows never becomes Python numbers at all: ``service.codecs.json_pixels`` parses it
with numpy straight from the text. Every other body takes the general path here: pydantic checks
the envelope; the numbers themselves are checked vectorised in numpy (shape once, finiteness and
range once for the whole batch), because validating 784,000 Python numbers one by one would cost
more than the forward pass. Only when something is wrong do we walk the offending rows to say
exactly where.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from core.digits import N_PIXELS
from service.codecs.images import ImageBudget, ImageError, image_to_pixels
from service.codecs.json_decode import parse_json, type_name, validate
from service.codecs.json_pixels import fast_pixels
from service.codecs.schemas import INPUT_NAME, PredictRequest
from service.service_error import LimitExceeded, ServiceError, in_context

SIDE = 28
# Below about two rows of text the numpy passes of the fast path cost more than orjson and one
# np.array (a one-digit body: 0.08 ms against 0.05; crossing near 3.6 KB, 2 rows); above it they
# win more with every row (8 rows: 0.14 against 0.29 ms; docs/decisions/0004-fast-json-path.md).
FAST_PATH_MIN_BYTES = 4096
SHAPE_HINT = f"expected {N_PIXELS} values or {SIDE}x{SIDE}"


def check_count(n: int, max_instances: int, field: str = "instances") -> None:
    if n == 0:
        raise ServiceError(422, f"{field}: empty list, expected at least one instance")
    if n > max_instances:
        raise LimitExceeded(422, f"{field}: {n} instances, at most {max_instances} per request")


def check_image_count(indices: Sequence[int], budget: ImageBudget, field: str) -> None:
    """413 when a request carries more images than ``MAX_IMAGES_PER_REQUEST``, naming the first extra one."""
    if len(indices) > budget.max_images:
        raise ServiceError(413, f"{field}[{indices[budget.max_images]}]: image {budget.max_images + 1} of "
                                f"{len(indices)}; at most {budget.max_images} images per request "
                                "(MAX_IMAGES_PER_REQUEST), send the rest in another request")


class PredictBody(NamedTuple):
    """A decoded V1 ``predict`` body: the pixels, and whether it came in TF Serving's columnar form."""

    pixels: np.ndarray  # (n, 784) float32
    columnar: bool  # ``inputs`` (answered with ``outputs``), else ``instances`` (answered with ``predictions``)


def decode_predict_body(raw: bytes, max_instances: int, budget: ImageBudget | None = None) -> PredictBody:
    """A V1 ``predict`` body, row (``instances``) or columnar (``inputs``) -> (n, 784) float32.

    Plain rows of 784 numbers under ``instances`` in a body of ``FAST_PATH_MIN_BYTES`` or more take
    ``service.codecs.json_pixels`` (numbers parsed by numpy straight from the text); anything else,
    and every body with an error, takes the general path: orjson, the pydantic envelope, then
    ``instances_to_pixels``, which also words every error message.
    """
    if len(raw) >= FAST_PATH_MIN_BYTES:
        pixels = fast_pixels(raw, max_instances)
        if pixels is not None:
            return PredictBody(pixels, False)
    body = validate(PredictRequest, parse_json(raw))
    if body.inputs is not None:
        return PredictBody(inputs_to_pixels(body.inputs, max_instances, budget), True)
    return PredictBody(instances_to_pixels(body.instances, max_instances, budget), False)


def inputs_to_pixels(inputs: list[Any] | dict[str, Any], max_instances: int,
                     budget: ImageBudget | None = None) -> np.ndarray:
    """TF Serving's columnar ``inputs`` for our one input: the batch itself, or ``{"pixels": batch}``;
    each entry of the batch is what an entry of ``instances`` may be."""
    if isinstance(inputs, dict):
        if set(inputs) != {INPUT_NAME}:
            raise ServiceError(422, f"inputs: this model has one input, {INPUT_NAME!r}: send {{{INPUT_NAME!r}: "
                                    f"[instances]}} or the list of instances itself; got keys {sorted(inputs)}")
        field = f"inputs.{INPUT_NAME}"
        batch = inputs[INPUT_NAME]
        if type(batch) is not list:
            raise ServiceError(422, f"{field}: expected a list of instances, got {type_name(batch)}")
        return instances_to_pixels(batch, max_instances, budget, field)
    return instances_to_pixels(inputs, max_instances, budget, "inputs")


def instances_to_pixels(instances: list[Any], max_instances: int, budget: ImageBudget | None = None,
                        field: str = "instances") -> np.ndarray:
    """Convert V1 instances (784 numbers, 28x28 nested lists or {"b64": image}) in request order;
    ``field`` names the list in error messages (``instances``, ``inputs``)."""
    budget = budget or ImageBudget()
    check_count(len(instances), max_instances, field)
    flat: list[int] = []
    nested: list[int] = []
    images: list[int] = []
    for i, instance in enumerate(instances):
        if type(instance) is list:
            if len(instance) == N_PIXELS:
                flat.append(i)
            elif len(instance) == SIDE:
                nested.append(i)
            else:
                raise ServiceError(422, f"{field}[{i}]: {SHAPE_HINT}, got {len(instance)}")
        elif type(instance) is dict:
            images.append(i)
        else:
            raise ServiceError(422, f"{field}[{i}]: expected an array of {N_PIXELS} numbers, a {SIDE}x{SIDE} array "
                                    f"or {{\"b64\": \"<base64 image>\"}}, got {type_name(instance)}")
    check_image_count(images, budget, field)
    pixels = np.empty((len(instances), N_PIXELS), dtype=np.float32)
    if flat:
        rows = instances if len(flat) == len(instances) else [instances[i] for i in flat]
        pixels[flat] = numeric_rows(rows, flat, nested=False, field=field)
    if nested:
        pixels[nested] = numeric_rows([_flatten_28x28(instances[i], i, field) for i in nested], nested, nested=True,
                                      field=field)
    for i in images:
        pixels[i] = _decode_b64(instances[i], i, budget, field)
    return pixels


def _flatten_28x28(instance: list[Any], index: int, field: str) -> list[Any]:
    for r, row in enumerate(instance):
        if type(row) is not list or len(row) != SIDE:
            got = f"{len(row)} values" if type(row) is list else type_name(row)
            raise ServiceError(422, f"{field}[{index}][{r}]: {SHAPE_HINT}: row {r} must hold {SIDE} numbers, "
                                    f"got {got}")
    return list(itertools.chain.from_iterable(instance))


def _decode_b64(instance: dict[str, Any], index: int, budget: ImageBudget, field: str) -> np.ndarray:
    encoded = instance.get("b64")
    if set(instance) != {"b64"} or not isinstance(encoded, str):
        raise ServiceError(422, f"{field}[{index}]: an object instance must be "
                                f"{{\"b64\": \"<base64 PNG or JPEG>\"}}, got keys {sorted(instance)}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceError(422, f"{field}[{index}].b64: invalid base64 ({exc})") from None
    try:
        return image_to_pixels(data, budget)
    except ImageError as exc:  # 413 too large, 503 decoding budget busy, 422 otherwise
        raise in_context(exc, f"{field}[{index}].b64") from None


class Upload(Protocol):
    """An uploaded file as Werkzeug's ``FileStorage`` offers it: a client filename and its bytes."""

    filename: str | None

    def read(self) -> bytes: ...


def uploads_to_pixels(uploads: Sequence[Upload], max_instances: int, budget: ImageBudget) -> np.ndarray:
    """Uploaded images (multipart ``file`` fields) -> (n, 784), each read only when its turn comes."""
    if not uploads:
        raise ServiceError(422, "file: no file uploaded (send one or more multipart fields named 'file')")
    check_count(len(uploads), max_instances, field="file")
    check_image_count(range(len(uploads)), budget, "file")
    pixels = np.empty((len(uploads), N_PIXELS), dtype=np.float32)
    for i, upload in enumerate(uploads):
        try:
            pixels[i] = image_to_pixels(upload.read(), budget)
        except ImageError as exc:
            raise in_context(exc, f"file[{i}] ({upload.filename or 'unnamed'})") from None
    return pixels


def numeric_rows(rows: Sequence[list[Any]], indices: Sequence[int], nested: bool, field: str = "instances"
                 ) -> np.ndarray:
    """Rows of equal length -> float array, checked finite and in 0..255 in one vectorised pass."""
    try:
        array = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is None or array.ndim != 2 or array.dtype.kind not in "iuf":
        _raise_first_non_number(rows, indices, nested, field)
        array = np.array(rows, dtype=np.float64)  # only huge integers get here; the range check names them
    check_pixel_values(array, indices, nested, field)
    return array


def check_pixel_values(array: np.ndarray, indices: Sequence[int], nested: bool = False, field: str = "instances"
                       ) -> None:
    """Finite and within 0..255, checked for the whole (n, 784) batch at once."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        row, col = np.argwhere(~np.isfinite(array))[0]
        raise ServiceError(422, f"{_where(field, indices[row], col, nested)}: {array[row, col]} is not a finite number")
    if array.dtype.kind != "u" and (array.min() < 0 or array.max() > 255):
        row, col = np.argwhere((array < 0) | (array > 255))[0]
        raise ServiceError(422, f"{_where(field, indices[row], col, nested)}: pixel value {array[row, col]:g} "
                                "is outside 0..255")


def _raise_first_non_number(rows: Sequence[list[Any]], indices: Sequence[int], nested: bool, field: str) -> None:
    for row, values in enumerate(rows):
        for col, value in enumerate(values):
            if type(value) not in (int, float):
                raise ServiceError(422, f"{_where(field, indices[row], col, nested)}: expected a number, "
                                        f"got {type_name(value)}")


def _where(field: str, index: int, col: int, nested: bool) -> str:
    if nested:
        return f"{field}[{index}][{col // SIDE}][{col % SIDE}]"
    return f"{field}[{index}][{col}]"
