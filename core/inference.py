"""The inference-only forward pass: a trained ``Network``'s layers fused into fewer, larger steps.

Training needs every layer's activations for backpropagation; serving needs only the logits, so
the layers can be regrouped into steps that make one big matrix product each and never write the
values the next step throws away:

- ``Conv2D`` (stride 1, no padding), then ``MaxPool2D(2)`` and ``ReLU``, become one step. The conv
  is computed only where the pool reads it, the four positions of each pool window land in four
  contiguous blocks of one matrix product (the pool is then three element-wise maxima of whole
  blocks), and bias and ReLU apply to the pooled quarter of the values (max and ReLU commute, and a
  per-channel bias commutes with max).
- A conv layer with few input values per window (a first layer over one-channel images: 3x3x1 = 9)
  makes a matrix product too thin for BLAS to run fast, and an im2col copy nine times its input. It
  runs as a banded ("Toeplitz") matrix over whole image rows instead: each pooled output row reads
  k + 1 input rows, (k + 1) * width * channels values, and makes all four pool positions of the row in
  one product of a few hundred columns. That does more multiplications (by the matrix's zeros) but
  runs several times faster.
- ``Dense`` then ``ReLU`` is one step with the bias added and the ReLU taken in place; ``Dropout``
  is the identity.

``compile_forward`` builds the steps from the network's weights once: a served version's weights
never change after loading (``core.model.Model`` compiles it lazily on the first prediction). The
result equals ``Network.forward(x, training=False)`` to float32 rounding (tests/test_inference.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from core.conv import Conv2D, Flatten, MaxPool2D, Reshape
from core.network import Dense, Dropout, Layer, Network, ReLU

Step = Callable[[np.ndarray], np.ndarray]

# A conv with at most this many input values per window (k * k * in_channels) runs as a banded
# matrix over image rows (see the module docstring): 9 for a 3x3 one-channel first layer.
_BANDED_MAX_WINDOW = 16


def compile_forward(network: Network) -> Step:
    """A function from scaled inputs ``(n, n_inputs)`` to logits, equal to the network's
    ``forward(x, training=False)``, built from its current weights."""
    steps = _steps(network.layers)

    def forward(inputs: np.ndarray) -> np.ndarray:
        out = inputs
        for step in steps:
            out = step(out)
        return out

    return forward


def _steps(layers: Sequence[Layer]) -> list[Step]:
    steps: list[Step] = []
    index = 0
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1:index + 3]
        relu_next = len(following) > 0 and isinstance(following[0], ReLU)
        if isinstance(layer, Conv2D) and _fusable(layer, following):
            relu = len(following) > 1 and isinstance(following[1], ReLU)
            fused = _banded_conv_pool if layer.kernel * layer.kernel * layer.in_channels <= _BANDED_MAX_WINDOW \
                else _im2col_conv_pool
            steps.append(fused(layer, relu))
            index += 3 if relu else 2
        elif isinstance(layer, Dense):
            steps.append(_dense(layer, relu_next))
            index += 2 if relu_next else 1
        elif isinstance(layer, Dropout):
            index += 1
        elif isinstance(layer, Reshape | Flatten | ReLU | MaxPool2D | Conv2D):
            steps.append(lambda x, layer=layer: layer.forward(x, training=False))
            index += 1
        else:
            raise TypeError(f"no inference step for layer {type(layer).__name__}")
    return steps


def _fusable(conv: Conv2D, following: Sequence[Layer]) -> bool:
    """A stride-1, unpadded conv followed by a 2x2 max pool."""
    return (conv.stride == 1 and conv.padding == 0 and len(following) > 0
            and isinstance(following[0], MaxPool2D) and following[0].size == 2)


def _dense(layer: Dense, relu: bool) -> Step:
    weights, biases = layer.weights, layer.biases

    def step(x: np.ndarray) -> np.ndarray:
        out = x @ weights
        out += biases
        if relu:
            np.maximum(out, 0, out=out)
        return out

    return step


def _finish(pooled: np.ndarray, biases: np.ndarray, relu: bool) -> np.ndarray:
    pooled += biases
    if relu:
        np.maximum(pooled, 0, out=pooled)
    return pooled


def _im2col_conv_pool(conv: Conv2D, relu: bool) -> Step:
    """im2col over the conv positions the pool reads, ordered (pool row offset, pool column
    offset, image, pooled row, pooled column): one matrix product, then the max of 4 blocks."""
    k, channels_out = conv.kernel, conv.out_channels
    weights, biases = conv.weights, conv.biases.reshape(channels_out)

    def step(x: np.ndarray) -> np.ndarray:
        n, height, width, channels = x.shape
        pooled_h, pooled_w = (height - k + 1) // 2, (width - k + 1) // 2
        windows = sliding_window_view(x, (k, k), axis=(1, 2))  # (n, out_h, out_w, c, k, k), a view
        cols = np.empty((2, 2, n, pooled_h, pooled_w, k, k, channels), dtype=x.dtype)
        for a in range(2):
            for b in range(2):
                cols[a, b] = windows[:, a:2 * pooled_h:2, b:2 * pooled_w:2].transpose(0, 1, 2, 4, 5, 3)
        products = (cols.reshape(-1, k * k * channels) @ weights).reshape(4, n, pooled_h, pooled_w, channels_out)
        pooled = np.maximum(products[0], products[1])
        np.maximum(pooled, products[2], out=pooled)
        np.maximum(pooled, products[3], out=pooled)
        return _finish(pooled, biases, relu)

    return step


def _banded_conv_pool(conv: Conv2D, relu: bool) -> Step:
    """The conv and pool as one product per pooled output row: input rows 2r .. 2r + k (all
    columns and channels) times a banded matrix whose columns are (row offset a, column offset b,
    pooled column, channel) for the conv outputs at (2r + a, 2 * column + b)."""
    k, channels_in, channels_out = conv.kernel, conv.in_channels, conv.out_channels
    kernels = conv.weights.reshape(k, k, channels_in, channels_out)
    biases = conv.biases.reshape(channels_out)
    bands: dict[int, np.ndarray] = {}  # by input width: the matrix depends on it

    def band(width: int) -> np.ndarray:
        if width not in bands:
            pooled_w = (width - k + 1) // 2
            matrix = np.zeros((k + 1, width, channels_in, 2, 2, pooled_w, channels_out), dtype=conv.weights.dtype)
            for a in range(2):
                for b in range(2):
                    for column in range(pooled_w):
                        for i in range(k):
                            for j in range(k):
                                matrix[a + i, 2 * column + b + j, :, a, b, column, :] = kernels[i, j]
            bands[width] = matrix.reshape((k + 1) * width * channels_in, 4 * pooled_w * channels_out)
        return bands[width]

    def step(x: np.ndarray) -> np.ndarray:
        n, height, width, channels = x.shape
        pooled_h, pooled_w = (height - k + 1) // 2, (width - k + 1) // 2
        # Rows 2r .. 2r + k of each image: (n, pooled_h, width, c, k + 1), a view; one copy as rows.
        windows = sliding_window_view(x, k + 1, axis=1)[:, 0:2 * pooled_h:2]
        rows = windows.transpose(0, 1, 4, 2, 3).reshape(n * pooled_h, (k + 1) * width * channels)
        products = (rows @ band(width)).reshape(n, pooled_h, 4, pooled_w, channels_out)
        pooled = np.maximum(products[:, :, 0], products[:, :, 1])
        np.maximum(pooled, products[:, :, 2], out=pooled)
        np.maximum(pooled, products[:, :, 3], out=pooled)
        return _finish(pooled, biases, relu)

    return step
