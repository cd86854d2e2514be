"""Gradient x input explanations (core/explain.py): checked against central finite differences of the
class logit, in float64, for an MLP and a small conv net, through the input scaling."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core.explain import gradient_x_input, private_copy
from core.model import InputScaling, Model
from core.network import Dense, Network

SCALE, OFFSET = 1.0 / 255.0, 0.1307  # an offset too, so the chain rule through the scaling is exercised


def _pixels(n: int, seed: int) -> np.ndarray:
    """Digit-like rows: mostly blank, some ink, some half-tones (finite differences need no clipping)."""
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, (n, 784)) * (rng.random((n, 784)) < 0.4)
    return pixels.astype(np.float64)


def _logit(network: Network, raw: np.ndarray, cls: int) -> np.ndarray:
    return network.forward(raw * SCALE - OFFSET)[:, cls]


def _finite_difference_attributions(network: Network, row: np.ndarray, cls: int, h: float = 1e-3) -> np.ndarray:
    """x_i * (z_c(x + h e_i) - z_c(x - h e_i)) / 2h for every pixel i, all 784 perturbations in two batches."""
    eye = np.eye(784) * h
    up = _logit(network, row + eye, cls)
    down = _logit(network, row - eye, cls)
    return row * (up - down) / (2 * h)


NETWORKS = {
    "mlp": lambda: Network.mlp([784, 32, 16, 10], seed=3, dtype=np.float64),
    "cnn": lambda: Network.cnn(channels=(3, 4), hidden=(12,), seed=4, dtype=np.float64),
}


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_attributions_match_central_finite_differences(kind: str) -> None:
    network = NETWORKS[kind]()
    pixels = _pixels(3, seed=5)
    explanation = gradient_x_input(network, pixels, SCALE, OFFSET)
    assert explanation.attributions.dtype == np.float64 and explanation.attributions.shape == (3, 784)
    logits = network.forward(pixels * SCALE - OFFSET)
    np.testing.assert_array_equal(explanation.labels, logits.argmax(axis=1))
    np.testing.assert_allclose(explanation.logits, logits, rtol=1e-12)
    for row in range(3):
        expected = _finite_difference_attributions(network, pixels[row], int(explanation.labels[row]))
        assert np.abs(expected).max() > 1e-3  # a map with something in it
        np.testing.assert_allclose(explanation.attributions[row], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_a_chosen_class_is_explained_instead_of_the_predicted_one(kind: str) -> None:
    network = NETWORKS[kind]()
    pixels = _pixels(2, seed=6)
    predicted = network.forward(pixels * SCALE - OFFSET).argmax(axis=1)
    other = (predicted + 1) % 10
    explanation = gradient_x_input(network, pixels, SCALE, OFFSET, classes=other)
    np.testing.assert_array_equal(explanation.labels, other)
    for row in range(2):
        np.testing.assert_allclose(explanation.attributions[row],
                                   _finite_difference_attributions(network, pixels[row], int(other[row])),
                                   rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="classes"):
        gradient_x_input(network, pixels, SCALE, OFFSET, classes=np.array([0, 10]))


def test_a_linear_model_splits_its_score_exactly() -> None:
    """For z = (x * s) W + b, gradient x input sums to z_c minus the blank image's z_c."""
    network = Network([Dense(784, 10, np.random.default_rng(7), dtype=np.float64)])
    pixels = _pixels(4, seed=8)
    explanation = gradient_x_input(network, pixels, SCALE)
    blank = network.forward(np.zeros((1, 784)))[0]
    rows = np.arange(4)
    np.testing.assert_allclose(explanation.attributions.sum(axis=1),
                               explanation.logits[rows, explanation.labels] - blank[explanation.labels], rtol=1e-10)


def test_dropout_is_ignored_and_the_served_network_is_untouched() -> None:
    plain = Network.mlp([784, 24, 10], seed=9, dtype=np.float64)
    dropped = Network.mlp([784, 24, 10], dropout=0.5, seed=9, dtype=np.float64)
    pixels = _pixels(3, seed=10)
    a = gradient_x_input(plain, pixels, SCALE).attributions
    b = gradient_x_input(dropped, pixels, SCALE).attributions
    np.testing.assert_allclose(a, b, rtol=1e-12)
    # The explanation ran on a private copy: the shared layers cached nothing and kept their gradients.
    assert all(getattr(layer, "inputs", None) is None and getattr(layer, "mask", None) is None
               for layer in dropped.layers)
    assert all(not layer.dweights.any() for layer in dropped.trainable_layers)
    copy = private_copy(dropped)
    assert len(copy.layers) == len(dropped.layers) - 1
    assert copy.layers[0].weights is dropped.layers[0].weights  # weights shared, not copied


def test_model_explain_is_the_float32_twin_and_slices_large_batches() -> None:
    wide = Network.cnn(channels=(3,), hidden=(8,), seed=11, dtype=np.float64)
    served = Network.from_arrays(wide.architecture(), wide.arrays())  # float32, as the registry loads it
    model = Model(served, InputScaling(SCALE, OFFSET))
    pixels = _pixels(7, seed=12)
    explanation = model.explain(pixels.astype(np.float32))
    assert explanation.attributions.dtype == np.float32
    reference = gradient_x_input(wide, pixels, SCALE, OFFSET, classes=explanation.labels)
    np.testing.assert_allclose(explanation.attributions, reference.attributions, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(explanation.probabilities, model.predict_proba(pixels), atol=1e-6)
    model.max_rows_per_pass = 3  # 3 + 3 + 1 rows: the same answer
    sliced = model.explain(pixels.astype(np.float32))
    np.testing.assert_allclose(sliced.attributions, explanation.attributions, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sliced.labels, explanation.labels)
    with pytest.raises(ValueError, match="784"):
        model.explain(np.zeros((2, 28, 28)))


def test_concurrent_explanations_and_predictions_on_one_model_do_not_mix() -> None:
    """The API's threads share one Model: a conv net's layers cache forward inputs during an explanation
    (MaxPool2D keeps its input, Conv2D its patches) and predictions reset them; nothing may leak."""
    model = Model(Network.cnn(channels=(4, 6), hidden=(16,), seed=13), InputScaling())
    batches = [_pixels(4, seed=20 + i).astype(np.float32) for i in range(4)]
    expected = [model.explain(batch).attributions for batch in batches]
    predicted = [model.predict_proba(batch) for batch in batches]
    failures: list[str] = []

    def explain(i: int) -> None:
        for _ in range(15):
            if not np.array_equal(model.explain(batches[i]).attributions, expected[i]):
                failures.append(f"explain {i}")

    def predict(i: int) -> None:
        for _ in range(30):
            if not np.array_equal(model.predict_proba(batches[i]), predicted[i]):
                failures.append(f"predict {i}")

    threads = [threading.Thread(target=f, args=(i,)) for i in range(4) for f in (explain, predict)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
