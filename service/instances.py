"""V1 ``instances`` -> one float32 array (n, 784), with errors that name the instance and pixel.

Pydantic checks the envelope; the numbers themselves are checked vectorised in numpy (shape
once, finiteness and range once for the whole batch), because validating 784,000 Python
numbers one by one would cost more than the forward pass. Only when something is wrong do we
walk the offending rows to say exactly where.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.datasets import N_PIXELS
from service.errors import ApiError
from service.images import ImageBudget, ImageError, ImageTooLarge, image_to_pixels
from service.jsonio import type_name

SIDE = 28
SHAPE_HINT = f"expected {N_PIXELS} values or {SIDE}x{SIDE}"


def check_count(n: int, max_instances: int, field: str = "instances") -> None:
    if n == 0:
        raise ApiError(422, f"{field}: empty list, expected at least one instance")
    if n > max_instances:
        raise ApiError(422, f"{field}: {n} instances, at most {max_instances} per request")


def check_image_count(indices: Sequence[int], budget: ImageBudget, field: str) -> None:
    """413 when a request carries more images than ``MAX_IMAGES_PER_REQUEST``, naming the first extra one."""
    if len(indices) > budget.max_images:
        raise ApiError(413, f"{field}[{indices[budget.max_images]}]: image {budget.max_images + 1} of "
                            f"{len(indices)}; at most {budget.max_images} images per request "
                            "(MAX_IMAGES_PER_REQUEST), send the rest in another request")


def instances_to_pixels(instances: list[Any], max_instances: int, budget: ImageBudget | None = None) -> np.ndarray:
    """Convert V1 instances (784 numbers, 28x28 nested lists or {"b64": image}) in request order."""
    budget = budget or ImageBudget()
    check_count(len(instances), max_instances)
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
                raise ApiError(422, f"instances[{i}]: {SHAPE_HINT}, got {len(instance)}")
        elif type(instance) is dict:
            images.append(i)
        else:
            raise ApiError(422, f"instances[{i}]: expected an array of {N_PIXELS} numbers, a {SIDE}x{SIDE} array "
                                f"or {{\"b64\": \"<base64 image>\"}}, got {type_name(instance)}")
    check_image_count(images, budget, "instances")
    pixels = np.empty((len(instances), N_PIXELS), dtype=np.float32)
    if flat:
        rows = instances if len(flat) == len(instances) else [instances[i] for i in flat]
        pixels[flat] = numeric_rows(rows, flat, nested=False)
    if nested:
        pixels[nested] = numeric_rows([_flatten_28x28(instances[i], i) for i in nested], nested, nested=True)
    for i in images:
        pixels[i] = _decode_b64(instances[i], i, budget.max_pixels)
    return pixels


def _flatten_28x28(instance: list[Any], index: int) -> list[Any]:
    for r, row in enumerate(instance):
        if type(row) is not list or len(row) != SIDE:
            got = f"{len(row)} values" if type(row) is list else type_name(row)
            raise ApiError(422, f"instances[{index}][{r}]: {SHAPE_HINT}: row {r} must hold {SIDE} numbers, got {got}")
    return list(itertools.chain.from_iterable(instance))


def _decode_b64(instance: dict[str, Any], index: int, max_pixels: int) -> np.ndarray:
    encoded = instance.get("b64")
    if set(instance) != {"b64"} or not isinstance(encoded, str):
        raise ApiError(422, f"instances[{index}]: an object instance must be {{\"b64\": \"<base64 PNG or JPEG>\"}}, "
                            f"got keys {sorted(instance)}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, f"instances[{index}].b64: invalid base64 ({exc})") from None
    try:
        return image_to_pixels(data, max_pixels)
    except ImageTooLarge as exc:
        raise ApiError(413, f"instances[{index}].b64: {exc}") from None
    except ImageError as exc:
        raise ApiError(422, f"instances[{index}].b64: {exc}") from None


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
        raise ApiError(422, f"{_where(field, indices[row], col, nested)}: {array[row, col]} is not a finite number")
    if array.dtype.kind != "u" and (array.min() < 0 or array.max() > 255):
        row, col = np.argwhere((array < 0) | (array > 255))[0]
        raise ApiError(422, f"{_where(field, indices[row], col, nested)}: pixel value {array[row, col]:g} "
                            "is outside 0..255")


def _raise_first_non_number(rows: Sequence[list[Any]], indices: Sequence[int], nested: bool, field: str) -> None:
    for row, values in enumerate(rows):
        for col, value in enumerate(values):
            if type(value) not in (int, float):
                raise ApiError(422, f"{_where(field, indices[row], col, nested)}: expected a number, "
                                    f"got {type_name(value)}")


def _where(field: str, index: int, col: int, nested: bool) -> str:
    if nested:
        return f"{field}[{index}][{col // SIDE}][{col % SIDE}]"
    return f"{field}[{index}][{col}]"
