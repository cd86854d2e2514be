"""MLServer on mnist-serve's production weights (run in ``.venv-peers/mlserver``).

``python -m bench.peers_mlserver HTTP_PORT GRPC_PORT MODELS_DIR WORKERS``: a custom runtime (MLServer's
extension point, ``mlserver.MLModel``) with the same input check and forward pass as the other
servers of bench/peers.py, served over V2 REST and V2 gRPC by ``mlserver start`` on a model
folder written here; ``WORKERS`` is MLServer's ``parallel_workers`` (inference processes behind its
one HTTP/gRPC front process).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

from bench.peers import check_instances, load_production


class Mnist(MLModel):
    async def load(self) -> bool:
        self.model: Any = load_production(os.environ["MODELS_DIR"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        pixels = check_instances(NumpyCodec.decode_input(payload.inputs[0]))
        labels, probabilities = self.model.predict(pixels)
        outputs = [NumpyCodec.encode_output("probabilities", np.asarray(probabilities, "<f4")),
                   NumpyCodec.encode_output("labels", np.asarray(labels, "<i8"))]
        return InferenceResponse(id=payload.id, model_name=self.name, outputs=outputs)


def main() -> None:
    http_port, grpc_port, models_dir, workers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    folder = Path(tempfile.mkdtemp(prefix="peers-mlserver-"))
    with socket.socket() as sock:  # its Prometheus endpoint (on by default) on a free port of its own
        sock.bind(("127.0.0.1", 0))
        metrics_port = sock.getsockname()[1]
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": int(http_port), "grpc_port": int(grpc_port),
        "parallel_workers": int(workers), "metrics_port": metrics_port, "load_models_at_startup": True}))
    (folder / "mnist").mkdir()
    (folder / "mnist" / "model-settings.json").write_text(json.dumps(
        {"name": "mnist", "implementation": "bench.peers_mlserver.Mnist"}))
    os.environ["MODELS_DIR"] = models_dir
    os.execv(sys.executable, [sys.executable, "-c", "from mlserver.cli.main import main; main()",
                              "start", str(folder)])


if __name__ == "__main__":
    main()
