"""Fixtures for the API tests: real digits, the base registry's models loaded locally, encoders."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.datasets import Dataset
from core.model import Model
from core.registry import ModelRegistry


@pytest.fixture(scope="session")
def local_models(base_registry: Path) -> dict[int, Model]:
    """Versions 1 and 2 of the base registry, loaded in the test process to compute expectations."""
    registry = ModelRegistry(base_registry)
    return {v: registry.load("mnist", version=v) for v in registry.versions("mnist")}


@pytest.fixture(scope="session")
def digits(mnist: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The first 200 test digits (pixels as int 0..255, labels)."""
    return mnist.X[:200].astype(np.int64), mnist.y[:200].astype(np.int64)


def png_bytes(pixels: np.ndarray, invert: bool = False, scale: int = 1) -> bytes:
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8).reshape(28, 28))
    if invert:
        image = Image.fromarray(255 - np.asarray(image))
    if scale != 1:
        image = image.resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
