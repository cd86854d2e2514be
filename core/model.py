"""A servable model: the network plus the input scaling recorded in its manifest.

``Model.predict_proba`` is the one forward pass that the trainer's evaluation, the API and the
worker all call, so every caller scales raw 0..255 pixels identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.datasets import N_PIXELS
from core.network import Network


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

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels)
        if pixels.ndim != 2 or pixels.shape[1] != N_PIXELS:
            raise ValueError(f"expected pixels of shape (n, {N_PIXELS}), got {pixels.shape}")
        if len(pixels) <= self.max_rows_per_pass:
            return self.network.predict_proba(self.scaling.apply(pixels))
        return np.concatenate([self.network.predict_proba(self.scaling.apply(pixels[i:i + self.max_rows_per_pass]))
                               for i in range(0, len(pixels), self.max_rows_per_pass)])

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 (n,), probabilities float32 (n, 10))."""
        probabilities = self.predict_proba(pixels)
        return probabilities.argmax(axis=1).astype(np.int64), probabilities
