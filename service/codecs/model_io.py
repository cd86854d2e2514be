"""What a served model takes and gives, in each protocol's own words.

Every model maps a batch of 784 pixels (0..255) to one label and ``N_CLASSES`` probabilities per
row (``core.registry`` refuses any other shape), so its description depends only on whether its
manifest names its classes. TF Serving's ``signature_def`` (``GET /v1/models/<m>/metadata``) and
Triton's model configuration (``GET /v2/models/<m>/config``) are written here; V2 metadata keeps
its own in ``service.protocols.v2``.
"""

from __future__ import annotations

import json
from typing import Any

from core.digits import N_CLASSES, N_PIXELS
from service.codecs.schemas import INPUT_NAME

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


def _tensor_info(name: str, dtype: str, dims: list[int]) -> dict[str, Any]:
    # TF Serving prints the protobuf's JSON mapping: int64 fields (a dim's size) are strings.
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims],
                                             "unknown_rank": False}, "name": name}


def signature_def(class_names: list[str] | None) -> dict[str, Any]:
    """TF Serving's ``SignatureDefMap`` of one ``serving_default`` predict signature: input
    ``pixels`` DT_FLOAT [-1, 784]; outputs ``label`` DT_INT64 [-1], ``probabilities`` DT_FLOAT
    [-1, 10] and, when the manifest names the classes, ``class`` DT_STRING [-1]."""
    outputs = {"label": _tensor_info("label", "DT_INT64", [-1]),
               "probabilities": _tensor_info("probabilities", "DT_FLOAT", [-1, N_CLASSES])}
    if class_names is not None:
        outputs["class"] = _tensor_info("class", "DT_STRING", [-1])
    return {SIGNATURE: {"inputs": {INPUT_NAME: _tensor_info(INPUT_NAME, "DT_FLOAT", [-1, N_PIXELS])},
                        "outputs": outputs, "method_name": PREDICT_METHOD}}


def triton_config(name: str, platform: str, max_batch_size: int, class_names: list[str] | None) -> dict[str, Any]:
    """Triton's model configuration (its JSON form) for what this server runs: a batching model
    (``dims`` leave out the batch dimension, as Triton's do when ``max_batch_size`` > 0) with input
    ``pixels`` FP32 [784] (UINT8 accepted too) and outputs ``probabilities`` FP32 [10] and
    ``labels`` INT64 [1] reshaped to one value per row; the class names, when the manifest has
    them, as the JSON list in ``parameters.class_names.string_value``."""
    probabilities: dict[str, Any] = {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [N_CLASSES],
                                     "label_filename": "", "is_shape_tensor": False}
    return {
        "name": name, "platform": platform, "backend": "numpy", "version_policy": {"all": {}},
        "max_batch_size": max_batch_size,
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [N_PIXELS],
                   "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False}],
        "output": [probabilities,
                   # one label per row: [1] reshaped to a scalar, so the batch output is [n] as V2 infer gives it
                   {"name": "labels", "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []},
                    "label_filename": "", "is_shape_tensor": False}],
        "parameters": {"class_names": {"string_value": json.dumps(class_names)}} if class_names else {},
        "instance_group": [{"name": name, "kind": "KIND_CPU", "count": 1}],
    }
