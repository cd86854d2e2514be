"""Optimizers that update dense layers in place from their gradients, and learning-rate schedules.

Each optimizer reads ``layer.dweights`` / ``layer.dbiases`` (left there by ``backward``) and
keeps its per-layer state (momentum, Adam moments) keyed by the layer's identity.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from core.network import Dense


class Optimizer:
    """Shared part: the learning rate in force and L2 weight decay."""

    def __init__(self, learning_rate: float, weight_decay: float = 0.0) -> None:
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self._buffers: dict[tuple[tuple[int, ...], np.dtype], np.ndarray] = {}

    def gradients(self, layer: Dense) -> tuple[np.ndarray, np.ndarray]:
        """The layer's gradients with L2 decay folded in (in place: ``dweights`` is spent after the step)."""
        # L2 on the weights only (not the biases): d/dW of (wd/2)*|W|^2 is wd*W.
        if self.weight_decay:
            scratch = self._scratch(layer.weights)
            np.multiply(layer.weights, layer.weights.dtype.type(self.weight_decay), out=scratch)
            layer.dweights += scratch
        return layer.dweights, layer.dbiases

    def _scratch(self, like: np.ndarray) -> np.ndarray:
        """A reusable work array shaped like ``like``: updates run in place instead of allocating
        several temporaries of the parameter's size on every step."""
        key = (like.shape, like.dtype)
        if key not in self._buffers:
            self._buffers[key] = np.empty_like(like)
        return self._buffers[key]

    def step(self, layers: list[Dense]) -> None:
        for layer in layers:
            self.update(layer)

    def update(self, layer: Dense) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Gradient descent; with ``momentum`` > 0 a velocity carries past updates forward."""

    def __init__(self, learning_rate: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(learning_rate, weight_decay)
        self.momentum = momentum
        self.velocity: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def update(self, layer: Dense) -> None:
        dw, db = self.gradients(layer)
        lr = layer.weights.dtype.type(self.learning_rate)
        if not self.momentum:
            for param, grad in ((layer.weights, dw), (layer.biases, db)):
                scratch = self._scratch(param)
                np.multiply(grad, lr, out=scratch)
                param -= scratch
            return
        if id(layer) not in self.velocity:
            self.velocity[id(layer)] = (np.zeros_like(layer.weights), np.zeros_like(layer.biases))
        for param, grad, velocity in zip((layer.weights, layer.biases), (dw, db), self.velocity[id(layer)],
                                         strict=True):
            scratch = self._scratch(param)
            velocity *= self.momentum
            np.multiply(grad, lr, out=scratch)
            velocity -= scratch
            param += velocity


class Adam(Optimizer):
    """Adam (Kingma & Ba): per-parameter steps from bias-corrected first and second moments."""

    def __init__(self, learning_rate: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float = 0.0) -> None:
        super().__init__(learning_rate, weight_decay)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.iterations = 0
        self.moments: dict[int, list[np.ndarray]] = {}

    def step(self, layers: list[Dense]) -> None:
        self.iterations += 1
        super().step(layers)

    def update(self, layer: Dense) -> None:
        dw, db = self.gradients(layer)
        if id(layer) not in self.moments:
            self.moments[id(layer)] = [np.zeros_like(layer.weights), np.zeros_like(layer.weights),
                                       np.zeros_like(layer.biases), np.zeros_like(layer.biases)]
        state = self.moments[id(layer)]
        # The moments are kept unnormalised, m' = m / (1 - beta1) and v' = v / (1 - beta2), so each
        # update is m' = beta1 m' + g and v' = beta2 v' + g^2 with no (1 - beta) scaling passes.
        # Those factors and both bias corrections fold into two scalars:
        #   lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps) = step * m' / (sqrt(v') + eps')
        #   with step = lr (1 - beta1) sqrt(1 - beta2^t) / ((1 - beta1^t) sqrt(1 - beta2)),
        #   eps' = eps / sqrt(1 - beta2).
        t = self.iterations
        kind = layer.weights.dtype.type
        root = math.sqrt(1 - self.beta2)
        step = kind(self.learning_rate * (1 - self.beta1) * math.sqrt(1 - self.beta2**t) / ((1 - self.beta1**t) * root))
        epsilon = kind(self.epsilon / root)
        beta1, beta2 = kind(self.beta1), kind(self.beta2)
        for param, grad, m, v in ((layer.weights, dw, state[0], state[1]), (layer.biases, db, state[2], state[3])):
            arrays = (param, grad, m, v, self._scratch(param))
            chunks = _row_chunks(len(param)) if param.size >= _PARALLEL_MIN_SIZE else [slice(None)]
            if len(chunks) == 1:
                _adam_chunk(*arrays, beta1, beta2, epsilon, step)
                continue
            # numpy's element-wise loops release the GIL, so row blocks update on all cores at once
            # (as PyTorch's Adam does); blocks are disjoint, so the result does not depend on timing.
            futures = [_pool().submit(_adam_chunk, *(a[rows] for a in arrays), beta1, beta2, epsilon, step)
                       for rows in chunks]
            for future in futures:
                future.result()


def _adam_chunk(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, scratch: np.ndarray,
                beta1: np.floating, beta2: np.floating, epsilon: np.floating, step: np.floating) -> None:
    """Ten in-place passes, no temporaries (see ``Adam.update`` for the algebra)."""
    m *= beta1
    m += grad
    v *= beta2
    np.square(grad, out=scratch)
    v += scratch
    np.sqrt(v, out=scratch)
    scratch += epsilon
    np.divide(m, scratch, out=scratch)
    scratch *= step
    param -= scratch


# Below this many elements a thread hand-off costs more than the update itself.
_PARALLEL_MIN_SIZE = 1 << 16
_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """A per-process thread pool (re-created after a fork: threads do not survive one)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=_n_threads(), thread_name_prefix="optimizer"))
    return _POOL[1]


def _n_threads() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def _row_chunks(n_rows: int) -> list[slice]:
    bounds = np.linspace(0, n_rows, min(_n_threads(), n_rows) + 1).astype(int)
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


OPTIMIZERS = ("gd", "sgd", "momentum", "adam")


def make_optimizer(name: str, learning_rate: float, weight_decay: float = 0.0, momentum: float = 0.9) -> Optimizer:
    """``gd`` and ``sgd`` are plain gradient descent (full batch or mini-batch is the trainer's
    batch size); ``momentum`` is SGD with momentum; ``adam`` is Adam."""
    if name in ("gd", "sgd"):
        return SGD(learning_rate, 0.0, weight_decay)
    if name == "momentum":
        return SGD(learning_rate, momentum, weight_decay)
    if name == "adam":
        return Adam(learning_rate, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r} (expected one of {', '.join(OPTIMIZERS)})")


LR_SCHEDULES = ("constant", "inverse", "cosine")


def scheduled_learning_rate(schedule: str, base_lr: float, progress: float, decay: float = 0.0,
                            step: int = 0, floor: float = 0.02) -> float:
    """Learning rate at ``progress`` (0..1 through training) or optimizer ``step``.

    ``inverse`` is NNFS's ``lr / (1 + decay * step)``; ``cosine`` anneals from ``base_lr`` to
    ``floor * base_lr`` over the run, which on small data lets the last epochs settle into a
    minimum instead of bouncing around it.
    """
    if schedule == "constant":
        return base_lr
    if schedule == "inverse":
        return base_lr / (1.0 + decay * step)
    if schedule == "cosine":
        low = floor * base_lr
        return low + 0.5 * (base_lr - low) * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r} (expected one of {', '.join(LR_SCHEDULES)})")
