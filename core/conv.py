"""Convolutional layers beside ``Dense``: Conv2D (im2col + one matmul), MaxPool2D, Flatten, Reshape.

Images flow as NHWC, ``(n, height, width, channels)``. With channels last, im2col's rows are
``(n * out_h * out_w, k * k * in_channels)`` and ``cols @ W + b`` lands as
``(n * out_h * out_w, out_channels)``, which *is* the NHWC output once reshaped: no transpose
after the matmul in forward, none before it in backward. (NCHW would need one each way.)
The kernel is stored as ``(k * k * in_channels, out_channels)`` - TensorFlow's HWIO kernel
flattened - so a batch of patches flows through ``cols @ W + b`` exactly like rows through Dense.

Each layer keeps the protocol of ``core.network``: ``forward(inputs, training)``,
``backward(dvalues)``, ``spec()``; Conv2D has ``weights``/``biases`` and leaves
``dweights``/``dbiases`` where the optimizers look for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class Conv2D:
    """2-D convolution (cross-correlation, as every framework computes it) over NHWC images."""

    kind = "conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 padding: int | str = 0, rng: np.random.Generator | None = None, init: str = "he",
                 dtype: type = np.float32) -> None:
        if kernel < 1 or stride < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("conv2d needs kernel, stride and channel counts of at least 1")
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if stride != 1 or kernel % 2 == 0:
                raise ValueError("padding 'same' needs stride 1 and an odd kernel")
            padding = (kernel - 1) // 2
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative int, 'valid' or 'same', got {padding!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.stride, self.padding = kernel, stride, padding
        rng = rng or np.random.default_rng(0)
        fan_in = kernel * kernel * in_channels
        if init == "he":
            # He on the patch size: a conv unit sees k*k*in_channels inputs, as a Dense unit sees n_inputs.
            weights = rng.standard_normal((fan_in, out_channels)) * np.sqrt(2.0 / fan_in)
        elif init == "uniform":  # as Dense's tutorial init (weights only: conv biases start at 0)
            weights = rng.uniform(-0.5, 0.5, (fan_in, out_channels))
        else:
            raise ValueError(f"unknown init {init!r} (expected 'he' or 'uniform')")
        self.weights = weights.astype(dtype)
        self.biases = np.zeros((1, out_channels), dtype=dtype)
        self.dweights = np.zeros_like(self.weights)
        self.dbiases = np.zeros_like(self.biases)
        self.cols: np.ndarray | None = None
        self.padded_shape: tuple[int, ...] = ()

    def _im2col(self, inputs: np.ndarray) -> tuple[np.ndarray, int, int]:
        """Patches as rows ``(n * out_h * out_w, k * k * c)``, ordered (kh, kw, c) like the kernel."""
        if inputs.ndim != 4 or inputs.shape[3] != self.in_channels:
            raise ValueError(f"conv2d expects (n, h, w, {self.in_channels}) inputs, got {inputs.shape}")
        p, k, s = self.padding, self.kernel, self.stride
        x = np.pad(inputs, ((0, 0), (p, p), (p, p), (0, 0))) if p else inputs
        self.padded_shape = x.shape
        # A view (no copy) of every k x k window: (n, h-k+1, w-k+1, c, k, k); the stride subsamples it.
        windows = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]
        n, out_h, out_w = windows.shape[:3]
        # The one copy of im2col: (kh, kw, c) innermost keeps each kernel row's k*c values contiguous.
        cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * out_h * out_w, k * k * self.in_channels)
        return cols, out_h, out_w

    def forward(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        cols, out_h, out_w = self._im2col(inputs)
        outputs = cols @ self.weights
        outputs += self.biases
        self.cols = cols if training else None
        return outputs.reshape(len(inputs), out_h, out_w, self.out_channels)

    def backward(self, dvalues: np.ndarray, input_gradient: bool = True) -> np.ndarray | None:
        """As Dense with patches for rows: dW = cols^T dY, db = sum dY, dcols = dY W^T, then col2im."""
        n, out_h, out_w, _ = dvalues.shape
        dflat = dvalues.reshape(-1, self.out_channels)
        if self.dweights.shape != self.weights.shape or self.dweights.dtype != self.weights.dtype:
            self.dweights = np.empty_like(self.weights)
            self.dbiases = np.empty_like(self.biases)
        np.matmul(self.cols.T, dflat, out=self.dweights)
        np.sum(dflat, axis=0, keepdims=True, out=self.dbiases)
        if not input_gradient:
            return None
        k, s, p = self.kernel, self.stride, self.padding
        # col2im: kernel offset (i, j) saw the input shifted by (i, j) and sampled every s pixels, so
        # its share of dX is dY @ W[i, j]^T added back there (overlaps sum up). One small matmul per
        # offset writes a contiguous block; a single dY @ W^T would leave (n, oh, ow, k, k, c) whose
        # per-offset slices are c-float runs k*k*c apart, which the k*k strided adds read slowly
        # (this way col2im took 10-15% less time on 128 digits through 1->32 and 32->64 layers).
        kernels = self.weights.reshape(k, k, self.in_channels, self.out_channels)
        dpadded = np.zeros(self.padded_shape, dtype=dvalues.dtype)
        for i in range(k):
            for j in range(k):
                share = (dflat @ kernels[i, j].T).reshape(n, out_h, out_w, self.in_channels)
                dpadded[:, i:i + s * (out_h - 1) + 1:s, j:j + s * (out_w - 1) + 1:s, :] += share
        if p:
            return dpadded[:, p:-p, p:-p, :]
        return dpadded

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel": self.kernel, "stride": self.stride, "padding": self.padding}


class MaxPool2D:
    """Max over non-overlapping ``size x size`` windows of NHWC images (a ragged edge is dropped,
    as in PyTorch and Keras 'valid'); the gradient goes to each window's (first) maximum only."""

    kind = "maxpool2d"

    def __init__(self, size: int = 2) -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got {size}")
        self.size = size
        self.inputs: np.ndarray | None = None
        self.outputs: np.ndarray | None = None

    def _offsets(self, inputs: np.ndarray) -> list[np.ndarray]:
        """One strided view per position in the window, each ``(n, out_h, out_w, c)``.

        Element-wise maxima of size*size views run several times faster than a ``max`` over the
        window axes of a 6-d reshape, whose reduction walks memory against the layout."""
        q = self.size
        out_h, out_w = inputs.shape[1] // q, inputs.shape[2] // q
        return [inputs[:, a:out_h * q:q, b:out_w * q:q, :] for a in range(q) for b in range(q)]

    def forward(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        views = self._offsets(inputs)
        out = views[0].copy()
        for view in views[1:]:
            np.maximum(out, view, out=out)
        # Training keeps the input and the maxima (references, no copy): backward finds each
        # window's winner as the first position equal to its maximum. That costs a few element-wise
        # passes there instead of a masked argmax here, which timed ~30x slower than the plain max.
        self.inputs, self.outputs = (inputs, out) if training else (None, None)
        return out

    def backward(self, dvalues: np.ndarray) -> np.ndarray:
        # Every position inside the pooled area is written below (a share of dY or 0), so only the
        # ragged edge that forward dropped needs zeroing: one pass over the input size saved.
        dinputs = np.empty(self.inputs.shape, dtype=dvalues.dtype)
        q = self.size
        dinputs[:, dvalues.shape[1] * q:] = 0
        dinputs[:, :, dvalues.shape[2] * q:] = 0
        # The first position equal to the maximum takes the gradient, later equal ones do not, so a
        # tie (say a blank background window, where a conv's outputs all equal its bias, or the zeros
        # a ReLU before the pool leaves) sends it to one input, not four.
        unclaimed = np.ones(dvalues.shape, dtype=bool)
        for view, dview in zip(self._offsets(self.inputs), self._offsets(dinputs), strict=True):
            won = view == self.outputs
            won &= unclaimed
            unclaimed ^= won
            np.multiply(dvalues, won, out=dview)
        return dinputs

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "size": self.size}


class Reshape:
    """Rows to images (or any per-example shape): ``(n, 784)`` -> ``(n, 28, 28, 1)``, so a conv
    network takes the same ``(n, 784)`` input the API hands every model."""

    kind = "reshape"

    def __init__(self, shape: tuple[int, ...] | list[int]) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.input_shape: tuple[int, ...] = ()

    def forward(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        self.input_shape = inputs.shape
        return inputs.reshape(len(inputs), *self.shape)

    def backward(self, dvalues: np.ndarray) -> np.ndarray:
        return dvalues.reshape(self.input_shape)

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "shape": list(self.shape)}


class Flatten:
    """``(n, h, w, c)`` -> ``(n, h * w * c)`` in NHWC order, the rows a Dense layer takes."""

    kind = "flatten"

    def __init__(self) -> None:
        self.input_shape: tuple[int, ...] = ()

    def forward(self, inputs: np.ndarray, training: bool = False) -> np.ndarray:
        self.input_shape = inputs.shape
        return inputs.reshape(len(inputs), int(np.prod(inputs.shape[1:])))  # not -1: that fails on 0 rows

    def backward(self, dvalues: np.ndarray) -> np.ndarray:
        return dvalues.reshape(self.input_shape)

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind}
