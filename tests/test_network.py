"""The from-scratch network: numerical gradient checks, optimizers, schedules, float32, determinism.

Gradient checks compare backpropagation with central differences on float64 networks, so
a wrong transpose, a missing ``1/n`` or a mask applied on the wrong side shows up as a
relative error of order 1 instead of ~1e-8.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from core.datasets import Dataset
from core.network import (
    Dense,
    Dropout,
    Network,
    ReLU,
    cross_entropy,
    softmax,
    softmax_cross_entropy_backward,
)
from core.optimizers import SGD, Adam, make_optimizer, scheduled_learning_rate
from core.training_config import TrainConfig
from trainer.training import train

EPS = 1e-6
TOLERANCE = 1e-6


def numerical_gradient(loss: Callable[[], float], array: np.ndarray) -> np.ndarray:
    """Central differences of ``loss()`` with respect to every entry of ``array`` (changed in place)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + EPS
        plus = loss()
        array[index] = saved - EPS
        minus = loss()
        array[index] = saved
        grad[index] = (plus - minus) / (2 * EPS)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    return float(np.abs(analytic - numeric).max() / max(np.abs(analytic).max(), np.abs(numeric).max(), 1e-12))


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def test_dense_gradients_for_weights_biases_and_inputs(rng: np.random.Generator) -> None:
    layer = Dense(6, 4, rng, dtype=np.float64)
    layer.biases[...] = rng.standard_normal(layer.biases.shape)  # non-zero biases, so they matter
    inputs = rng.standard_normal((5, 6))
    upstream = rng.standard_normal((5, 4))  # loss = sum(outputs * upstream), so dL/doutputs = upstream

    def loss() -> float:
        return float((layer.forward(inputs, training=True) * upstream).sum())

    layer.forward(inputs, training=True)
    dinputs = layer.backward(upstream)
    assert relative_error(layer.dweights, numerical_gradient(loss, layer.weights)) < TOLERANCE
    assert relative_error(layer.dbiases, numerical_gradient(loss, layer.biases)) < TOLERANCE
    assert relative_error(dinputs, numerical_gradient(loss, inputs)) < TOLERANCE


def test_relu_gradient(rng: np.random.Generator) -> None:
    layer = ReLU()
    # Keep every input away from the kink at 0, where the derivative is undefined.
    inputs = rng.standard_normal((4, 7))
    inputs += np.sign(inputs) * 0.1
    upstream = rng.standard_normal((4, 7))

    def loss() -> float:
        return float((layer.forward(inputs, training=True) * upstream).sum())

    layer.forward(inputs, training=True)
    dinputs = layer.backward(upstream)
    assert relative_error(dinputs, numerical_gradient(loss, inputs)) < TOLERANCE
    assert np.all(dinputs[inputs < 0] == 0)


def test_dropout_gradient_with_a_fixed_mask(rng: np.random.Generator) -> None:
    layer = Dropout(0.4)
    inputs = rng.standard_normal((6, 9))
    upstream = rng.standard_normal((6, 9))

    def loss() -> float:
        layer.rng = np.random.default_rng(7)  # the same mask on every evaluation
        return float((layer.forward(inputs, training=True) * upstream).sum())

    loss()
    mask = layer.scaled_mask
    dinputs = layer.backward(upstream)
    assert relative_error(dinputs, numerical_gradient(loss, inputs)) < TOLERANCE
    # Inverted dropout: kept units are scaled by 1/(1-rate), dropped ones are exactly zero.
    assert set(np.unique(mask).round(6)) == {0.0, round(1 / 0.6, 6)}
    assert np.array_equal(layer.forward(inputs, training=False), inputs)


def test_softmax_cross_entropy_gradient(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((8, 10)) * 3
    labels = rng.integers(0, 10, 8)

    def loss() -> float:
        return cross_entropy(softmax(logits), labels)

    analytic = softmax_cross_entropy_backward(softmax(logits), labels)
    assert relative_error(analytic, numerical_gradient(loss, logits)) < TOLERANCE


def test_softmax_is_stable_for_huge_logits() -> None:
    probabilities = softmax(np.array([[1000.0, 0.0, -1000.0], [5.0, 5.0, 5.0]], dtype=np.float32))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probabilities[1], 1 / 3, rtol=1e-6)
    # A confident wrong answer costs a large but finite loss.
    assert np.isfinite(cross_entropy(probabilities, np.array([2, 0])))


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_whole_network_gradients(rng: np.random.Generator, dropout: float) -> None:
    network = Network.mlp([12, 9, 7, 5], dropout=dropout, seed=3, dtype=np.float64)
    for layer in network.dense_layers:
        layer.biases[...] = rng.standard_normal(layer.biases.shape) * 0.1
    inputs = rng.standard_normal((10, 12))
    labels = rng.integers(0, 5, 10)
    dropouts = [layer for layer in network.layers if isinstance(layer, Dropout)]
    assert len(dropouts) == (2 if dropout else 0)

    def probabilities() -> np.ndarray:
        for i, layer in enumerate(dropouts):  # the same dropout masks on every evaluation
            layer.rng = np.random.default_rng(100 + i)
        return softmax(network.forward(inputs, training=True))

    def loss() -> float:
        return cross_entropy(probabilities(), labels)

    dinputs = network.backward(softmax_cross_entropy_backward(probabilities(), labels))
    analytic = [(layer.dweights.copy(), layer.dbiases.copy()) for layer in network.dense_layers]
    for layer, (dweights, dbiases) in zip(network.dense_layers, analytic, strict=True):
        assert relative_error(dweights, numerical_gradient(loss, layer.weights)) < TOLERANCE
        assert relative_error(dbiases, numerical_gradient(loss, layer.biases)) < TOLERANCE
    assert relative_error(dinputs, numerical_gradient(loss, inputs)) < TOLERANCE


def test_training_backward_skips_only_the_input_gradient(rng: np.random.Generator) -> None:
    network = Network.mlp([20, 8, 4], seed=2)
    inputs, labels = rng.random((6, 20), dtype=np.float32), rng.integers(0, 4, 6)
    dlogits = softmax_cross_entropy_backward(softmax(network.forward(inputs, training=True)), labels)
    assert network.backward(dlogits).shape == (6, 20)
    full = [layer.dweights.copy() for layer in network.dense_layers]
    assert network.backward(dlogits, input_gradient=False) is None
    for layer, expected in zip(network.dense_layers, full, strict=True):
        np.testing.assert_array_equal(layer.dweights, expected)


def test_float32_throughout_and_round_trip_through_arrays(rng: np.random.Generator) -> None:
    network = Network.mlp([784, 32, 16, 10], dropout=0.2, seed=1)
    inputs = rng.random((5, 784), dtype=np.float32)
    logits = network.forward(inputs, training=True)
    assert logits.dtype == np.float32
    network.backward(softmax_cross_entropy_backward(softmax(logits), np.arange(5)))
    Adam(1e-3, weight_decay=1e-4).step(network.dense_layers)
    for array in network.arrays().values():
        assert array.dtype == np.float32
    rebuilt = Network.from_arrays(network.architecture(), network.arrays())
    np.testing.assert_array_equal(rebuilt.predict_proba(inputs), network.predict_proba(inputs))
    assert [spec["type"] for spec in network.architecture()] == ["dense", "relu", "dropout", "dense", "relu",
                                                               "dropout", "dense"]


def test_load_arrays_restores_a_snapshot_in_place(rng: np.random.Generator) -> None:
    """What early stopping does: snapshot the arrays, train on, then put the snapshot back."""
    network = Network.mlp([784, 16, 10], seed=2)
    inputs = rng.random((4, 784), dtype=np.float32)
    snapshot = {key: value.copy() for key, value in network.arrays().items()}
    before, held = network.predict_proba(inputs), network.dense_layers[0].weights
    network.backward(softmax_cross_entropy_backward(softmax(network.forward(inputs, training=True)), np.arange(4)))
    SGD(0.5).step(network.dense_layers)
    assert not np.array_equal(network.predict_proba(inputs), before)
    network.load_arrays(snapshot)
    np.testing.assert_array_equal(network.predict_proba(inputs), before)
    assert network.dense_layers[0].weights is held  # in place: the layers keep their arrays


def test_from_arrays_rejects_wrong_shapes_and_missing_arrays() -> None:
    network = Network.mlp([784, 8, 10])
    arrays = network.arrays()
    with pytest.raises(ValueError, match=r"dense1_weights.*shape"):
        Network.from_arrays(network.architecture(), {**arrays, "dense1_weights": np.zeros((8, 9), np.float32)})
    with pytest.raises(ValueError, match="no array 'dense0_biases'"):
        Network.from_arrays(network.architecture(), {k: v for k, v in arrays.items() if k != "dense0_biases"})
    with pytest.raises(ValueError, match="unknown layer type 'conv'"):
        Network.from_arrays([{"type": "conv"}], arrays)


# ---------------------------------------------------------------- optimizers


def blobs(seed: int = 0, n: int = 240, dims: int = 20, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters: a small problem every optimizer should make progress on."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dims)) * 1.5
    labels = rng.integers(0, classes, n)
    return (centers[labels] + rng.standard_normal((n, dims))).astype(np.float32), labels


def run_steps(network: Network, optimizer: SGD | Adam, X: np.ndarray, y: np.ndarray, steps: int,
              schedule: str = "constant", decay: float = 0.0) -> list[float]:
    base_lr = optimizer.learning_rate
    losses = []
    for step in range(steps):
        optimizer.learning_rate = scheduled_learning_rate(schedule, base_lr, step / (steps - 1), decay, step)
        probabilities = softmax(network.forward(X, training=True))
        losses.append(cross_entropy(probabilities, y))
        network.backward(softmax_cross_entropy_backward(probabilities, y))
        optimizer.step(network.dense_layers)
    return losses


@pytest.mark.parametrize(("name", "lr", "weight_decay", "schedule"), [
    ("gd", 0.1, 0.0, "constant"),
    ("sgd", 0.1, 0.0, "inverse"),
    ("momentum", 0.05, 0.0, "cosine"),
    ("adam", 0.01, 0.0, "constant"),
    ("adam", 0.01, 1e-3, "cosine"),
    ("momentum", 0.05, 1e-3, "inverse"),
])
def test_optimizers_reduce_loss(name: str, lr: float, weight_decay: float, schedule: str) -> None:
    X, y = blobs()
    network = Network.mlp([20, 16, 4], seed=0)
    losses = run_steps(network, make_optimizer(name, lr, weight_decay), X, y, 60, schedule, decay=0.01)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert all(np.isfinite(losses))


def test_weight_decay_shrinks_weights() -> None:
    X, y = blobs()
    norms = {}
    for weight_decay in (0.0, 0.05):
        network = Network.mlp([20, 16, 4], seed=0)
        run_steps(network, make_optimizer("momentum", 0.05, weight_decay), X, y, 80)
        norms[weight_decay] = sum(float(np.square(layer.weights).sum()) for layer in network.dense_layers)
    assert norms[0.05] < 0.8 * norms[0.0]


def test_momentum_accumulates_velocity() -> None:
    # On a constant gradient, momentum's steps grow towards lr * g / (1 - momentum).
    layer = Dense(1, 1, dtype=np.float64)
    layer.weights[...] = 0.0
    layer.dweights = np.ones((1, 1))
    layer.dbiases = np.zeros((1, 1))
    optimizer = SGD(0.1, momentum=0.5)
    positions = []
    for _ in range(3):
        optimizer.step([layer])
        positions.append(float(layer.weights[0, 0]))
    np.testing.assert_allclose(positions, [-0.1, -0.25, -0.425])


def test_adam_first_step_is_learning_rate_sized() -> None:
    # Bias correction makes Adam's first step ~lr * sign(g) whatever the gradient's scale.
    layer = Dense(2, 1, dtype=np.float64)
    before = layer.weights.copy()
    layer.dweights = np.array([[1000.0], [-0.1]])
    layer.dbiases = np.zeros((1, 1))
    Adam(0.01).step([layer])
    np.testing.assert_allclose(layer.weights - before, [[-0.01], [0.01]], rtol=1e-3)


def test_learning_rate_schedules() -> None:
    assert scheduled_learning_rate("constant", 0.5, 0.7) == 0.5
    assert scheduled_learning_rate("inverse", 1.0, 0.0, decay=0.1, step=10) == pytest.approx(0.5)
    assert scheduled_learning_rate("cosine", 1.0, 0.0) == pytest.approx(1.0)
    assert scheduled_learning_rate("cosine", 1.0, 0.5) == pytest.approx(0.51)
    assert scheduled_learning_rate("cosine", 1.0, 1.0) == pytest.approx(0.02)
    cosine = [scheduled_learning_rate("cosine", 1.0, p) for p in np.linspace(0, 1, 11)]
    assert all(a > b for a, b in itertools.pairwise(cosine))
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        scheduled_learning_rate("step", 1.0, 0.0)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", 0.1)


def test_unknown_init_and_bad_dropout_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        Dense(3, 2, init="xavier")
    with pytest.raises(ValueError, match="dropout rate"):
        Dropout(1.0)


def test_uniform_init_matches_the_seed_network() -> None:
    network = Network.mlp([784, 10, 10], init="uniform", seed=0)
    for layer in network.dense_layers:
        for array in (layer.weights, layer.biases):
            assert -0.5 <= array.min() < -0.4 and 0.4 < array.max() <= 0.5


# ---------------------------------------------------------------- determinism


def tiny_dataset(seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(rng.integers(0, 256, (300, 784)).astype(np.uint8), rng.integers(0, 10, 300), "random", "x")


def test_same_seed_gives_identical_weights_and_other_seed_differs() -> None:
    data, dev = tiny_dataset(0), tiny_dataset(1)
    config = TrainConfig(hidden=[32, 16], epochs=3, batch_size=32, dropout=0.3, augment_shift=2, seed=5)
    first = train(data, dev, config).model.network.arrays()
    second = train(data, dev, config).model.network.arrays()
    third = train(data, dev, config.model_copy(update={"seed": 6})).model.network.arrays()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert any(not np.array_equal(first[key], third[key]) for key in first)
