"""A servable model: the network plus the input scaling recorded in its manifest.

``Model.predict_proba`` is the one forward pass that the trainer's evaluation, the API and the
worker all call, so every caller scales raw 0..255 pixels identically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from core.digits import N_PIXELS
from core.explain import Explanation, gradient_x_input
from core.inference import compile_forward
from core.network import Network, softmax

# Rows per pass of a conv net: its activations (a first conv layer's are 10,000+ floats per row) stay
# in cache for 64 rows, and a 1,000-row pass took 2x as long at 256 rows per slice (one BLAS thread).
CONV_ROWS_PER_PASS = 64


@dataclass(frozen=True)
class InputScaling:
    """``scaled = pixels * scale - offset``; the default maps 0..255 onto 0..1 like ``pixels / 255``."""

    scale: float = 1.0 / 255.0
    offset: float = 0.0

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        scaled = np.asarray(pixels, dtype=np.float32) * np.float32(self.scale)
        if self.offset:
            scaled -= np.float32(self.offset)
        return scaled

    def to_json(self) -> dict[str, Any]:
        return {"pixel_range": [0, 255], "scale": self.scale, "offset": self.offset,
                "formula": "pixels * scale - offset"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputScaling:
        return cls(float(data["scale"]), float(data.get("offset", 0.0)))


def class_names_of(manifest: dict[str, Any], n_classes: int = 10) -> list[str] | None:
    """A manifest's top-level ``class_names`` (one string per output, e.g. Fashion-MNIST's
    "T-shirt/top"), or None when it has none or they do not fit ``n_classes`` outputs."""
    names = manifest.get("class_names")
    if isinstance(names, list) and len(names) == n_classes and all(isinstance(n, str) for n in names):
        return names
    return None


def platform_of(architecture: list[dict[str, Any]] | None) -> str:
    """What runs a manifest's layer stack, as V2 metadata's ``platform`` says it: ``numpy-mlp``
    (dense layers only, and manifests without an architecture), ``numpy-cnn`` (with convolutions)
    or ``numpy-net`` (any other stack)."""
    kinds = {layer.get("type") for layer in architecture or []}
    if kinds <= {"dense", "relu", "dropout"}:
        return "numpy-mlp"
    return "numpy-cnn" if "conv2d" in kinds else "numpy-net"


@dataclass
class Model:
    """A loaded model version: ``predict_proba`` takes raw pixels (n, 784) in 0..255."""

    network: Network
    scaling: InputScaling = field(default_factory=InputScaling)
    name: str = "mnist"
    version: int | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    # Large batches run in slices so the hidden activations of one slice stay cache- and
    # memory-friendly; the result is the same as one pass over all rows.
    max_rows_per_pass: int = 8192

    def __post_init__(self) -> None:
        if not self.network.is_mlp:
            self.max_rows_per_pass = min(self.max_rows_per_pass, CONV_ROWS_PER_PASS)

    @cached_property  # the manifest never changes once loaded, and V1 reads this per request
    def class_names(self) -> list[str] | None:
        """The manifest's ``class_names`` (see ``class_names_of``) for this network's outputs."""
        layers = self.network.trainable_layers
        return class_names_of(self.manifest, int(layers[-1].weights.shape[1]) if layers else 0)

    @property
    def platform(self) -> str:
        return platform_of(self.network.architecture())

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels)
        if pixels.ndim != 2 or pixels.shape[1] != N_PIXELS:
            raise ValueError(f"expected pixels of shape (n, {N_PIXELS}), got {pixels.shape}")
        if len(pixels) <= self.max_rows_per_pass:
            return softmax(self._forward(self.scaling.apply(pixels)))
        return np.concatenate([softmax(self._forward(self.scaling.apply(pixels[i:i + self.max_rows_per_pass])))
                               for i in range(0, len(pixels), self.max_rows_per_pass)])

    @cached_property
    def _forward(self) -> Callable[[np.ndarray], np.ndarray]:
        """The network's inference-only forward pass (``core.inference``), built on the first
        prediction: from then on the weights are the version's, and never change."""
        return compile_forward(self.network)

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 (n,), probabilities float32 (n, 10))."""
        probabilities = self.predict_proba(pixels)
        return probabilities.argmax(axis=1).astype(np.int64), probabilities

    def explain(self, pixels: np.ndarray, classes: np.ndarray | None = None) -> Explanation:
        """Gradient x input attributions (n, 784) of raw pixels (n, 784) in 0..255 to each row's
        predicted (or given) class logit, through this model's input scaling (``core.explain``).

        Safe beside concurrent ``predict`` calls on this model: the pass runs on a private copy of
        the layers. Rows go in slices of ``max_rows_per_pass``, as predictions do.
        """
        pixels = np.asarray(pixels)
        if pixels.ndim != 2 or pixels.shape[1] != N_PIXELS:
            raise ValueError(f"expected pixels of shape (n, {N_PIXELS}), got {pixels.shape}")
        step = self.max_rows_per_pass
        parts = [gradient_x_input(self.network, pixels[i:i + step], self.scaling.scale, self.scaling.offset,
                                  None if classes is None else np.asarray(classes)[i:i + step])
                 for i in range(0, max(len(pixels), 1), step)]
        if len(parts) == 1:
            return parts[0]
        return Explanation(*(np.concatenate([getattr(p, f) for p in parts])
                             for f in ("labels", "probabilities", "logits", "attributions")))
