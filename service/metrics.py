"""Prometheus metrics (gunicorn multiprocess mode), structured access logs and ``/metrics``.

Under gunicorn, ``deploy/gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker
imports prometheus_client, so every worker writes its samples to mmap files there and
``/metrics`` (answered by whichever worker) aggregates all of them. Without that variable (a
plain ``create_app()`` in one process) the default in-process registry is used.

The metric objects are module level because prometheus_client registers them by name once
per process; the app factory only attaches the request hooks.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np
import orjson
from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from service.state import get_state

REQUESTS = Counter("mnist_http_requests_total", "HTTP requests answered", ["endpoint", "method", "status"])
LATENCY = Histogram("mnist_http_request_duration_seconds", "Time from request start to response",
                    ["endpoint", "method", "status"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
PREDICTIONS = Counter("mnist_predictions_total", "Predicted digits by class", ["model", "version", "label"])
MODEL_VERSION = Gauge("mnist_model_version_served", "Production version held by each worker", ["model"],
                      multiprocess_mode="liveall")

access_log = logging.getLogger("mnist_serve.access")
blueprint = Blueprint("metrics", __name__)


def record_predictions(model: str, version: int | None, labels: np.ndarray) -> None:
    counts = np.bincount(labels, minlength=10)
    for label in np.flatnonzero(counts):
        PREDICTIONS.labels(model, str(version), str(label)).inc(int(counts[label]))


@blueprint.get("/metrics")
def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _configure_access_log() -> None:
    # One JSON object per line on stderr (gunicorn passes it through to its log): machine
    # readable without a parser for gunicorn's access-log format.
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False


def install(app: Flask) -> None:
    """Timing, metrics and access-log hooks around every request."""
    _configure_access_log()
    last_version: dict[str, int | None] = {"value": None}

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        status = str(response.status_code)
        REQUESTS.labels(endpoint, request.method, status).inc()
        LATENCY.labels(endpoint, request.method, status).observe(elapsed)
        response.headers["Server-Timing"] = f"app;dur={elapsed * 1000:.2f}"
        state = get_state()
        served = state.predictor.loaded_version()
        if served is not None and served != last_version["value"]:
            MODEL_VERSION.labels(state.settings.model_name).set(served)
            last_version["value"] = served
        access_log.info(orjson.dumps({
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "event": "access",
            "remote": request.remote_addr, "method": request.method, "path": request.path,
            "endpoint": endpoint, "status": response.status_code, "duration_ms": round(elapsed * 1000, 2),
            "bytes_in": request.content_length or 0, "bytes_out": response.calculate_content_length(),
            "model_version": g.get("model_version"), "pid": os.getpid(),
        }).decode())
        return response
