"""The one inference path under every protocol: resolve the model, one forward pass, metrics.

V1 (``service.v1``) and V2 (``service.v2``) only decode a request into an (n, 784) pixel
array, call ``infer`` and encode the ``InferenceResult``, as KServe's dataplane sits under its
V1 and V2 protocol modules. So what is predicted, which version answers, what the metrics count
and what the access log names are decided here once, whatever the protocol.

Errors are Flask-free: ``ServiceError`` (unknown model, from ``service.targets``) and the registry's own
``RegistryError`` (unknown version or alias 404, nothing published 503), both mapped to
``{"error": ...}`` by the one handler in ``service.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flask import g

from core.model import Model
from service import batching
from service.metrics import record_predictions
from service.targets import predictor_of


@dataclass(frozen=True)
class InferenceResult:
    """One forward pass over a batch, and the model version that made it."""

    labels: np.ndarray  # (n,) int64, the predicted digit per row
    probabilities: np.ndarray  # (n, 10) float32, softmax over the digits per row
    model_name: str
    version: int
    class_names: list[str] | None  # the manifest's name per label, when it names its classes


def resolve(model_name: str, version: int | None = None, alias: str | None = None) -> Model:
    """The model for an explicit version, an alias, or (neither) production, loaded and cached.

    Raises 404 for a model name this server does not serve and ``RegistryError`` for an unknown
    version or alias (404) or when nothing is published yet (503).
    """
    return predictor_of(model_name).get(version, alias)


def infer(model_name: str, version: int | None, alias: str | None, pixels: np.ndarray) -> InferenceResult:
    """One forward pass of ``pixels`` (n, 784) in 0..255 through one model reference.

    The model is taken once and used to the end, so a hot swap between requests never mixes two
    versions inside one response. With ``MAX_BATCH_SIZE`` > 1 the pass may be shared with
    concurrent requests for the same model object (``service.batching``): this caller still gets
    exactly its rows, from that version. The access log (``service.metrics``) names the version that
    answered, and the predicted digits are counted per model version.
    """
    model = resolve(model_name, version, alias)
    labels, probabilities = batching.predict(model, pixels)
    g.model_version = model.version
    record_predictions(model.name, model.version, labels)
    return InferenceResult(labels, probabilities, model.name, model.version, model.class_names)
