"""Synthetic "phone photos" of real MNIST digits: dark pen ink on lit paper, noisy, blurred, JPEG.

There is no camera (nor internet) in the test environment, so each photo is made from a real
MNIST digit the way a photo of a pen digit differs from MNIST: opposite polarity, a big
off-centre digit on a large page, an uneven lighting gradient, sensor noise, lens blur and
JPEG compression.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def digit_photo(digit: np.ndarray, seed: int, size: tuple[int, int] = (300, 400)) -> bytes:
    """JPEG bytes of ``digit`` (784 pixels, 0..255) photographed on paper; ``size`` is (width, height)."""
    rng = np.random.default_rng(seed)
    width, height = size
    scale = int(rng.integers(6, 9))  # the 28x28 field becomes 168..224 pixels tall
    ink = Image.fromarray(digit.reshape(28, 28).astype(np.uint8)).resize((28 * scale, 28 * scale),
                                                                        Image.Resampling.BICUBIC)
    ink_layer = np.zeros((height, width), dtype=np.float32)
    top = int(rng.integers(0, height - 28 * scale))
    left = int(rng.integers(0, width - 28 * scale))
    ink_layer[top:top + 28 * scale, left:left + 28 * scale] = np.asarray(ink, dtype=np.float32) / 255.0

    # Paper lit from one side: brightness falls from ~235 to ~150 across the page.
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * x / width + np.sin(angle) * y / height)
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    paper = 235.0 - 85.0 * ramp
    photo = paper * (1.0 - 0.75 * ink_layer)  # blue-black ink absorbs most of the light
    photo += rng.normal(0.0, 5.0, photo.shape)
    rgb = np.stack([photo * 0.98, photo * 0.97, photo * 1.0], axis=-1)  # slightly cool white balance
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(1.2))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()
