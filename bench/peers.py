"""mnist-serve against its peers, side by side: KServe, MLServer, Ray Serve and a bare Flask floor.

Every server serves the same production weights with the same numpy forward pass
(``core.model.Model``) and the same input check (``check_instances``: shape, finiteness, 0..255):

- mnist-serve under ``deploy/gunicorn.conf.py`` (V1 and V2 over HTTP, V2 over gRPC on one server),
  and optionally another checkout of it (``--repo-before``) for a before/after pair in the same rounds;
- KServe's model server (``kserve.Model`` + ``kserve.ModelServer``: V1 REST and V2 gRPC, 2 workers);
- MLServer (a custom ``mlserver.MLModel`` runtime: V2 REST and V2 gRPC, 2 parallel workers);
- Ray Serve (one deployment of 2 replicas behind its HTTP proxy, answering V1 JSON);
- a bare Flask app under mnist-serve's gunicorn settings (``deploy/gunicorn.conf.py``): parse, check,
  forward, encode, nothing else (no metrics, logs, limits, registry lookups): the floor of our stack.

Each peer lives in a virtualenv of its own under ``.venv-peers/`` (their pins conflict with ours and
with each other), created on first use with the versions in ``PEERS`` and this project's numpy and
orjson; the peers import ``bench.peers`` and ``core`` from this checkout (``PYTHONPATH``). Never
part of the test suite.

The servers run at once but are loaded one at a time, alternating their order round by round;
medians of the rounds. All must agree on the labels of 100 digits before anything is timed.

    .venv/bin/python -m bench.peers [--models-dir DIR] [--rounds 3] [--seconds 3] [--repo-before CHECKOUT]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
PEERS_DIR = REPO / ".venv-peers"
N_PIXELS = 784
# What each peer's virtualenv installs besides numpy and orjson at this project's versions.
PEERS = {
    "kserve": ("kserve==0.21.0",),
    # MLServer 1.7.1's inference workers die at start under uvloop 0.22+ ("There is no current event loop").
    "mlserver": ("mlserver==1.7.1", "uvloop==0.21.0"),
    "ray": ("ray[serve]==2.60.0",),
}


def check_instances(instances: Any) -> np.ndarray:
    """The input check every server here applies: (n, 784) or (n, 28, 28), finite, 0..255."""
    pixels = np.asarray(instances, dtype=np.float32)
    if pixels.ndim == 3 and pixels.shape[1:] == (28, 28):
        pixels = pixels.reshape(len(pixels), N_PIXELS)
    if pixels.ndim != 2 or pixels.shape[1] != N_PIXELS or len(pixels) == 0:
        raise ValueError(f"instances must have shape (n, 784) or (n, 28, 28), got {pixels.shape}")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("instances must be finite pixel values in 0..255")
    return pixels


def load_production(models_dir: str) -> Any:
    from core.registry import ModelRegistry

    return ModelRegistry(Path(models_dir)).load("mnist")


def predictions(model: Any, instances: Any) -> dict[str, Any]:
    labels, probabilities = model.predict(check_instances(instances))
    return {"predictions": [{"label": label, "probabilities": row}
                            for label, row in zip(labels.tolist(), probabilities.tolist(), strict=True)]}


def bare_app() -> Any:
    """``gunicorn "bench.peers:bare_app()"``: the floor, forward pass only (MODELS_DIR from the environment)."""
    from flask import Flask, Response, request

    app, model = Flask("bare"), load_production(os.environ["MODELS_DIR"])

    @app.post("/v1/models/mnist:predict")
    def predict() -> Response:
        try:
            body = predictions(model, orjson.loads(request.get_data())["instances"])
        except (ValueError, KeyError, TypeError) as exc:
            return Response(orjson.dumps({"error": str(exc)}), 400, content_type="application/json")
        return Response(orjson.dumps(body), content_type="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', content_type="application/json")

    one_digit = np.zeros((1, N_PIXELS), dtype=np.float32)

    @app.post("/forward-only")
    def forward_only() -> Response:
        """The body read, one forward pass of a fixed digit, a constant answer: what the model alone
        costs on top of a trivial POST, with no parsing, checking or encoding."""
        request.get_data()
        model.predict(one_digit)
        return Response(b'{"status":"ok"}', content_type="application/json")

    return app


def peer_requirements(peer: str) -> list[str]:
    from importlib.metadata import version

    return [*PEERS[peer], f"numpy=={version('numpy')}", f"orjson=={version('orjson')}"]


def ensure_peer_venv(peer: str) -> Path:
    """The python of ``.venv-peers/PEER``, created (or reinstalled when ``PEERS`` changed) on first use."""
    venv = PEERS_DIR / peer
    python, stamp = venv / "bin" / "python", venv / "installed.txt"
    wanted = "\n".join(peer_requirements(peer))
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        print(f"creating {venv} ({', '.join(PEERS[peer])}): a minute or more", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *peer_requirements(peer)], check=True)
        stamp.write_text(wanted)
    return python


def peer_version(peer: str) -> str:
    """The version of the peer's main package, as its virtualenv reports it."""
    package = PEERS[peer][0].split("[")[0].split("==")[0]
    query = f"from importlib.metadata import version; print(version({package!r}))"
    return subprocess.run([str(ensure_peer_venv(peer)), "-c", query], capture_output=True, text=True,
                          check=True).stdout.strip()


if __name__ == "__main__":
    from bench.peers_run import main

    main()
