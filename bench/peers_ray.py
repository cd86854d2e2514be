"""Ray Serve on mnist-serve's production weights (run in ``.venv-peers/ray``).

``python -m bench.peers_ray HTTP_PORT MODELS_DIR REPLICAS``: a local Ray cluster (2 CPUs, no
dashboard) and one deployment of ``REPLICAS`` replicas behind Ray Serve's HTTP proxy, answering
``POST /v1/models/mnist:predict`` with the same input check, forward pass and JSON as the bare floor.
SIGTERM shuts Serve and the cluster down (the processes ``ray.init`` started).
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import orjson
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from bench.peers import load_production, predictions


@serve.deployment
class Mnist:
    def __init__(self, models_dir: str) -> None:
        self.model: Any = load_production(models_dir)

    async def __call__(self, request: Request) -> Response:
        try:
            body = predictions(self.model, orjson.loads(await request.body())["instances"])
        except (ValueError, KeyError, TypeError) as exc:
            return Response(orjson.dumps({"error": str(exc)}), 400, media_type="application/json")
        return Response(orjson.dumps(body), media_type="application/json")


def main() -> None:
    port, models_dir, replicas = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # atexit then stops Serve and the cluster
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Mnist.options(num_replicas=replicas).bind(models_dir), route_prefix="/v1/models/mnist:predict")
    print(f"ray serve: {replicas} replicas on 127.0.0.1:{port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
