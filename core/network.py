"""The from-scratch neural network: dense layers, ReLU, dropout, softmax and cross-entropy.

Weights are shaped ``(n_inputs, n_neurons)`` (as in NNFS) so a batch of rows flows through
``inputs @ W + b`` with no transposes, and each layer keeps its forward and backward pass side
by side. Everything is float32 unless a caller asks for float64 (the gradient checks do).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

# Probabilities are clipped before the log so a confident wrong answer costs a large but
# finite loss instead of inf (which would poison the epoch mean).
_LOG_CLIP = 1e-7


class Dense:
    """Fully connected layer: ``outputs = inputs @ weights + biases``."""

    kind = "dense"

    def __init__(self, n_inputs: int, n_neurons: int, rng: np.random.Generator | None = None,
                 init: str = "he", dtype: type = np.float32) -> None:
        rng = rng or np.random.default_rng(0)
        if init == "he":
            # He et al.: variance 2/fan_in keeps ReLU activations from shrinking layer by layer.
            weights = rng.standard_normal((n_inputs, n_neurons)) * np.sqrt(2.0 / n_inputs)
        elif init == "uniform":
            # The tutorial ("seed") network: uniform(-0.5, 0.5) for weights and biases alike.
            weights = rng.uniform(-0.5, 0.5, (n_inputs, n_neurons))
        else:
            raise ValueError(f"unknown init {init!r} (expected 'he' or 'uniform')")
        biases = rng.uniform(-0.5, 0.5, (1, n_neurons)) if init == "uniform" else np.zeros((1, n_neurons))
        self.weights = weights.astype(dtype)
        self.biases = biases.astype(dtype)
        self.dweights = np.zeros_like(self.weights)
        self.dbiases = np.zeros_like(self.biases)
        self.inputs: np.ndarray | None = None

    def forward(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self.inputs = inputs
        outputs = inputs @ self.weights
        outputs += self.biases  # in place: one (batch, n_neurons) array per layer, not two
        return outputs

    def backward(self, dvalues: np.ndarray, input_gradient: bool = True) -> np.ndarray | None:
        """Fill ``dweights``/``dbiases``; return dL/dX unless ``input_gradient`` is False.

        The first layer's input gradient (a gradient with respect to the pixels) is a third of
        that layer's backward work and nobody uses it in training, so the network skips it.
        """
        # dL/dW = X^T dL/dY; dL/db sums over the batch; dL/dX flows back through W^T.
        # The gradient buffers are reused step after step (same shapes), sparing a fresh
        # multi-megabyte allocation, and its page faults, per layer per batch.
        if self.dweights.shape != self.weights.shape or self.dweights.dtype != self.weights.dtype:
            self.dweights = np.empty_like(self.weights)
            self.dbiases = np.empty_like(self.biases)
        np.matmul(self.inputs.T, dvalues, out=self.dweights)
        np.sum(dvalues, axis=0, keepdims=True, out=self.dbiases)
        return dvalues @ self.weights.T if input_gradient else None

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "n_inputs": int(self.weights.shape[0]), "n_neurons": int(self.weights.shape[1])}


class ReLU:
    """``max(0, x)``; its gradient passes where the input was positive and stops elsewhere."""

    kind = "relu"

    def __init__(self) -> None:
        self.mask: np.ndarray | None = None

    def forward(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self.mask = inputs > 0
        return np.maximum(inputs, 0)

    def backward(self, dvalues: np.ndarray) -> np.ndarray:
        return dvalues * self.mask

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind}


class Dropout:
    """Inverted dropout: zero a ``rate`` share of units in training and scale the rest by
    ``1 / (1 - rate)``, so inference is the plain identity and needs no rescaling."""

    kind = "dropout"

    def __init__(self, rate: float, rng: np.random.Generator | None = None) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.rng = rng or np.random.default_rng(0)
        self.scaled_mask: np.ndarray | None = None

    def forward(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        if not training or self.rate == 0.0:
            self.scaled_mask = None
            return inputs
        keep = 1.0 - self.rate
        self.scaled_mask = (self.rng.random(inputs.shape, dtype=np.float32) < keep).astype(inputs.dtype)
        self.scaled_mask /= keep
        return inputs * self.scaled_mask

    def backward(self, dvalues: np.ndarray) -> np.ndarray:
        return dvalues if self.scaled_mask is None else dvalues * self.scaled_mask

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "rate": self.rate}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; subtracting the row max first keeps ``exp`` from overflowing."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean categorical cross-entropy of integer ``labels`` under ``probabilities``."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, _LOG_CLIP, 1.0)).mean())


def softmax_cross_entropy_backward(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Gradient of the mean cross-entropy with respect to the logits.

    Softmax and cross-entropy together differentiate to ``p - onehot(y)``: far cheaper and
    more stable than chaining the softmax Jacobian with ``-1/p``.
    """
    grad = probabilities.copy()
    grad[np.arange(len(labels)), labels] -= 1
    grad /= len(labels)
    return grad


Layer = Dense | ReLU | Dropout


class Network:
    """A stack of layers ending in logits; softmax + cross-entropy sit on top for training."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)

    @classmethod
    def mlp(cls, sizes: Sequence[int], dropout: float = 0.0, init: str = "he",
            seed: int = 0, dtype: type = np.float32) -> Network:
        """``sizes = [784, 256, 10]`` gives Dense-ReLU-(Dropout)-Dense."""
        rng = np.random.default_rng(seed)
        layers: list[Layer] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(Dense(n_in, n_out, rng, init=init, dtype=dtype))
            if i < len(sizes) - 2:
                layers.append(ReLU())
                if dropout > 0:
                    layers.append(Dropout(dropout, rng))
        return cls(layers)

    @property
    def dense_layers(self) -> list[Dense]:
        return [layer for layer in self.layers if isinstance(layer, Dense)]

    def forward(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        out = inputs
        for layer in self.layers:
            out = layer.forward(out, training)
        return out

    def backward(self, dlogits: np.ndarray, input_gradient: bool = True) -> np.ndarray | None:
        """Backpropagate ``dL/dlogits``; returns ``dL/dinputs`` unless ``input_gradient`` is False
        (training passes False: only the parameters' gradients are needed there)."""
        grad: np.ndarray | None = dlogits
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            if index == 0 and isinstance(layer, Dense):
                return layer.backward(grad, input_gradient)
            grad = layer.backward(grad)
        return grad

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` for already-scaled inputs ``(n, n_inputs)``."""
        return softmax(self.forward(inputs, training=False))

    # -- serialisation: architecture as JSON-able specs, parameters as named float32 arrays --

    def architecture(self) -> list[dict[str, Any]]:
        return [layer.spec() for layer in self.layers]

    def arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.dense_layers):
            arrays[f"dense{i}_weights"] = layer.weights
            arrays[f"dense{i}_biases"] = layer.biases
        return arrays

    @classmethod
    def from_arrays(cls, architecture: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> Network:
        """Rebuild a network from its specs and weights, checking every shape against the specs."""
        layers: list[Layer] = []
        dense_index = 0
        for spec in architecture:
            kind = spec.get("type")
            if kind == "dense":
                layer = Dense(int(spec["n_inputs"]), int(spec["n_neurons"]))
                for attr in ("weights", "biases"):
                    key = f"dense{dense_index}_{attr}"
                    if key not in arrays:
                        raise ValueError(f"weights file has no array {key!r}")
                    value = np.asarray(arrays[key], dtype=np.float32)
                    if value.shape != getattr(layer, attr).shape:
                        raise ValueError(f"array {key!r} has shape {value.shape}, "
                                         f"architecture says {getattr(layer, attr).shape}")
                    setattr(layer, attr, value)
                dense_index += 1
                layers.append(layer)
            elif kind == "relu":
                layers.append(ReLU())
            elif kind == "dropout":
                layers.append(Dropout(float(spec["rate"])))
            else:
                raise ValueError(f"unknown layer type {kind!r} in architecture")
        return cls(layers)
