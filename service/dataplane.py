"""The one inference path under every protocol: resolve the model, one forward pass, record it.

V1 (``service.protocols.v1``), V2 (``service.protocols.v2``) and the console only decode a request into an (n, 784)
pixel array, call ``DataPlane.infer`` and encode the ``InferenceResult``, as KServe's and
MLServer's dataplanes sit under their protocol modules. So what is predicted, which version
answers, what the metrics count and what the access log names are decided here once, whatever
the protocol. ``create_app`` builds one per app around the served models, the batcher and a
recorder, and hands it to the protocols through the app's state; it reads no request context,
no app context and no environment, so a gRPC server can hold the same object.

Errors are Flask-free: ``ServiceError`` (an unknown model, 404 naming the served ones) and the
registry's own ``RegistryError`` (unknown version or alias 404, nothing published 503), both
mapped to ``{"error": ...}`` by the one handler in ``service.errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.explain import Explanation
from core.model import Model
from core.serving import ModelSet, Predictor, UnknownModel
from service.batching import Batcher
from service.service_error import ServiceError

# Called once per forward pass: the model's name and version, and the predicted labels (None for
# an explanation). The HTTP app's recorder counts the labels and names the version in the access log.
Recorder = Callable[[str, int, np.ndarray | None], None]


@dataclass(frozen=True)
class InferenceResult:
    """One forward pass over a batch, and the model version that made it."""

    labels: np.ndarray  # (n,) int64, the predicted digit per row
    probabilities: np.ndarray  # (n, 10) float32, softmax over the digits per row
    model_name: str
    version: int
    class_names: list[str] | None  # the manifest's name per label, when it names its classes


class DataPlane:
    def __init__(self, models: ModelSet, batcher: Batcher, record: Recorder) -> None:
        self.models = models
        self.batcher = batcher
        self.record = record

    def predictor(self, name: str) -> Predictor:
        """The served model's predictor; a ``ServiceError`` 404 naming the served models otherwise."""
        try:
            return self.models.predictor(name)
        except UnknownModel as exc:
            raise ServiceError(404, str(exc)) from None

    def model(self, name: str, version: int | None = None, alias: str | None = None) -> Model:
        """The model for an explicit version, an alias, or (neither) production, loaded and cached.

        Raises 404 for a model name this server does not serve and ``RegistryError`` for an unknown
        version or alias (404) or when nothing is published yet (503).
        """
        return self.predictor(name).get(version, alias)

    def infer(self, name: str, version: int | None, alias: str | None, pixels: np.ndarray) -> InferenceResult:
        """One forward pass of ``pixels`` (n, 784) in 0..255 through one model reference.

        The model is taken once and used to the end, so a hot swap between requests never mixes two
        versions inside one response. With ``MAX_BATCH_SIZE`` > 1 the pass may be shared with
        concurrent requests for the same model object (``service.batching``): this caller still gets
        exactly its rows, from that version.
        """
        model = self.model(name, version, alias)
        labels, probabilities = self.batcher.predict(model, pixels)
        self.record(model.name, model.version, labels)
        return InferenceResult(labels, probabilities, model.name, model.version, model.class_names)

    def explain(self, name: str, version: int | None, alias: str | None,
                pixels: np.ndarray) -> tuple[Model, Explanation]:
        """Gradient x input for each row of ``pixels``, from one model reference (not batched)."""
        model = self.model(name, version, alias)
        explanation = model.explain(pixels)
        self.record(model.name, model.version, None)
        return model, explanation
