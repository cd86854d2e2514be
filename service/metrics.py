"""Prometheus metrics (gunicorn multiprocess mode), structured access logs and ``/metrics``.

Under gunicorn, ``deploy/gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker
imports prometheus_client, so every worker writes its samples to mmap files there and
``/metrics`` (answered by whichever worker) aggregates all of them. Without that variable (a
plain ``create_app()`` in one process) the default in-process registry is used.

What a request costs (docs/decisions/0013-cheap-request-metrics-and-access-log.md has the profile
that led here): each mmap
write takes a lock, and ``.labels()`` validates and locks on every call, so

- a timed request (predictions, jobs, admin) observes one histogram: two adds (its bucket and
  its sum); probes (``/healthz``, ``/readyz``, V2 health, ``/metrics``) only count: one add.
  ``mnist_http_requests_total`` is not written per request at all: ``/metrics`` derives it from
  the histogram's ``_count`` plus the probes' counter, with the labels it always had;
- label children are looked up once per label set and kept in a dict;
- the access log line is written for every error and for a configurable share of the
  successes (``ACCESS_LOG_SAMPLE``, default 1: all of them).

The metric objects are module level because prometheus_client registers them by name once
per process; the app factory only attaches the request hooks.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import orjson
from flask import Blueprint, Flask, Response, g, has_request_context, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from core.settings import Settings
from service import inference_stats
from service.access_log import access_log
from service.jobs import queue_metrics
from service.routing import plain_rule
from service.state import STATE_KEY, ServiceState

REQUESTS_NAME = "mnist_http_requests"  # exposed as mnist_http_requests_total
# ``model``: the served model a /v1 or /v2 model URL names ("unknown" for others, empty for other endpoints).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY = Histogram("mnist_http_request_duration_seconds", "Time from request start to response",
                    ["endpoint", "method", "status", "model"], buckets=LATENCY_BUCKETS)
# Requests that are counted but not timed (probes); folded into mnist_http_requests_total by /metrics.
UNTIMED = Counter("mnist_http_untimed_requests", "Probe requests (internal: exposed in mnist_http_requests_total)",
                  ["endpoint", "method", "status", "model"])
# gRPC calls (service.protocols.grpc_v2), by method, status code name and the model a call names.
GRPC_LATENCY = Histogram("mnist_grpc_request_duration_seconds", "Time a gRPC call took in its servicer method",
                         ["method", "code", "model"], buckets=LATENCY_BUCKETS)
PREDICTIONS = Counter("mnist_predictions_total", "Predicted digits by class", ["model", "version", "label"])
MODEL_VERSION = Gauge("mnist_model_version_served", "Production version held by each worker", ["model"],
                      multiprocess_mode="liveall")
# Probes are called by load balancers and orchestrators every few seconds; their latency says
# nothing an operator acts on; a histogram costs two adds per request and 16 series per label set.
UNTIMED_ENDPOINTS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"})

_STARTED = "mnist_serve.started"  # environ key: perf_counter() when the WSGI call began
blueprint = Blueprint("metrics", __name__)
_prediction_children: dict[tuple[str, int | None, int], object] = {}
_grpc_children: dict[tuple[str, str, str], Histogram] = {}


def record_inference(model: str, version: int, labels: np.ndarray | None) -> None:
    """The dataplane's recorder (``service.dataplane.Recorder``) for the HTTP app: the predicted digits
    counted, and the version that answered named in this request's access log line."""
    if labels is not None:
        record_predictions(model, version, labels)
    if has_request_context():
        g.model_version = version


def record_grpc_call(method: str, code: str, model: str, seconds: float, *, version: int | None = None,
                     peer: Callable[[], str] = str, bytes_in: Callable[[], int] = int, sample: float = 1.0) -> None:
    """One gRPC call: timed (its label children kept, as the HTTP requests' are), counted in the
    model version's inference statistics when it was an inference for a version held here, and
    written to the access log as REST requests are (every refusal, ``sample`` of the rest). ``peer``
    and ``bytes_in`` are asked only for a line that is written."""
    key = (method, code, model)
    child = _grpc_children.get(key)
    if child is None:
        child = _grpc_children[key] = GRPC_LATENCY.labels(method, code, model)
    child.observe(seconds)
    ok = code == "OK"
    if method == "ModelInfer" and version is not None:
        inference_stats.observe(model, version, ok, seconds)
    if not ok or sample >= 1.0 or (sample > 0.0 and random.random() < sample):
        access_log.write(orjson.dumps({
            "ts": _grpc_clock.now(), "event": "access", "transport": "grpc", "remote": peer(), "method": "POST",
            "path": f"/inference.GRPCInferenceService/{method}", "endpoint": method, "status": code,
            "duration_ms": round(seconds * 1000, 2), "bytes_in": bytes_in(), "model": model or None,
            "model_version": version, "pid": os.getpid(),
        }).decode())


def record_predictions(model: str, version: int | None, labels: np.ndarray) -> None:
    """Count the predicted digits per model version: one add per distinct digit in the batch."""
    if len(labels) == 1:  # the common single-instance request: no bincount
        _prediction_child(model, version, int(labels[0])).inc()
        return
    counts = np.bincount(labels, minlength=10)
    for label in np.flatnonzero(counts).tolist():
        _prediction_child(model, version, label).inc(int(counts[label]))


def _prediction_child(model: str, version: int | None, label: int) -> Counter:  # a labelled child
    key = (model, version, label)
    child = _prediction_children.get(key)
    if child is None:
        child = _prediction_children[key] = PREDICTIONS.labels(model, str(version), str(label))
    return child


class _RequestTotals(Collector):
    """Everything ``source`` collects, with ``mnist_http_requests_total`` built from the latency
    histogram's ``_count`` samples plus the probes' counter (which itself is not exposed)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        totals: dict[tuple[tuple[str, str], ...], float] = {}
        for family in self.source.collect():
            if family.name == UNTIMED._name:
                _add_samples(totals, (s for s in family.samples if s.name.endswith("_total")))
                continue
            if family.name == LATENCY._name:
                _add_samples(totals, (s for s in family.samples if s.name.endswith("_count")))
            yield family
        requests_family = Metric(REQUESTS_NAME, "HTTP requests answered", "counter")
        for labels, value in sorted(totals.items()):
            requests_family.add_sample(REQUESTS_NAME + "_total", dict(labels), value)
        yield requests_family


def _add_samples(totals: dict[tuple[tuple[str, str], ...], float], samples: Iterable) -> None:
    for sample in samples:
        key = tuple(sorted(sample.labels.items()))
        totals[key] = totals.get(key, 0.0) + sample.value


def metric_source() -> CollectorRegistry:
    """Every worker's samples (multiprocess mode: their files in PROMETHEUS_MULTIPROC_DIR), or this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        source = CollectorRegistry()
        MultiProcessCollector(source)
        return source
    return REGISTRY


def generate_latest() -> bytes:
    """The exposition text of every worker (multiprocess mode) or of this process."""
    exposed = CollectorRegistry(auto_describe=False)
    exposed.register(_RequestTotals(metric_source()))
    return _generate_latest(exposed)


@blueprint.get("/metrics")
def metrics() -> Response:
    # Queue depth, shards in flight and workers: read from Redis at scrape time, whichever worker answers.
    return Response(generate_latest() + queue_metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)


class _Clock:
    """``time.strftime`` of the current second, formatted once per second rather than per request."""

    def __init__(self) -> None:
        self.second, self.text = -1, ""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            self.second, self.text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self.text


_grpc_clock = _Clock()


def install(app: Flask) -> None:
    """Timing, metrics and access-log hooks around every request."""
    access_log.configure()
    state: ServiceState = app.extensions[STATE_KEY]  # built before the hooks: read once, not per request
    settings: Settings = state.settings
    sample, clock = settings.access_log_sample, _Clock()
    # rule -> (its metrics label, a probe (counted, not timed), an inference (per-version statistics))
    endpoints: dict[str | None, tuple[str, bool, bool]] = {None: ("unmatched", False, False)}
    children: dict[tuple[str, str, int, str], object] = {}
    last_version: dict[str, int] = {}

    # The clock starts in the WSGI call itself, before Flask builds the request context (cheaper
    # than a before_request hook, and the context's cost is then part of the figure).
    wsgi_app = app.wsgi_app

    def timed_wsgi_app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        environ[_STARTED] = time.perf_counter()
        return wsgi_app(environ, start_response)

    app.wsgi_app = timed_wsgi_app

    @app.after_request
    def _observe(response: Response) -> Response:
        req = request._get_current_object()  # one context lookup instead of one per attribute
        elapsed = time.perf_counter() - req.environ.get(_STARTED, time.perf_counter())
        url_rule = req.url_rule
        rule = url_rule.rule if url_rule is not None else None
        known = endpoints.get(rule)
        if known is None:
            plain = plain_rule(rule)
            inference = url_rule is not None and url_rule.endpoint in inference_stats.INFERENCE_ENDPOINTS
            known = endpoints[rule] = (plain, plain in UNTIMED_ENDPOINTS, inference)
        endpoint, untimed, inference = known
        method, status = req.method, response.status_code
        model = (req.view_args or {}).get("name", "")
        if model and not state.models.serves(model):
            model = "unknown"  # a name from the URL: bounded to the served ones, whatever clients send
        key = (endpoint, method, status, model)
        child = children.get(key)
        if child is None:
            child = children[key] = (UNTIMED if untimed else LATENCY).labels(endpoint, method, str(status), model)
        if untimed:
            child.inc()
        else:
            child.observe(elapsed)
        if inference and model and model != "unknown":
            version = g.get("model_version")  # set by record_inference once a version has answered
            if version is None:
                version = inference_stats.target_version(state.models.predictor(model), req.view_args or {})
            if version is not None:
                inference_stats.observe(model, version, status < 400, elapsed)
        response.headers["Server-Timing"] = f"app;dur={elapsed * 1000:.2f}"
        for name, predictor in state.models.predictors().items():
            served = predictor.loaded_version()
            if served is not None and served != last_version.get(name):
                MODEL_VERSION.labels(name).set(served)
                last_version[name] = served
        if status >= 400 or sample >= 1.0 or (sample > 0.0 and random.random() < sample):
            access_log.write(orjson.dumps({
                "ts": clock.now(), "event": "access", "remote": req.remote_addr, "method": method,
                "path": req.path, "endpoint": endpoint, "status": status, "duration_ms": round(elapsed * 1000, 2),
                "bytes_in": req.content_length or 0, "bytes_out": response.calculate_content_length(),
                "model_version": g.get("model_version"), "pid": os.getpid(),
            }).decode())
        return response
