"""Per model and version inference statistics, server-wide, in Triton's statistics shape.

The metrics hook (``service.metrics``) observes each inference request (V1 ``:predict`` and
``:predict_image``, V2 ``infer``; ``:explain`` is not an inference here) into two metric
families that ``/metrics`` exposes too: ``mnist_inference_request_duration_seconds`` (a summary:
count and sum, by model, version and outcome ``success``/``fail``) and
``mnist_inference_last_timestamp_seconds`` (the newest success, max over the workers). With the
predicted rows of ``mnist_predictions_total`` they give Triton's ``model_stats``. They are read
from the same source as ``/metrics`` (every gunicorn worker's files in multiprocess mode), so the
answer is the server's whatever worker gives it.

What Triton measures and this server does not (queueing, input/compute/output phases, the response
cache, dynamic batches) is reported as zeros.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import Gauge, Summary
from prometheus_client.registry import Collector

from core.registry import is_decimal
from core.serving import Predictor

INFERENCE = Summary("mnist_inference_request_duration_seconds",
                    "Inference requests (V1 :predict, :predict_image, V2 infer) by model, version and outcome",
                    ["model", "version", "outcome"])
LAST_INFERENCE = Gauge("mnist_inference_last_timestamp_seconds", "Unix time of the newest successful inference",
                       ["model", "version"], multiprocess_mode="max")
PREDICTIONS_FAMILY = "mnist_predictions"  # service.metrics.PREDICTIONS: the rows predicted per version
# The Flask endpoints whose requests are inferences (statistics), by their blueprint's names.
INFERENCE_ENDPOINTS = frozenset({f"v1.{verb}{form}" for verb in ("predict", "predict_image")
                                 for form in ("", "_version", "_label")} | {"v2.infer", "v2.infer_version"})
_UNMEASURED = ("queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")
_children: dict[tuple[str, int, bool], tuple[Any, Any]] = {}


def observe(model: str, version: int, success: bool, seconds: float) -> None:
    """One inference request: two adds to the summary, and on success the newest-inference time."""
    key = (model, version, success)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (INFERENCE.labels(model, str(version), "success" if success else "fail"),
                                     LAST_INFERENCE.labels(model, str(version)))
    summary, last = children
    summary.observe(seconds)
    if success:
        last.set(time.time())


def target_version(predictor: Predictor, view_args: dict[str, Any]) -> int | None:
    """The version a refused request was for, when this process holds it (no I/O, no lock): the URL's
    version, else what its alias or production resolves to here. None: not counted (an unknown
    version, or nothing resolved yet), so clients cannot mint label values."""
    raw = view_args.get("version")
    if raw is not None:
        return predictor.held_version(int(raw), None) if is_decimal(raw) else None
    return predictor.held_version(None, view_args.get("alias"))


def _empty() -> dict[str, Any]:
    return {"last_inference": 0, "inference_count": 0, "success": [0, 0.0], "fail": [0, 0.0]}


def collect(source: Collector) -> dict[tuple[str, str], dict[str, Any]]:
    """(model, version) -> counts, durations and the newest inference, from every worker's samples."""
    stats: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(labels: dict[str, str]) -> dict[str, Any]:
        return stats.setdefault((labels["model"], labels["version"]), _empty())

    for family in source.collect():
        if family.name == INFERENCE._name:
            for sample in family.samples:
                slot = 0 if sample.name.endswith("_count") else 1 if sample.name.endswith("_sum") else None
                if slot is not None:
                    entry(sample.labels)[sample.labels["outcome"]][slot] += sample.value
        elif family.name == LAST_INFERENCE._name:
            for sample in family.samples:
                item = entry(sample.labels)
                item["last_inference"] = max(item["last_inference"], int(sample.value * 1000))
        elif family.name == PREDICTIONS_FAMILY:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    entry(sample.labels)["inference_count"] += int(sample.value)
    return stats


def model_stats(collected: dict[tuple[str, str], dict[str, Any]], targets: Iterable[tuple[str, int]]
                ) -> list[dict[str, Any]]:
    """Triton's ``model_stats`` entries for ``targets`` (model, version), zeros for what never ran."""
    entries = []
    for name, version in targets:
        item = collected.get((name, str(version))) or _empty()
        success, fail = item["success"], item["fail"]
        inference_stats = {"success": {"count": int(success[0]), "ns": int(success[1] * 1e9)},
                           "fail": {"count": int(fail[0]), "ns": int(fail[1] * 1e9)},
                           **{phase: {"count": 0, "ns": 0} for phase in _UNMEASURED}}
        entries.append({"name": name, "version": str(version), "last_inference": item["last_inference"],
                        "inference_count": item["inference_count"], "execution_count": int(success[0]),
                        "inference_stats": inference_stats, "batch_stats": []})
    return entries
