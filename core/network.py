"""The from-scratch neural network: dense layers, ReLU, dropout, softmax and cross-entropy.

Weights are shaped ``(n_inputs, n_neurons)`` (as in NNFS) so a batch of rows flows through
``inputs @ W + b`` with no transposes, and each layer keeps its forward and backward pass side
by side. Everything is float32 unless a caller asks for float64 (the gradient checks do).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.conv import Conv2D, Flatten, MaxPool2D, Reshape

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


Layer = Dense | ReLU | Dropout | Conv2D | MaxPool2D | Flatten | Reshape
# Layers with weights and biases: what the optimizers step and the weights file stores. Both
# keep ``(fan_in, n_out)`` weights, so one optimizer update and one file naming fit either.
PARAMETRIC = (Dense, Conv2D)


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

    @classmethod
    def cnn(cls, channels: Sequence[int] = (32, 64), kernel: int = 3, hidden: Sequence[int] = (128,),
            image: tuple[int, int, int] = (28, 28, 1), n_classes: int = 10, dropout: float = 0.0,
            init: str = "he", seed: int = 0, dtype: type = np.float32) -> Network:
        """Reshape, then (Conv2D 'valid' - MaxPool2D(2) - ReLU) per entry of ``channels``, Flatten,
        then Dense-ReLU-(Dropout) per ``hidden`` width and a Dense to ``n_classes`` logits.

        The pool comes before the ReLU: max and ReLU commute (both orders give the same outputs
        and the same gradients), and this way the ReLU and its mask touch a quarter of the values."""
        rng = np.random.default_rng(seed)
        height, width, in_channels = image
        layers: list[Layer] = [Reshape(image)]
        for out_channels in channels:
            layers += [Conv2D(in_channels, out_channels, kernel, rng=rng, init=init, dtype=dtype), MaxPool2D(2),
                       ReLU()]
            height, width, in_channels = (height - kernel + 1) // 2, (width - kernel + 1) // 2, out_channels
            if height < 1 or width < 1:
                raise ValueError(f"{len(channels)} conv blocks of kernel {kernel} shrink {image[:2]} to nothing")
        layers.append(Flatten())
        n_in = height * width * in_channels
        for n_out in hidden:
            layers += [Dense(n_in, n_out, rng, init=init, dtype=dtype), ReLU()]
            if dropout > 0:
                layers.append(Dropout(dropout, rng))
            n_in = n_out
        layers.append(Dense(n_in, n_classes, rng, init=init, dtype=dtype))
        return cls(layers)

    @property
    def dense_layers(self) -> list[Dense]:
        return [layer for layer in self.layers if isinstance(layer, Dense)]

    @property
    def is_mlp(self) -> bool:
        """Dense, ReLU and Dropout only: the networks every earlier version of this code wrote."""
        return all(isinstance(layer, Dense | ReLU | Dropout) for layer in self.layers)

    @property
    def trainable_layers(self) -> list[Dense | Conv2D]:
        """Every layer with weights and biases, in order: what an optimizer's ``step`` takes."""
        return [layer for layer in self.layers if isinstance(layer, PARAMETRIC)]

    def forward(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        out = inputs
        for layer in self.layers:
            out = layer.forward(out, training)
        return out

    def backward(self, dlogits: np.ndarray, input_gradient: bool = True) -> np.ndarray | None:
        """Backpropagate ``dL/dlogits``; returns ``dL/dinputs`` unless ``input_gradient`` is False
        (training passes False: only the parameters' gradients are needed there)."""
        grad: np.ndarray | None = dlogits
        # Below the first layer with weights (e.g. a conv net's Reshape) there is nothing to train.
        first = next((i for i, layer in enumerate(self.layers) if isinstance(layer, PARAMETRIC)), 0)
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            if index == first and not input_gradient:
                return layer.backward(grad, False) if isinstance(layer, PARAMETRIC) else None
            grad = layer.backward(grad)
        return grad

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` for already-scaled inputs ``(n, n_inputs)``."""
        return softmax(self.forward(inputs, training=False))

    # -- serialisation: architecture as JSON-able specs, parameters as named float32 arrays --

    def architecture(self) -> list[dict[str, Any]]:
        return [layer.spec() for layer in self.layers]

    def arrays(self) -> dict[str, np.ndarray]:
        """``dense0_weights``, ``dense0_biases``, ... and ``conv2d0_weights``, ...: numbered per
        layer type, so an MLP's file keeps the names it always had."""
        arrays: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for layer in self.trainable_layers:
            index = counts[layer.kind] = counts.get(layer.kind, -1) + 1
            arrays[f"{layer.kind}{index}_weights"] = layer.weights
            arrays[f"{layer.kind}{index}_biases"] = layer.biases
        return arrays

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Copy ``arrays`` (named as ``arrays()`` names them, e.g. a snapshot of an earlier epoch)
        into this network's own arrays, in place, so whatever holds the layers keeps holding them."""
        for key, target in self.arrays().items():
            target[...] = arrays[key]

    @classmethod
    def from_arrays(cls, architecture: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> Network:
        """Rebuild a network from its specs and weights, checking every shape against the specs."""
        layers: list[Layer] = []
        counts: dict[str, int] = {}
        for spec in architecture:
            layer = _layer_from_spec(spec)
            if isinstance(layer, PARAMETRIC):
                index = counts[layer.kind] = counts.get(layer.kind, -1) + 1
                for attr in ("weights", "biases"):
                    key = f"{layer.kind}{index}_{attr}"
                    if key not in arrays:
                        raise ValueError(f"weights file has no array {key!r}")
                    value = np.asarray(arrays[key], dtype=np.float32)
                    if value.shape != getattr(layer, attr).shape:
                        raise ValueError(f"array {key!r} has shape {value.shape}, "
                                         f"architecture says {getattr(layer, attr).shape}")
                    setattr(layer, attr, value)
            layers.append(layer)
        return cls(layers)


def _layer_from_spec(spec: dict[str, Any]) -> Layer:
    """One layer, freshly initialised, from its ``spec()`` (weights are loaded by the caller)."""
    kind = spec.get("type")
    if kind == "dense":
        return Dense(int(spec["n_inputs"]), int(spec["n_neurons"]))
    if kind == "relu":
        return ReLU()
    if kind == "dropout":
        return Dropout(float(spec["rate"]))
    if kind == "conv2d":
        return Conv2D(int(spec["in_channels"]), int(spec["out_channels"]), int(spec["kernel"]),
                      int(spec.get("stride", 1)), int(spec.get("padding", 0)))
    if kind == "maxpool2d":
        return MaxPool2D(int(spec.get("size", 2)))
    if kind == "flatten":
        return Flatten()
    if kind == "reshape":
        return Reshape(spec["shape"])
    raise ValueError(f"unknown layer type {kind!r} in architecture")
