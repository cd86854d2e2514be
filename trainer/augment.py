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
