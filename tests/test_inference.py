"""The inference-only forward pass (core.inference) gives the layers' own answers, for every
network shape the trainer can make and some it cannot."""

from __future__ import annotations

import numpy as np
import pytest

from core.conv import Conv2D, Flatten, MaxPool2D, Reshape
from core.inference import compile_forward
from core.model import Model
from core.network import Dense, Network, ReLU


def _randomise_biases(network: Network) -> Network:
    """Trained biases are not zero: fused steps add them after the pool, so test that too."""
    rng = np.random.default_rng(7)
    for layer in network.trainable_layers:
        layer.biases[...] = rng.standard_normal(layer.biases.shape)
    return network


NETWORKS = {
    "mlp": lambda: Network.mlp([784, 64, 32, 10], dropout=0.3),
    "cnn preset": lambda: Network.cnn([16, 32], 3, [128], dropout=0.3),
    "wide first layer": lambda: Network.cnn([32, 64], 3, [128]),
    "one block": lambda: Network.cnn([8], 3, [16]),
    "three blocks": lambda: Network.cnn([4, 6, 5], 3, [12]),  # 28 -> 13 -> 5 -> 1
    "5x5 kernels": lambda: Network.cnn([6, 8], 5, [20]),  # 28 -> 12 -> 4; 25 values per window: im2col
    # Not fusable: a strided, padded conv, and a conv without a pool after it run as layers.
    "strided": lambda: Network([Reshape((28, 28, 1)), Conv2D(1, 4, 3, stride=2, padding=1), ReLU(),
                                Conv2D(4, 5, 3), Flatten(), Dense(5 * 12 * 12, 10)]),
    "pool of 3": lambda: Network([Reshape((28, 28, 1)), Conv2D(1, 4, 3), MaxPool2D(3), ReLU(), Flatten(),
                                  Dense(4 * 8 * 8, 10)]),
    "pool without relu": lambda: Network([Reshape((28, 28, 1)), Conv2D(1, 3, 3), MaxPool2D(2), Conv2D(3, 4, 3),
                                          MaxPool2D(2), Flatten(), Dense(4 * 5 * 5, 10)]),
}


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("rows", [1, 7, 300])
def test_compiled_forward_equals_the_layers(name: str, rows: int) -> None:
    network = _randomise_biases(NETWORKS[name]())
    inputs = np.random.default_rng(rows).random((rows, 784), dtype=np.float32)
    compiled = compile_forward(network)(inputs)
    assert compiled.dtype == np.float32 and compiled.shape == (rows, 10)
    np.testing.assert_allclose(compiled, network.forward(inputs, training=False), rtol=1e-4, atol=1e-4)


def test_no_rows_give_no_logits() -> None:
    network = Network.cnn([16, 32], 3, [128])
    assert compile_forward(network)(np.zeros((0, 784), np.float32)).shape == (0, 10)


def test_a_model_predicts_through_the_compiled_pass_in_slices() -> None:
    model = Model(_randomise_biases(Network.cnn([16, 32], 3, [128])))
    pixels = np.random.default_rng(0).integers(0, 256, (600, 784)).astype(np.uint8)  # 3 slices of 256 rows at most
    probabilities = model.predict_proba(pixels)
    expected = model.network.predict_proba(model.scaling.apply(pixels))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
