"""Explanations: which pixels pushed a prediction towards its class (gradient x input).

For one row of raw pixels ``x`` (0..255) the model computes ``z = f(x * scale - offset)``, ten
logits. The attribution of pixel ``i`` to class ``c`` is ``x_i * dz_c/dx_i``: the first-order
share of the class score that pixel carries (exact for a linear model, where the attributions sum
to ``z_c`` minus the blank image's ``z_c``). The gradient is the logit's, not the probability's: softmax
saturates for confident answers and would flatten the map to nothing.

``dz_c/dx`` comes from the network's own backward pass, seeded with a one-hot ``dL/dz``: the same
layer code that trains the model, asked for the input gradient that training skips. Rows are
independent (no layer mixes them), so one backward pass of a batch gives every row's gradient.

Layers cache what their backward pass needs on ``self`` during a training-mode forward pass, and
the API's threads share one loaded ``Model``. So the pass runs on a private copy of the layer
objects (sharing the weight arrays, read-only): concurrent predictions and explanations never
see each other's caches, and nothing is locked. The copy is a handful of Python objects; a
lock around one shared copy would serialise explanations for no measurable saving.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from core.network import PARAMETRIC, Dropout, Network, softmax

METHOD = "gradient_x_input"


@dataclass(frozen=True)
class Explanation:
    """Per row: the predicted (or asked-for) class, the probabilities and the attribution map."""

    labels: np.ndarray  # (n,) int64, the class each map explains
    probabilities: np.ndarray  # (n, n_classes), softmax of the logits
    logits: np.ndarray  # (n, n_classes)
    attributions: np.ndarray  # (n, n_inputs), in the network's dtype


def private_copy(network: Network) -> Network:
    """The same weights in fresh layer objects, so a training-mode pass caches nothing on shared layers.

    Dropout is dropped: at inference it is the identity, and in training mode it would drop units.
    Each parametric copy gets its own (empty) gradient buffers, which its backward pass allocates,
    instead of writing into the original's ``dweights``.
    """
    layers = []
    for layer in network.layers:
        if isinstance(layer, Dropout):
            continue
        clone = copy.copy(layer)
        if isinstance(clone, PARAMETRIC):
            clone.dweights = np.empty(0, dtype=clone.weights.dtype)
            clone.dbiases = np.empty(0, dtype=clone.biases.dtype)
        layers.append(clone)
    return Network(layers)


def gradient_x_input(network: Network, pixels: np.ndarray, scale: float, offset: float = 0.0,
                     classes: np.ndarray | None = None) -> Explanation:
    """Attributions of raw ``pixels`` (n, n_inputs) to each row's class logit, through the input scaling.

    ``classes`` (n,) picks the class per row; by default the predicted one. The arithmetic runs in
    the network's dtype (float32 when served, float64 in the gradient checks).
    """
    dtype = network.trainable_layers[0].weights.dtype
    raw = np.asarray(pixels, dtype=dtype)
    if raw.ndim != 2:
        raise ValueError(f"expected pixels of shape (n, n_inputs), got {raw.shape}")
    scaled = raw * dtype.type(scale)
    if offset:
        scaled -= dtype.type(offset)
    net = private_copy(network)
    logits = net.forward(scaled, training=True)
    labels = logits.argmax(axis=1) if classes is None else np.asarray(classes, dtype=np.int64)
    if labels.shape != (len(raw),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= logits.shape[1]:
        raise ValueError(f"classes must be {len(raw)} indices below {logits.shape[1]}")
    seed = np.zeros_like(logits)
    seed[np.arange(len(raw)), labels] = 1  # dL/dz = onehot(c): the backward pass yields dz_c/d(scaled)
    dscaled = net.backward(seed, input_gradient=True)
    # Chain rule through scaled = raw * scale - offset, then gradient x input in raw pixel units.
    attributions = dscaled.reshape(raw.shape) * dtype.type(scale) * raw
    return Explanation(labels.astype(np.int64), softmax(logits), logits, attributions)
