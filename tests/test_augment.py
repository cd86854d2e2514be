"""Distortions for training (affine and elastic) and the averaged weights."""

from __future__ import annotations

import numpy as np
import pytest

from core.datasets import Dataset
from core.network import Network
from core.training_config import TrainConfig
from trainer.augment import _bilinear, random_distort
from trainer.training import WeightAverage, train

# Learns 2,000 digits to ~88% in 4 epochs: enough to tell learning from noise.
LEARNS = dict(hidden=[64], dropout=0.0, lr=0.003, epochs=4, augment_shift=0, early_stopping=0)


def test_no_distortion_returns_the_images_unchanged(mnist: Dataset) -> None:
    images = mnist.X[:50].astype(np.float32) / 255
    out = random_distort(images, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == (50, 784)
    np.testing.assert_allclose(out, images, atol=1e-6)


def test_bilinear_sampling_moves_by_whole_and_half_pixels_with_background_beyond_the_edge() -> None:
    image = np.arange(784, dtype=np.float32).reshape(1, 28, 28)
    rows, cols = (g[None].astype(np.float32) for g in np.mgrid[0:28, 0:28])
    moved = _bilinear(image, rows - 1, cols + 2).reshape(1, 28, 28)  # each pixel reads 1 up, 2 right
    expected = np.zeros_like(image)
    expected[:, 1:, :26] = image[:, :27, 2:]
    np.testing.assert_array_equal(moved, expected)
    halfway = _bilinear(image, rows, cols + 0.5).reshape(28, 28)
    np.testing.assert_allclose(halfway[:, :27], (image[0, :, :27] + image[0, :, 1:]) / 2)
    assert (halfway[:, 27] == image[0, :, 27] / 2).all()  # half of the pixel, half of the background


def test_distortions_are_bounded_seeded_and_differ_per_image(mnist: Dataset) -> None:
    images = mnist.X[:200].astype(np.float32) / 255
    first = random_distort(images, np.random.default_rng(3), shift=2, rotate=15, scale=0.1, elastic=34)
    again = random_distort(images, np.random.default_rng(3), shift=2, rotate=15, scale=0.1, elastic=34)
    np.testing.assert_array_equal(first, again)
    assert first.min() >= 0 and first.max() <= 1
    # The ink stays under an affine map: scaling by at most 1.1x changes its area by at most 21%, and
    # resampling blurs a little. (An elastic field stretches and squeezes strokes much more.)
    affine = random_distort(images, np.random.default_rng(3), shift=2, rotate=15, scale=0.1)
    ratio = affine.sum(axis=1) / images.sum(axis=1)
    assert ratio.min() > 0.75 and ratio.max() < 1.3, (ratio.min(), ratio.max())
    # Each image gets its own distortion: the same digit twice comes out two ways.
    twice = random_distort(np.repeat(images[:1], 2, axis=0), np.random.default_rng(0), rotate=15)
    assert np.abs(twice[0] - twice[1]).max() > 0.1


def test_a_rotation_turns_a_bar_about_the_centre_by_the_drawn_angle() -> None:
    bar = np.zeros((1, 28, 28), dtype=np.float32)
    bar[0, 13:15, 4:24] = 1.0  # horizontal, through the centre (13.5, 13.5)
    turned = random_distort(np.repeat(bar.reshape(1, 784), 64, axis=0), np.random.default_rng(0), rotate=45)
    drawn = np.random.default_rng(0).uniform(-45, 45, 64)  # the angles random_distort draws first
    # The bar's orientation from its second moments, in degrees; rows grow downwards, so a positive
    # angle is clockwise as displayed, as random_distort's angles are.
    ys, xs = np.mgrid[0:28, 0:28]
    turned = turned.reshape(64, 28, 28)
    mass = turned.sum(axis=(1, 2))
    cy, cx = (turned * ys).sum(axis=(1, 2)) / mass, (turned * xs).sum(axis=(1, 2)) / mass
    assert np.abs(cy - 13.5).max() < 0.3 and np.abs(cx - 13.5).max() < 0.3  # about the centre
    dy, dx = ys - cy[:, None, None], xs - cx[:, None, None]
    mu11, mu20, mu02 = ((turned * m).sum(axis=(1, 2)) for m in (dx * dy, dx * dx, dy * dy))
    measured = np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02))
    assert np.abs(measured - drawn).max() < 2.0, np.c_[drawn, measured][:5]


def test_weight_average_ramps_up_and_follows_the_weights() -> None:
    network = Network.mlp([4, 3])
    average = WeightAverage(network, 0.99)
    start = average.arrays["dense0_weights"].copy()
    network.dense_layers[0].weights[...] = start + 1.0
    average.update(network, 1)  # decay (1 + 1) / (10 + 1): mostly the new weights at first
    np.testing.assert_allclose(average.arrays["dense0_weights"], start + 9 / 11, rtol=1e-5)
    for step in range(2, 2000):
        average.update(network, step)
    np.testing.assert_allclose(average.arrays["dense0_weights"], start + 1.0, rtol=1e-4)


def test_training_with_distortions_and_averaging_learns(mnist: Dataset) -> None:
    train_set = Dataset(mnist.X[:2000], mnist.y[:2000], "t", "x")
    dev_set = Dataset(mnist.X[8000:9000], mnist.y[8000:9000], "d", "x")
    plain = train(train_set, dev_set, TrainConfig(**LEARNS))
    distorted = train(train_set, dev_set, TrainConfig(**LEARNS, augment_rotate=10, augment_scale=0.1,
                                                      augment_elastic=20, ema=0.99))
    assert distorted.metrics["dev_accuracy"] > 0.8 and plain.metrics["dev_accuracy"] > 0.8
    # The published weights are the average, not the last step's: another network than the plain run's.
    assert not np.array_equal(plain.model.network.arrays()["dense0_weights"],
                              distorted.model.network.arrays()["dense0_weights"])
    # The dev figure of the last epoch is the averaged network's, which is what train returns.
    assert distorted.curve[-1]["dev_accuracy"] == pytest.approx(distorted.metrics["dev_accuracy"])
