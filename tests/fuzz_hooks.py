"""Schemathesis hooks for tests/api/test_fuzz.py (loaded through ``SCHEMATHESIS_HOOKS``).

A few rules of the API tie one field to another or to the content of a file, and JSON Schema
cannot state them; ``/openapi.json`` states them in its descriptions. Without help the fuzzer's
"schema-valid" requests would break them and be rightly refused (ST202). These are the
rejections no schema can express. For the *valid* components of a case only (a coverage case
breaks one component and keeps the others valid) this hook makes the request keep those rules,
and nothing else: a component generated to break the schema reaches the server as generated.

- an image (``{"b64": ...}`` or a multipart ``file`` of a prediction) must decode as a PNG or
  JPEG digit: replaced by a real digit PNG;
- a V2 input's ``data`` holds ``shape[0] x 784`` values: resized to match;
  ``Inference-Header-Content-Length`` belongs to the binary extension only; an
  ``application/octet-stream`` body is a JSON header and the raw tensor it describes: built so;
- a scoring job takes a version or an alias, not both: the alias is dropped;
- an NPZ upload is a zip archive: given the zip signature; an uploaded file is not empty.

Filters drop negative cases that are not negative as the server reads them:
- a ``text/csv`` (or ``text/plain``) upload is any non-empty text, so a "non-string" body such as
  ``null`` or ``12`` arrives as the valid text ``null`` or ``12``;
- the job endpoints merge query parameters over form fields of the same name (the query wins),
  so an invalid form field shadowed by a valid query parameter is never read.
"""

from __future__ import annotations

import base64
import io
import json
import math
from typing import Any

import numpy as np
import schemathesis
from PIL import Image


def _digit_png() -> bytes:
    """A '7'-like stroke, light on dark, 28x28: something the MNIST preprocessing finds a digit in."""
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[6:9, 7:21] = 255
    for row in range(9, 23):
        col = 20 - (row - 9) // 2
        pixels[row, col - 1:col + 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


DIGIT_PNG = _digit_png()
DIGIT_B64 = base64.b64encode(DIGIT_PNG).decode()


def _negative_at(case: Any, location: str) -> bool:
    """Whether the request's ``location`` ("body", "query", "header", "path") was generated to break
    the schema. A coverage case is negative in one component only; the others are valid and may be
    fixed up like a positive case's."""
    meta = case.meta
    if meta is None:
        return False
    if not meta.components:
        return meta.generation.mode.is_negative
    return any(getattr(where, "value", where) == location and info.mode.is_negative
               for where, info in meta.components.items())


def _fix_v1(body: Any) -> None:
    if not isinstance(body, dict):
        return
    inputs = body.get("inputs")
    batches = [body.get("instances"), inputs, inputs.get("pixels") if isinstance(inputs, dict) else None]
    for batch in batches:
        for instance in batch if isinstance(batch, list) else []:
            if isinstance(instance, dict) and "b64" in instance:
                instance["b64"] = DIGIT_B64


def _fit_v2_data(tensor: dict[str, Any]) -> None:
    n = int(tensor["shape"][0])
    data = tensor.get("data")
    if not isinstance(data, list) or not data:
        return
    if isinstance(data[0], list):  # nested rows
        rows = (data * math.ceil(n / len(data)))[:n]
        tensor["data"] = [[round(v) for v in row] for row in rows] if tensor["datatype"] == "UINT8" else rows
        return
    flat = (data * math.ceil(n * 784 / len(data)))[:n * 784]
    tensor["data"] = [round(v) for v in flat] if tensor["datatype"] == "UINT8" else flat


def _binary_v2(n: int) -> tuple[bytes, str]:
    header = json.dumps({"inputs": [{"name": "pixels", "shape": [n, 784], "datatype": "UINT8",
                                     "parameters": {"binary_data_size": n * 784}}]}).encode()
    return header + bytes(n * 784), str(len(header))


def _fix_v2(case: Any) -> None:
    if case.media_type == "application/octet-stream":
        case.body, case.headers["Inference-Header-Content-Length"] = _binary_v2(1)
        return
    case.headers.pop("Inference-Header-Content-Length", None)
    if isinstance(case.body, dict):
        for tensor in case.body.get("inputs", []):
            _fit_v2_data(tensor)


def _fix_jobs(case: Any) -> None:
    body_valid, query_valid = not _negative_at(case, "body"), not _negative_at(case, "query")
    form = case.body if isinstance(case.body, dict) and body_valid else {}
    if case.path == "/v1/jobs/score" and ("version" in case.query or "version" in form):
        if query_valid:
            case.query.pop("alias", None)
        form.pop("alias", None)
    if body_valid and case.media_type in ("application/x-npz", "application/zip", "application/octet-stream"):
        raw = case.body if isinstance(case.body, bytes) else str(case.body).encode()
        case.body = b"PK\x03\x04" + raw
    for name in ("file", "images", "labels"):
        if isinstance(form.get(name), (bytes, str)) and not form[name]:
            form[name] = b"x"


_TEXT_UPLOADS = ("text/csv", "application/csv", "text/plain")


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    if not _negative_at(case, "body"):
        return True
    if case.path.startswith("/v1/jobs/") and isinstance(case.body, dict) and set(case.body) & set(case.query or {}):
        return False
    if case.media_type not in _TEXT_UPLOADS:
        return True
    text = case.body if isinstance(case.body, (str, bytes)) else json.dumps(case.body)
    return not text  # only an empty body is negative on the wire


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if case.path.startswith("/v1/jobs"):
        _fix_jobs(case)  # it looks at each component itself
    elif _negative_at(case, "body") or _negative_at(case, "header"):
        return case
    elif ":predict_image" in case.path and isinstance(case.body, dict) and isinstance(case.body.get("file"), list):
        case.body["file"] = [DIGIT_PNG for _ in case.body["file"]] or [DIGIT_PNG]
    elif ":predict" in case.path or ":explain" in case.path:
        _fix_v1(case.body)
    elif case.path.endswith("/infer"):
        _fix_v2(case)
    return case
