"""Convolutional layers: gradient checks against central differences (float64), a naive-loop
reference for the forward passes, and the layer protocol (float32, seeds, optimizers, arrays).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from core.conv import Conv2D, Flatten, MaxPool2D, Reshape
from core.network import Dense, Network, ReLU, cross_entropy, softmax, softmax_cross_entropy_backward
from core.optimizers import Adam
from tests.test_network import TOLERANCE, numerical_gradient, relative_error


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def naive_conv(inputs: np.ndarray, layer: Conv2D) -> np.ndarray:
    """Cross-correlation by explicit loops, straight from the definition (NHWC, HWIO kernel)."""
    k, s, p = layer.kernel, layer.stride, layer.padding
    x = np.pad(inputs, ((0, 0), (p, p), (p, p), (0, 0)))
    kernel = layer.weights.reshape(k, k, layer.in_channels, layer.out_channels)
    n, h, w, _ = x.shape
    out_h, out_w = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, out_h, out_w, layer.out_channels))
    for b in range(n):
        for i in range(out_h):
            for j in range(out_w):
                patch = x[b, i * s:i * s + k, j * s:j * s + k, :]
                out[b, i, j] = np.tensordot(patch, kernel, axes=3) + layer.biases[0]
    return out


CONV_CASES = [(3, 1, 0), (3, 2, 1), (3, 1, "same"), (2, 2, 0), (1, 1, 0)]


def _conv_case(rng: np.random.Generator, kernel: int, stride: int,
               padding: int | str) -> tuple[Conv2D, np.ndarray]:
    """A float64 2->3 channel Conv2D with random biases, and a batch of two 7x6x2 inputs."""
    layer = Conv2D(2, 3, kernel, stride, padding, rng=rng, dtype=np.float64)
    layer.biases[...] = rng.standard_normal(layer.biases.shape)
    return layer, rng.standard_normal((2, 7, 6, 2))


@pytest.mark.parametrize(("kernel", "stride", "padding"), CONV_CASES)
def test_conv2d_forward_matches_the_definition(rng: np.random.Generator, kernel: int, stride: int,
                                               padding: int | str) -> None:
    layer, inputs = _conv_case(rng, kernel, stride, padding)
    np.testing.assert_allclose(layer.forward(inputs), naive_conv(inputs, layer), rtol=1e-12, atol=1e-12)
    if padding == "same":
        assert layer.forward(inputs).shape == (2, 7, 6, 3)


@pytest.mark.parametrize(("kernel", "stride", "padding"), CONV_CASES)
def test_conv2d_gradients_for_weights_biases_and_inputs(rng: np.random.Generator, kernel: int, stride: int,
                                                        padding: int | str) -> None:
    layer, inputs = _conv_case(rng, kernel, stride, padding)
    upstream = rng.standard_normal(layer.forward(inputs).shape)  # loss = sum(outputs * upstream)

    def loss() -> float:
        return float((layer.forward(inputs, training=True) * upstream).sum())

    layer.forward(inputs, training=True)
    dinputs = layer.backward(upstream)
    assert dinputs.shape == inputs.shape
    assert relative_error(layer.dweights, numerical_gradient(loss, layer.weights)) < TOLERANCE
    assert relative_error(layer.dbiases, numerical_gradient(loss, layer.biases)) < TOLERANCE
    assert relative_error(dinputs, numerical_gradient(loss, inputs)) < TOLERANCE
    dweights = layer.dweights.copy()
    layer.forward(inputs, training=True)
    assert layer.backward(upstream, input_gradient=False) is None
    np.testing.assert_array_equal(layer.dweights, dweights)


@pytest.mark.parametrize(("size", "height", "width"), [(2, 6, 4), (2, 7, 5), (3, 6, 7)])
def test_maxpool_forward_and_gradient(rng: np.random.Generator, size: int, height: int, width: int) -> None:
    layer = MaxPool2D(size)
    inputs = rng.standard_normal((2, height, width, 3))
    out_h, out_w = height // size, width // size
    expected = np.array([[[[inputs[b, i * size:(i + 1) * size, j * size:(j + 1) * size, c].max()
                           for c in range(3)] for j in range(out_w)] for i in range(out_h)] for b in range(2)])
    np.testing.assert_array_equal(layer.forward(inputs, training=True), expected)
    np.testing.assert_array_equal(layer.forward(inputs, training=False), expected)
    upstream = rng.standard_normal(expected.shape)

    def loss() -> float:
        return float((layer.forward(inputs, training=True) * upstream).sum())

    layer.forward(inputs, training=True)
    dinputs = layer.backward(upstream)
    assert relative_error(dinputs, numerical_gradient(loss, inputs)) < TOLERANCE
    # Exactly one input per window receives its gradient; a ragged edge receives none.
    assert np.count_nonzero(dinputs) == upstream.size
    assert not dinputs[:, out_h * size:].any() and not dinputs[:, :, out_w * size:].any()


def test_maxpool_routes_a_tie_to_one_input_only() -> None:
    layer = MaxPool2D(2)
    inputs = np.zeros((1, 2, 2, 1))  # what ReLU leaves in a dead window: four equal zeros
    layer.forward(inputs, training=True)
    dinputs = layer.backward(np.ones((1, 1, 1, 1)))
    assert dinputs.sum() == 1.0 and np.count_nonzero(dinputs) == 1


def test_flatten_and_reshape_gradients(rng: np.random.Generator) -> None:
    inputs = rng.standard_normal((3, 4, 5, 2))
    for layer, shape in ((Flatten(), (3, 40)), (Reshape((5, 4, 2)), (3, 5, 4, 2))):
        upstream = rng.standard_normal(shape)

        def loss(layer: Flatten | Reshape = layer, upstream: np.ndarray = upstream) -> float:
            return float((layer.forward(inputs, training=True) * upstream).sum())

        assert layer.forward(inputs, training=True).shape == shape
        dinputs = layer.backward(upstream)
        assert relative_error(dinputs, numerical_gradient(loss, inputs)) < TOLERANCE


def tiny_cnn(rng: np.random.Generator) -> Network:
    """Rows of 64 pixels -> 8x8x1 -> conv 3x3 (3 ch) -> ReLU -> pool -> flatten (27) -> dense 4."""
    network = Network([Reshape((8, 8, 1)), Conv2D(1, 3, 3, rng=rng, dtype=np.float64), ReLU(), MaxPool2D(2),
                       Flatten(), Dense(27, 4, rng, dtype=np.float64)])
    for layer in network.trainable_layers:
        layer.biases[...] = rng.standard_normal(layer.biases.shape) * 0.1
    return network


def test_conv_relu_pool_flatten_dense_stack_gradients(rng: np.random.Generator) -> None:
    network = tiny_cnn(rng)
    inputs = rng.standard_normal((3, 64))
    labels = np.array([0, 3, 1])

    def loss() -> float:
        return cross_entropy(softmax(network.forward(inputs, training=True)), labels)

    dinputs = network.backward(softmax_cross_entropy_backward(softmax(network.forward(inputs, training=True)),
                                                              labels))
    analytic = [(layer.dweights.copy(), layer.dbiases.copy()) for layer in network.trainable_layers]
    assert [type(layer) for layer in network.trainable_layers] == [Conv2D, Dense]
    for layer, (dweights, dbiases) in zip(network.trainable_layers, analytic, strict=True):
        assert relative_error(dweights, numerical_gradient(loss, layer.weights)) < TOLERANCE
        assert relative_error(dbiases, numerical_gradient(loss, layer.biases)) < TOLERANCE
    assert dinputs.shape == inputs.shape
    assert relative_error(dinputs, numerical_gradient(loss, inputs)) < TOLERANCE
    # Training skips the pixel gradient (the conv's col2im) but keeps every parameter gradient.
    network.forward(inputs, training=True)
    assert network.backward(softmax_cross_entropy_backward(softmax(network.forward(inputs, training=True)),
                                                           labels), input_gradient=False) is None
    for layer, (dweights, _) in zip(network.trainable_layers, analytic, strict=True):
        np.testing.assert_allclose(layer.dweights, dweights, rtol=1e-12)


def test_cnn_is_float32_seeded_trainable_and_round_trips(rng: np.random.Generator) -> None:
    network = Network.cnn(channels=(4, 8), hidden=(16,), seed=3)
    assert [spec["type"] for spec in network.architecture()] == [
        "reshape", "conv2d", "maxpool2d", "relu", "conv2d", "maxpool2d", "relu", "flatten", "dense", "relu", "dense"]
    assert sorted(network.arrays()) == ["conv2d0_biases", "conv2d0_weights", "conv2d1_biases", "conv2d1_weights",
                                        "dense0_biases", "dense0_weights", "dense1_biases", "dense1_weights"]
    same = Network.cnn(channels=(4, 8), hidden=(16,), seed=3).arrays()
    other = Network.cnn(channels=(4, 8), hidden=(16,), seed=4).arrays()
    for key, value in network.arrays().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, same[key])
    assert not np.array_equal(network.arrays()["conv2d0_weights"], other["conv2d0_weights"])

    pixels = rng.random((5, 784), dtype=np.float32)
    labels = np.arange(5)
    logits = network.forward(pixels, training=True)
    assert logits.dtype == np.float32 and logits.shape == (5, 10)
    before = network.trainable_layers[0].weights.copy()
    losses = []
    optimizer = Adam(1e-2)
    for _ in range(5):
        probabilities = softmax(network.forward(pixels, training=True))
        losses.append(cross_entropy(probabilities, labels))
        network.backward(softmax_cross_entropy_backward(probabilities, labels), input_gradient=False)
        optimizer.step(network.trainable_layers)
    assert not np.array_equal(network.trainable_layers[0].weights, before)
    assert losses[-1] < losses[0]
    for value in network.arrays().values():
        assert value.dtype == np.float32

    rebuilt = Network.from_arrays(network.architecture(), network.arrays())
    np.testing.assert_array_equal(rebuilt.predict_proba(pixels), network.predict_proba(pixels))


def test_pool_then_relu_equals_relu_then_pool_forward_and_backward(rng: np.random.Generator) -> None:
    """Network.cnn pools before the ReLU (cheaper); versions written with ReLU first must mean the same."""
    network = Network.cnn(channels=(3, 4), hidden=(8,), seed=2, dtype=np.float64)
    swapped = copy.deepcopy(network)  # float64 kept (from_arrays would load float32)
    for i, layer in enumerate(swapped.layers[:-1]):
        if isinstance(layer, MaxPool2D):  # conv, pool, relu -> conv, relu, pool
            swapped.layers[i], swapped.layers[i + 1] = swapped.layers[i + 1], layer
    assert [spec["type"] for spec in swapped.architecture()][1:4] == ["conv2d", "relu", "maxpool2d"]
    pixels, labels = rng.random((6, 784)), np.arange(6) % 10
    gradients = []
    for net in (network, swapped):
        probabilities = softmax(net.forward(pixels, training=True))
        gradients.append(net.backward(softmax_cross_entropy_backward(probabilities, labels)))
        gradients += [layer.dweights.copy() for layer in net.trainable_layers]
    np.testing.assert_allclose(network.forward(pixels), swapped.forward(pixels), rtol=1e-12)
    half = len(gradients) // 2
    for ours, theirs in zip(gradients[:half], gradients[half:], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-14)


def test_bad_conv_settings_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="'same' needs stride 1"):
        Conv2D(1, 2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be"):
        Conv2D(1, 2, 3, padding=-1)
    with pytest.raises(ValueError, match=r"expects \(n, h, w, 3\)"):
        Conv2D(3, 2, 3).forward(np.zeros((1, 5, 5, 1), np.float32))
    with pytest.raises(ValueError, match="shrink"):
        Network.cnn(channels=(8, 8, 8, 8))
    network = Network.cnn(channels=(2,), hidden=())
    with pytest.raises(ValueError, match=r"conv2d0_weights.*shape"):
        Network.from_arrays(network.architecture(), {**network.arrays(), "conv2d0_weights": np.zeros((9, 3))})
