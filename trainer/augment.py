"""Vectorised data augmentation: random translations of whole batches, no Python loop per image.

Shifting a digit by a pixel or two is the cheapest augmentation that still teaches an MLP
(which has no built-in translation invariance) that position does not matter.
"""

from __future__ import annotations

import numpy as np

SIDE = 28


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each row of ``images`` (n, 784) by its own random (dy, dx) in [-max_shift, max_shift].

    The batch is padded with background once, then every image reads its 28x28 window from a
    per-image offset through one fancy-indexing gather.
    """
    if max_shift <= 0:
        return images
    n = len(images)
    padded = np.pad(images.reshape(n, SIDE, SIDE), ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    offsets = rng.integers(0, 2 * max_shift + 1, size=(n, 2))
    rows = offsets[:, 0, None] + np.arange(SIDE)  # (n, 28)
    cols = offsets[:, 1, None] + np.arange(SIDE)
    shifted = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return shifted.reshape(n, SIDE * SIDE)


def _smoothing_matrix(sigma: float) -> np.ndarray:
    """``G`` (28, 28) with ``G @ field @ G.T`` = the field convolved with a Gaussian of ``sigma``
    pixels (zero outside the image): a separable blur as two small matrix products."""
    offsets = np.arange(SIDE)[:, None] - np.arange(SIDE)[None, :]
    kernel = np.exp(-(offsets ** 2) / (2.0 * sigma * sigma))
    return (kernel / (sigma * np.sqrt(2.0 * np.pi))).astype(np.float32)  # each full row sums to ~1


def random_distort(images: np.ndarray, rng: np.random.Generator, shift: float = 0.0, rotate: float = 0.0,
                   scale: float = 0.0, elastic: float = 0.0, elastic_sigma: float = 4.0) -> np.ndarray:
    """Each row of ``images`` (n, 784) through its own random affine map and elastic distortion.

    Per image: a shift of up to ``shift`` pixels each way, a rotation of up to ``rotate`` degrees
    about the centre (a positive angle turns the digit clockwise as displayed), a scaling by up to
    ``scale`` (0.1: 0.9x to 1.1x), and, with ``elastic`` > 0, Simard et al.'s (2003) elastic
    distortion: a random displacement field of uniform(-1, 1) values blurred by a Gaussian of
    ``elastic_sigma`` pixels and scaled by ``elastic``. Every output pixel samples the input
    bilinearly where the inverse map sends it (background outside), so the whole
    batch is a few array operations and four gathers, no loop over images.
    """
    n = len(images)
    centre = (SIDE - 1) / 2.0
    grid_y, grid_x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) - np.float32(centre)
    angle = np.deg2rad(rng.uniform(-rotate, rotate, n)).astype(np.float32)
    zoom = rng.uniform(1.0 - scale, 1.0 + scale, n).astype(np.float32)
    move = rng.uniform(-shift, shift, (n, 2)).astype(np.float32)
    # Inverse map: the output pixel p samples the input at R(-angle) p / zoom + centre - move.
    cos = (np.cos(angle) / zoom)[:, None, None]
    sin = (np.sin(angle) / zoom)[:, None, None]
    source_x = cos * grid_x + sin * grid_y + np.float32(centre) - move[:, 1, None, None]
    source_y = cos * grid_y - sin * grid_x + np.float32(centre) - move[:, 0, None, None]
    if elastic > 0:
        blur = _smoothing_matrix(elastic_sigma)
        for source in (source_x, source_y):
            field = rng.uniform(-1.0, 1.0, (n, SIDE, SIDE)).astype(np.float32)
            source += np.float32(elastic) * (blur @ field @ blur.T)
    return _bilinear(images.reshape(n, SIDE, SIDE), source_y, source_x).reshape(n, SIDE * SIDE)


def _bilinear(images: np.ndarray, source_y: np.ndarray, source_x: np.ndarray) -> np.ndarray:
    """``images`` (n, 28, 28) sampled at fractional (source_y, source_x) per output pixel, with
    background (0) beyond the edge: a one-pixel zero border, and coordinates clipped into it."""
    n = len(images)
    side = SIDE + 2
    padded = np.zeros((n, side, side), dtype=images.dtype)
    padded[:, 1:-1, 1:-1] = images
    flat = padded.reshape(n, side * side)
    y = np.clip(source_y + 1, 0, side - 1)  # +1: the border; clipped points read only zeros
    x = np.clip(source_x + 1, 0, side - 1)
    # The last border row and column have no neighbour beyond: start there one pixel earlier, weight 1.
    y0 = np.minimum(np.floor(y), side - 2).astype(np.int32)
    x0 = np.minimum(np.floor(x), side - 2).astype(np.int32)
    wy, wx = (y - y0).reshape(n, -1), (x - x0).reshape(n, -1)
    top_left = (y0 * side + x0).reshape(n, -1)

    def at(offset: int) -> np.ndarray:
        return np.take_along_axis(flat, top_left + offset, axis=1)

    top = at(0) * (1 - wx) + at(1) * wx
    bottom = at(side) * (1 - wx) + at(side + 1) * wx
    return (top * (1 - wy) + bottom * wy).astype(images.dtype, copy=False)
