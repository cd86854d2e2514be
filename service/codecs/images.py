"""MNIST-style preprocessing of uploaded PNG or JPEG images into 784 pixels in 0..255.

MNIST digits were made by fitting each scanned digit into a 20x20 box (keeping the aspect
ratio, anti-aliased) and placing it in a 28x28 field so its centre of mass sits in the
middle, as light ink on black. A photo of a pen digit on paper is the opposite polarity, has
uneven lighting, sensor noise and lots of empty margin, so we:

1. decode (honouring the EXIF rotation of phone photos) and flatten alpha onto white, within
   a memory budget (``service.codecs.image_decode``);
2. make the ink bright: invert when the border (the paper) is lighter than mid-grey;
3. on photo-sized images, subtract a smooth quadratic fitted to the background (robustly, with
   the ink excluded) so a lighting gradient does not turn into "ink", then median-filter specks;
4. threshold with Otsu's method to find the ink, crop to its bounding box;
5. scale into 20x20, centre by centre of mass in 28x28.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from service.codecs.image_decode import (
    MAX_IMAGE_DECODED_BYTES,
    MAX_IMAGE_PIXELS,
    ImageBudget,
    ImageBusy,
    ImageError,
    ImageTooLarge,
    decode_image,
)

__all__ = ["MAX_IMAGE_DECODED_BYTES", "MAX_IMAGE_PIXELS", "ImageBudget", "ImageBusy", "ImageError", "ImageTooLarge",
           "decode_image", "image_to_pixels", "to_mnist"]

PHOTO_SIDE = 56  # below this an image is treated as already digit-sized (no lighting fit)
BOX, FIELD = 20, 28


def _border(values: np.ndarray) -> np.ndarray:
    width = max(1, min(values.shape) // 20)
    return np.concatenate([values[:width].ravel(), values[-width:].ravel(),
                           values[:, :width].ravel(), values[:, -width:].ravel()])


def _background_surface(ink: np.ndarray) -> np.ndarray:
    """A quadratic surface through the background, fitted on a coarse grid with the ink left out.

    Each round drops pixels much brighter than the current fit (ink) and refits, so strokes
    do not pull the surface up; a quadratic is smooth enough to follow a lighting gradient or
    vignette but cannot follow a pen stroke.
    """
    height, width = ink.shape
    scale = min(1.0, 64 / max(height, width))
    grid_h, grid_w = max(2, round(height * scale)), max(2, round(width * scale))
    coarse = np.asarray(Image.fromarray(ink).resize((grid_w, grid_h), Image.Resampling.BOX), dtype=np.float64)

    def design(rows: int, cols: int) -> np.ndarray:
        y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
        return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)

    features, target = design(grid_h, grid_w), coarse.ravel()
    # Start from the darker 60% (the ink is bright and a minority), then let the fit decide.
    keep = target <= np.percentile(target, 60)
    for _ in range(4):
        coef, *_ = np.linalg.lstsq(features[keep], target[keep], rcond=None)
        residual = target - features @ coef
        spread = 1.4826 * np.median(np.abs(residual[keep] - np.median(residual[keep])))
        keep = residual < max(3.0 * spread, 0.02)
        if keep.sum() < 6:
            break
    # Evaluated by broadcasting a column against a row: the full-size design matrix would be six
    # float64 values per pixel (12 MiB at 512x512) for a result of one float32 per pixel.
    y, x = np.linspace(-1, 1, height)[:, None], np.linspace(-1, 1, width)[None, :]
    c0, cx, cy, cxx, cxy, cyy = coef
    surface = (c0 + cy * y + cyy * y * y) + x * (cx + cxy * y) + cxx * x * x
    return surface.astype(np.float32)


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold on values in 0..1: the cut maximising the between-class variance."""
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    weight = hist.cumsum()
    mean = (hist * edges[:-1]).cumsum()
    total_w, total_mean = weight[-1], mean[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight - mean * total_w) ** 2 / (weight * (total_w - weight))
    return float(edges[int(np.nanargmax(between[:-1]))] + edges[1])


def to_mnist(image: Image.Image) -> np.ndarray:
    """A grayscale PIL image -> float32 (784,) in 0..255, light digit on black, MNIST-centred."""
    values = np.asarray(image, dtype=np.float32) / 255.0
    if np.median(_border(values)) > 0.5:
        values = 1.0 - values  # dark ink on light paper: make the ink the bright part
    photo = min(values.shape) >= PHOTO_SIDE
    if photo:
        ink = np.clip(values - _background_surface(values), 0.0, 1.0)
        ink = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).filter(ImageFilter.MedianFilter(3)),
                         dtype=np.float32) / 255.0
    else:
        ink = np.clip(values - np.median(_border(values)), 0.0, 1.0)
    if ink.max() < 0.08:
        raise ImageError("no digit found: the image is blank or has no contrast")
    threshold = _otsu(ink / ink.max()) * ink.max()
    mask = ink > threshold
    strong = float(np.percentile(ink[mask], 90))
    soft = np.where(ink >= threshold * 0.5, np.clip(ink / strong, 0.0, 1.0), 0.0).astype(np.float32)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = soft[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    # Fit the longer side to 20 pixels, anti-aliased, as NIST's digits were.
    height, width = crop.shape
    factor = BOX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    boxed = np.clip(np.asarray(Image.fromarray(crop, mode="F").resize(size, Image.Resampling.LANCZOS)), 0.0, 1.0)
    return _centre_by_mass(boxed).ravel() * np.float32(255.0)


def _centre_by_mass(boxed: np.ndarray) -> np.ndarray:
    total = float(boxed.sum())
    height, width = boxed.shape
    if total <= 0:
        cy, cx = (height - 1) / 2, (width - 1) / 2
    else:
        cy = float((boxed.sum(axis=1) * np.arange(height)).sum() / total)
        cx = float((boxed.sum(axis=0) * np.arange(width)).sum() / total)
    top, left = round(FIELD / 2 - cy), round(FIELD / 2 - cx)
    top, left = min(max(top, 0), FIELD - height), min(max(left, 0), FIELD - width)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top:top + height, left:left + width] = boxed
    return field


def image_to_pixels(data: bytes, budget: ImageBudget | None = None) -> np.ndarray:
    """Encoded image bytes -> float32 (784,) in 0..255; raises ``ImageError`` with the reason."""
    return to_mnist(decode_image(data, budget))
