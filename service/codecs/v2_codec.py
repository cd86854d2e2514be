"""Open Inference Protocol (V2) bodies: JSON tensors and the binary tensor data extension.

With the extension, the body is a JSON header of ``Inference-Header-Content-Length`` bytes
followed by raw little-endian tensors; each binary input says its size in
``parameters.binary_data_size``. Outputs asked for with ``parameters.binary_data`` come back
the same way, which spares 10 floats per row of JSON text. Flask-free: bad input raises
``ServiceError`` with its HTTP status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.digits import N_PIXELS
from core.registry import is_decimal
from service.codecs.instances import check_count, check_pixel_values, numeric_rows
from service.codecs.json_decode import parse_json, validate
from service.codecs.schemas import V2InferRequest
from service.service_error import ServiceError

INPUT_NAME = "pixels"
INPUT_DTYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
OUTPUTS = {"probabilities": "FP32", "labels": "INT64"}


def parse_request(raw: bytes, header_length: str | None) -> tuple[V2InferRequest, bytes]:
    """Split (and validate) the JSON header from the binary tail, if any."""
    if header_length is None:
        return validate(V2InferRequest, parse_json(raw)), b""
    if not is_decimal(header_length.strip()) or int(header_length) > len(raw):
        raise ServiceError(400, f"Inference-Header-Content-Length {header_length!r} must be an integer between 0 "
                                f"and the body size {len(raw)}")
    size = int(header_length)
    return validate(V2InferRequest, parse_json(raw[:size], "inference header")), raw[size:]


def check_input_count(count: int) -> None:
    if count != 1:
        raise ServiceError(422, f"inputs: expected exactly one input tensor {INPUT_NAME!r}, got {count}")


def check_input(name: str, shape: Sequence[int], datatype: str, max_instances: int) -> tuple[int, np.dtype]:
    """The one input's name, shape and datatype checked as the protocol's ``[n, 784]`` input, over
    HTTP as over gRPC: (n, the datatype's numpy dtype)."""
    if name != INPUT_NAME:
        raise ServiceError(422, f"inputs[0].name: unknown input {name!r}, expected {INPUT_NAME!r}")
    if len(shape) != 2 or shape[1] != N_PIXELS or shape[0] < 0:
        raise ServiceError(422, f"inputs[0].shape: expected [n, {N_PIXELS}], got {list(shape)}")
    n = int(shape[0])
    check_count(n, max_instances, field="inputs[0].shape[0]")
    dtype = INPUT_DTYPES.get(datatype)
    if dtype is None:
        raise ServiceError(422, f"inputs[0].datatype: {datatype!r} is not supported, use {' or '.join(INPUT_DTYPES)}")
    return n, dtype


def raw_pixels(raw: bytes, n: int, dtype: np.dtype, field: str) -> np.ndarray:
    """``raw`` little-endian values of ``dtype`` as (n, 784), its size and values checked; ``field``
    names where they came from in errors."""
    expected = n * N_PIXELS * dtype.itemsize
    if len(raw) != expected:
        raise ServiceError(422, f"{field}: {len(raw)} bytes of raw data, shape [{n}, {N_PIXELS}] of {dtype.name} "
                                f"needs {expected}")
    array = np.frombuffer(raw, dtype=dtype).reshape(n, N_PIXELS)
    check_pixel_values(array, range(n), field=field)
    return array


def input_pixels(infer: V2InferRequest, binary: bytes, max_instances: int) -> np.ndarray:
    """The one ``[n, 784]`` input as an (n, 784) array, checked finite and in 0..255."""
    check_input_count(len(infer.inputs))
    tensor = infer.inputs[0]
    n, dtype = check_input(tensor.name, tensor.shape, tensor.datatype, max_instances)
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        return _binary_input(tensor.data, size, binary, n, dtype)
    if binary:
        raise ServiceError(400, f"{len(binary)} bytes of binary data follow the header but no input declares "
                                "parameters.binary_data_size")
    return _json_input(tensor.data, n, tensor.datatype)


def _binary_input(data: Any, size: Any, binary: bytes, n: int, dtype: np.dtype) -> np.ndarray:
    expected = n * N_PIXELS * dtype.itemsize
    if data is not None:
        raise ServiceError(422, "inputs[0]: give either data or parameters.binary_data_size, not both")
    if type(size) is not int or size != expected:
        raise ServiceError(422, f"inputs[0].parameters.binary_data_size: {size!r} does not match shape "
                                f"[{n}, {N_PIXELS}] of {dtype.name} ({expected} bytes)")
    if len(binary) != size:
        raise ServiceError(400, f"inputs[0]: binary data is {len(binary)} bytes, binary_data_size says {size}")
    return raw_pixels(binary, n, dtype, "inputs[0].data")


def _json_input(data: Any, n: int, datatype: str) -> np.ndarray:
    if not isinstance(data, list):
        raise ServiceError(422, "inputs[0].data: missing; send the values as a JSON array or use the binary extension")
    if len(data) == n and n > 0 and all(type(row) is list for row in data):
        rows = data  # nested [n][784]
        bad = next((i for i, row in enumerate(rows) if len(row) != N_PIXELS), None)
        if bad is not None:
            raise ServiceError(422, f"inputs[0].data[{bad}]: expected {N_PIXELS} values, got {len(rows[bad])}")
    elif len(data) == n * N_PIXELS:
        rows = [data[i * N_PIXELS:(i + 1) * N_PIXELS] for i in range(n)]
    else:
        raise ServiceError(422, f"inputs[0].data: shape [{n}, {N_PIXELS}] needs {n * N_PIXELS} values, got {len(data)}")
    array = numeric_rows(rows, range(n), nested=False, field="inputs[0].data")
    if datatype == "UINT8" and array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        row, col = np.argwhere(array != np.round(array))[0]
        raise ServiceError(422, f"inputs[0].data[{row}][{col}]: {array[row, col]} is not an integer (datatype UINT8)")
    return array


def wanted_outputs(infer: V2InferRequest) -> list[tuple[str, bool]]:
    """(output name, as binary?) in the order asked; both outputs when none were named."""
    default_binary = bool((infer.parameters or {}).get("binary_data_output", False))
    if not infer.outputs:
        return [(name, default_binary) for name in OUTPUTS]
    wanted = []
    for i, output in enumerate(infer.outputs):
        if output.name not in OUTPUTS:
            raise ServiceError(422, f"outputs[{i}].name: unknown output {output.name!r} "
                                    f"(available: {', '.join(OUTPUTS)})")
        wanted.append((output.name, bool((output.parameters or {}).get("binary_data", default_binary))))
    return wanted


def encode_response(header: dict[str, Any], tensors: dict[str, np.ndarray], wanted: list[tuple[str, bool]]
                    ) -> tuple[dict[str, Any], bytes]:
    """Fill ``header["outputs"]``; returns (header, binary tail) — the tail is empty for pure JSON."""
    outputs, chunks = [], []
    for name, binary in wanted:
        array = np.ascontiguousarray(tensors[name], dtype="<f4" if OUTPUTS[name] == "FP32" else "<i8")
        entry: dict[str, Any] = {"name": name, "datatype": OUTPUTS[name], "shape": list(array.shape)}
        if binary:
            chunk = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = array.ravel()
        outputs.append(entry)
    header["outputs"] = outputs
    return header, b"".join(chunks)
