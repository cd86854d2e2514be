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
  runs as a banded ("Toeplitz") matrix over strips of image rows instead: a band of k + 1 input rows
  and a few columns makes all four pool positions of two pooled outputs in one product. That does more
  multiplications (by the matrix's zeros) but runs faster than either im2col or whole-row bands.
- ``Dense`` then ``ReLU`` is one step with the bias added and the ReLU taken in place; ``Dropout``
  is the identity.

``compile_forward`` builds the steps from the network's weights once: a served version's weights
never change after loading (``core.model.Model`` compiles it lazily on the first prediction). The
result equals ``Network.forward(x, training=False)`` to float32 rounding (tests/test_inference.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from core.conv import Conv2D, Flatten, MaxPool2D, Reshape
from core.network import Dense, Dropout, Layer, Network, ReLU

Step = Callable[[np.ndarray], np.ndarray]

# A conv with at most this many input values per window (k * k * in_channels) runs as a banded
# matrix over image rows (see the module docstring): 9 for a 3x3 one-channel first layer.
_BANDED_MAX_WINDOW = 16
# Pooled columns per band: 2 timed fastest for a 3x3x1 first layer over 64 rows (1, 3 and 7 within
# 15%; whole rows, 13, took 1.7x as long).
_BAND_COLUMNS = 2


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
        s_image, s_row, s_column, s_channel = x.strides
        # Every window the pool reads, as a view (2, 2, n, ph, pw, k, k, c): pool row and column offset,
        # image, pooled row and column, kernel row and column, channel. The reshape is the one copy.
        windows = as_strided(x, (2, 2, n, pooled_h, pooled_w, k, k, channels),
                             (s_row, s_column, s_image, 2 * s_row, 2 * s_column, s_row, s_column, s_channel),
                             writeable=False)
        cols = windows.reshape(4 * n * pooled_h * pooled_w, k * k * channels)
        products = (cols @ weights).reshape(4, n, pooled_h, pooled_w, channels_out)
        pooled = np.maximum(products[0], products[1])
        np.maximum(pooled, products[2], out=pooled)
        np.maximum(pooled, products[3], out=pooled)
        return _finish(pooled, biases, relu)

    return step


def _banded_conv_pool(conv: Conv2D, relu: bool) -> Step:
    """The conv and pool as one product over bands of input: for pooled row r and a group of
    ``_BAND_COLUMNS`` pooled columns, the input rows 2r .. 2r + k and the columns those conv outputs
    read, times a banded matrix whose columns are (row offset a, column offset b, pooled column,
    channel) for the conv outputs at (2r + a, 2 * column + b). Narrow bands waste fewer
    multiplications on the matrix's zeros than whole image rows do (2x faster for 3x3x1 kernels)."""
    k, channels_in, channels_out = conv.kernel, conv.in_channels, conv.out_channels
    group = _BAND_COLUMNS
    span = 2 * group + k - 1  # input columns one group of pooled columns reads
    kernels = conv.weights.reshape(k, k, channels_in, channels_out)
    biases = conv.biases.reshape(channels_out)
    band = np.zeros((k + 1, span, channels_in, 2, 2, group, channels_out), dtype=conv.weights.dtype)
    for a in range(2):
        for b in range(2):
            for column in range(group):
                for i in range(k):
                    for j in range(k):
                        band[a + i, 2 * column + b + j, :, a, b, column, :] = kernels[i, j]
    band = band.reshape((k + 1) * span * channels_in, 4 * group * channels_out)

    def step(x: np.ndarray) -> np.ndarray:
        n, height, width, channels = x.shape
        pooled_h, pooled_w = (height - k + 1) // 2, (width - k + 1) // 2
        groups = -(-pooled_w // group)
        needed = 2 * group * groups + k - 1  # columns the last group reads: pad with background
        if needed > width:
            padded = np.zeros((n, height, needed, channels), dtype=x.dtype)
            padded[:, :, :width] = x
            x = padded
        s_image, s_row, s_column, s_channel = x.strides
        # Every band as a view (n, ph, groups, k + 1, span, c): image, pooled row, group of pooled
        # columns, input row and column within the band, channel. The reshape is the one copy.
        bands = as_strided(x, (n, pooled_h, groups, k + 1, span, channels),
                           (s_image, 2 * s_row, 2 * group * s_column, s_row, s_column, s_channel), writeable=False)
        cols = bands.reshape(n * pooled_h * groups, (k + 1) * span * channels)
        products = (cols @ band).reshape(n, pooled_h, groups, 4, group, channels_out)
        pooled = np.maximum(products[:, :, :, 0], products[:, :, :, 1])
        np.maximum(pooled, products[:, :, :, 2], out=pooled)
        np.maximum(pooled, products[:, :, :, 3], out=pooled)
        pooled = pooled.reshape(n, pooled_h, groups * group, channels_out)[:, :, :pooled_w]
        return _finish(pooled, biases, relu)

    return step
