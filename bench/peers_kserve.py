"""KServe's Python model server on mnist-serve's production weights (run by the peers virtualenv).

``.venv-peers/bin/python -m bench.peers_kserve PORT MODELS_DIR WORKERS``. The model class is at
module level: KServe starts its workers with multiprocessing's spawn, which pickles the model.
"""

from __future__ import annotations

import sys
from typing import Any

import kserve

from bench.peers import load_production, predictions


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

    def predict(self, payload: dict, headers: dict | None = None) -> dict:
        try:
            return predictions(self.model, payload["instances"])
        except (ValueError, KeyError, TypeError) as exc:
            raise kserve.errors.InvalidInput(str(exc)) from None


if __name__ == "__main__":
    port, models_dir, workers = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    model = Mnist("mnist", models_dir)
    model.load()
    # KServe's defaults otherwise (its access and latency logs stay on, as ours do)
    kserve.ModelServer(http_port=port, workers=workers, enable_grpc=False).start([model])
