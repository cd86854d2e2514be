"""The training loop: mini-batch (or full-batch) gradient descent over the from-scratch network.

``train`` is pure computation on arrays: it reports each epoch through a callback and returns
the trained network with its curve and metrics. Publishing is the caller's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.digits import N_CLASSES, N_PIXELS, Dataset
from core.inference import compile_forward
from core.model import InputScaling, Model
from core.network import Network, cross_entropy, softmax, softmax_cross_entropy_backward
from core.optimizers import make_optimizer, scheduled_learning_rate
from core.training_config import TrainConfig
from trainer.augment import random_distort, random_shift


class TrainingCanceled(Exception):
    """Raised by an ``on_epoch`` callback to stop a run; nothing is returned or published."""


@dataclass
class EpochReport:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    dev_loss: float | None
    dev_accuracy: float | None
    learning_rate: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class TrainResult:
    model: Model
    curve: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


# Rows per evaluation pass: bounds the hidden activations (8,000 x 1,024 floats would be 32 MB).
_EVAL_ROWS = 2048


def _scaled_loss_and_accuracy(network: Network, X: np.ndarray, y: np.ndarray,
                              rows: int = _EVAL_ROWS) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on inputs already scaled, in blocks of ``rows``, through the
    serving forward pass (built from the weights as they are now)."""
    forward = compile_forward(network)
    probabilities = np.concatenate([softmax(forward(X[i:i + rows])) for i in range(0, max(len(X), 1), rows)])
    return cross_entropy(probabilities, y), float((probabilities.argmax(axis=1) == y).mean())


def train(train_set: Dataset, dev_set: Dataset | None, config: TrainConfig,
          on_epoch: Callable[[EpochReport], None] | None = None) -> TrainResult:
    """Train a fresh network on ``train_set``; with ``dev_set`` keep the epoch of lowest dev loss
    when early stopping is on, and report dev metrics every epoch."""
    if train_set.y is None:
        raise ValueError("training data has no labels")
    started = time.perf_counter()
    scaling = InputScaling()
    rng = np.random.default_rng(config.seed)
    if config.arch == "cnn":
        network = Network.cnn(config.channels, 3, config.hidden, dropout=config.dropout, init=config.init,
                              seed=config.seed)
    else:
        network = Network.mlp([N_PIXELS, *config.hidden, N_CLASSES], dropout=config.dropout,
                              init=config.init, seed=config.seed)
    model = Model(network, scaling)
    eval_rows = min(_EVAL_ROWS, model.max_rows_per_pass)
    optimizer = make_optimizer(config.optimizer, config.lr, config.weight_decay, config.momentum)

    # Scale once up front (float32), so every epoch only shifts and slices.
    X_raw = np.asarray(train_set.X)
    X = scaling.apply(X_raw)
    # The dev set is scored every epoch (500 times in the seed preset): scale it once too.
    X_dev = scaling.apply(dev_set.X) if dev_set is not None and dev_set.y is not None else None
    y = train_set.y
    n = len(X)
    batch_size = n if config.batch_size == 0 else min(config.batch_size, n)
    steps_per_epoch = -(-n // batch_size)
    total_steps = steps_per_epoch * config.epochs

    average = WeightAverage(network, config.ema) if config.ema else None
    curve: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, np.ndarray] | None] = (np.inf, 0, None)
    stale_epochs = 0
    step = 0
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        # Full batch: no shuffle, and slices (views) instead of a fancy-indexed copy of all rows
        # on every iteration (25 MB per step for 8,000 digits).
        order = rng.permutation(n) if batch_size < n else slice(None)
        loss_sum = correct = 0.0
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size] if batch_size < n else order
            batch = X[index]
            if config.augment_rotate or config.augment_scale or config.augment_elastic:
                batch = random_distort(batch, rng, config.augment_shift, config.augment_rotate, config.augment_scale,
                                       config.augment_elastic)
            elif config.augment_shift:
                batch = random_shift(batch, config.augment_shift, rng)
            optimizer.learning_rate = scheduled_learning_rate(
                config.lr_schedule, config.lr, step / max(total_steps - 1, 1), config.lr_decay, step)
            probabilities = softmax(network.forward(batch, training=True))
            labels = y[index]
            loss_sum += cross_entropy(probabilities, labels) * len(labels)
            correct += float((probabilities.argmax(axis=1) == labels).sum())
            network.backward(softmax_cross_entropy_backward(probabilities, labels), input_gradient=False)
            optimizer.step(network.trainable_layers)
            step += 1
            if average is not None:
                average.update(network, step)
        dev_loss = dev_accuracy = None
        if dev_set is not None and dev_set.y is not None:
            with _averaged(network, average):
                dev_loss, dev_accuracy = _scaled_loss_and_accuracy(network, X_dev, dev_set.y, eval_rows)
        report = EpochReport(epoch, config.epochs, loss_sum / n, correct / n, dev_loss, dev_accuracy,
                             optimizer.learning_rate, time.perf_counter() - epoch_start)
        curve.append(report.as_dict())
        if on_epoch is not None:
            on_epoch(report)
        if config.early_stopping and dev_loss is not None:
            if dev_loss < best[0]:
                with _averaged(network, average):
                    best, stale_epochs = (dev_loss, epoch, _copy_arrays(network)), 0
            else:
                stale_epochs += 1
                if stale_epochs >= config.early_stopping:
                    break

    best_epoch = len(curve)
    if config.early_stopping and best[1]:
        network.load_arrays(best[2])
        best_epoch = best[1]
    elif average is not None:
        network.load_arrays(average.arrays)
    metrics: dict[str, float] = {}
    # Training accuracy on the un-augmented data with dropout off: what the model really fits.
    metrics["train_loss"], metrics["train_accuracy"] = _scaled_loss_and_accuracy(network, X, y, eval_rows)
    if dev_set is not None and dev_set.y is not None:
        metrics["dev_loss"], metrics["dev_accuracy"] = _scaled_loss_and_accuracy(network, X_dev, dev_set.y, eval_rows)
    return TrainResult(model, curve, best_epoch, metrics, time.perf_counter() - started)


def _copy_arrays(network: Network) -> dict[str, np.ndarray]:
    return {key: value.copy() for key, value in network.arrays().items()}


class WeightAverage:
    """An exponential moving average of the weights (Polyak averaging, as TensorFlow's
    ``ExponentialMovingAverage``): it smooths out the last steps' noise, which a small dataset and
    random augmentation make large. The decay ramps up as ``(1 + step) / (10 + step)`` until it
    reaches ``decay``, so the initial weights do not linger in a short run's average."""

    def __init__(self, network: Network, decay: float) -> None:
        self.decay = decay
        self.arrays = _copy_arrays(network)

    def update(self, network: Network, step: int) -> None:
        decay = np.float32(min(self.decay, (1 + step) / (10 + step)))
        for key, value in network.arrays().items():
            average = self.arrays[key]
            average *= decay
            average += (1 - decay) * value


@contextmanager
def _averaged(network: Network, average: WeightAverage | None) -> Iterator[None]:
    """The averaged weights in ``network`` for the with-block, then its own again."""
    if average is None:
        yield
        return
    own = _copy_arrays(network)
    network.load_arrays(average.arrays)
    try:
        yield
    finally:
        network.load_arrays(own)
