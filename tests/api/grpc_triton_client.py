"""Run by test_grpc_gunicorn.py in its own interpreter: unmodified ``tritonclient.grpc`` against an address.

tritonclient ships Triton's protos in the package ``inference``, as the server's own modules are;
protobuf refuses both in one process, hence a process of its own. Reads ``{"address", "pixels"}``
(a list of 784-value rows) as JSON on stdin and prints what the client saw as JSON.
"""

from __future__ import annotations

import contextlib
import json
import sys

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def main() -> None:
    asked = json.load(sys.stdin)
    client = triton.InferenceServerClient(asked["address"])
    pixels = np.array(asked["pixels"], dtype=np.float32)
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    outputs = [triton.InferRequestedOutput(name) for name in ("probabilities", "labels")]
    result = client.infer("mnist", [tensor], outputs=outputs, request_id="from-triton")
    metadata = client.get_model_metadata("mnist", as_json=True)
    try:
        client.infer("mnist", [tensor], model_version="9")
        unknown_version = None
    except InferenceServerException as exc:
        unknown_version = {"status": exc.status(), "message": exc.message()}
    with contextlib.suppress(InferenceServerException):  # a model nobody serves, for the metrics' label
        client.infer("fashion", [tensor])
    print(json.dumps({
        "live": client.is_server_live(), "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("mnist"), "metadata": metadata,
        "labels": result.as_numpy("labels").tolist(), "probabilities": result.as_numpy("probabilities").tolist(),
        "response": {"model_version": result.get_response().model_version, "id": result.get_response().id},
        "unknown_version": unknown_version,
    }))


if __name__ == "__main__":
    main()
