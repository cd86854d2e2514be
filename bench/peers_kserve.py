"""KServe's Python model server on mnist-serve's production weights (run in ``.venv-peers/kserve``).

``python -m bench.peers_kserve HTTP_PORT GRPC_PORT MODELS_DIR WORKERS``. The model class is at
module level: KServe starts its workers with multiprocessing's spawn, which pickles the model.
REST V1 (``{"instances": ...}``) and, with ``--enable_grpc``'s equivalent, the V2 gRPC protocol,
whose ``InferRequest`` arrives decoded; raw inputs are answered with raw outputs, as ours are.
"""

from __future__ import annotations

import sys
from typing import Any

import kserve
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse

from bench.peers import check_instances, load_production, predictions


class Mnist(kserve.Model):
    """The same forward pass and input check as the other servers of bench/peers.py."""

    def __init__(self, name: str, models_dir: str) -> None:
        super().__init__(name)
        self.models_dir = models_dir
        self.model: Any = None

    def load(self) -> bool:
        self.model = load_production(self.models_dir)
        self.ready = True
        return True

    def predict(self, payload: dict | InferRequest, headers: dict | None = None) -> dict | InferResponse:
        try:
            if isinstance(payload, InferRequest):
                return self._infer(payload)
            return predictions(self.model, payload["instances"])
        except (ValueError, KeyError, TypeError) as exc:
            raise kserve.errors.InvalidInput(str(exc)) from None

    def _infer(self, request: InferRequest) -> InferResponse:
        labels, probabilities = self.model.predict(check_instances(request.inputs[0].as_numpy()))
        outputs = []
        for name, array, datatype in (("probabilities", np.asarray(probabilities, "<f4"), "FP32"),
                                      ("labels", np.asarray(labels, "<i8"), "INT64")):
            output = InferOutput(name, list(array.shape), datatype)
            output.set_data_from_numpy(array, binary_data=request.use_binary_outputs)  # KServe's documented way
            outputs.append(output)
        return InferResponse(request.id, self.name, outputs, from_grpc=request.from_grpc,
                             use_binary_outputs=request.use_binary_outputs)


if __name__ == "__main__":
    http_port, grpc_port, models_dir, workers = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    model = Mnist("mnist", models_dir)
    model.load()
    # KServe's defaults otherwise (its access and latency logs stay on, as ours do)
    kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, workers=workers, enable_grpc=True).start([model])
