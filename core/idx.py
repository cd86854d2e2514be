"""MNIST IDX files, gzip or raw: ``*-images-idx3-ubyte[.gz]`` with ``*-labels-idx1-ubyte[.gz]`` beside it.

Errors name the file and the byte or index that is wrong (magic number, truncation, labels).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from core.digits import (
    IMAGE_SHAPE,
    N_CLASSES,
    N_PIXELS,
    Dataset,
    DatasetError,
    file_digest,
)

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
_GZIP_MAGIC = b"\x1f\x8b"

def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path}: corrupt gzip stream ({exc})") from exc
    return raw


def load_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a uint8 array of its declared shape."""
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: file is {len(data)} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise DatasetError(f"{path}: wrong magic number 0x{magic:08x} at byte 0, "
                           f"expected 0x{expected_magic:08x}")
    n_dims = magic & 0xFF
    header_end = 4 + 4 * n_dims
    if len(data) < header_end:
        raise DatasetError(f"{path}: truncated header ({len(data)} bytes, need {header_end})")
    dims = struct.unpack(f">{n_dims}I", data[4:header_end])
    expected = int(np.prod(dims))
    body = len(data) - header_end
    if body < expected:
        raise DatasetError(f"{path}: truncated: header declares {'x'.join(map(str, dims))} = {expected} "
                           f"bytes of data, file has {body} after the {header_end}-byte header")
    if body > expected:
        raise DatasetError(f"{path}: {body - expected} unexpected trailing bytes after the data")
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header_end).reshape(dims)


def load_idx_images(path: str | Path) -> np.ndarray:
    images = load_idx(path, IDX_IMAGES_MAGIC)
    if images.shape[1:] != IMAGE_SHAPE:
        raise DatasetError(f"{path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    return images.reshape(len(images), N_PIXELS)


def load_idx_labels(path: str | Path) -> np.ndarray:
    labels = load_idx(path, IDX_LABELS_MAGIC).astype(np.int64)
    bad = np.flatnonzero(labels >= N_CLASSES)
    if bad.size:
        raise DatasetError(f"{path}: label {labels[bad[0]]} at index {bad[0]} is outside 0..9")
    return labels


def labels_path_for(images_path: Path) -> Path:
    """``x-images-idx3-ubyte.gz`` -> the existing one of ``x-labels-idx1-ubyte[.gz]`` beside it."""
    stem = images_path.name.replace("images-idx3", "labels-idx1").removesuffix(".gz")
    for name in (stem + ".gz", stem):
        candidate = images_path.with_name(name)
        if candidate.exists():
            return candidate
    raise DatasetError(f"{images_path}: no labels file {stem}[.gz] beside it")


def find_idx_images(directory: Path) -> Path:
    """The images file in an MNIST directory; with both splits present the training one wins."""
    found = sorted(p for p in directory.iterdir() if "images-idx3-ubyte" in p.name)
    if not found:
        raise DatasetError(f"{directory}: no *-images-idx3-ubyte[.gz] file in this directory")
    train = [p for p in found if p.name.startswith("train")]
    return (train or found)[0]


def load_idx_dataset(images_path: Path) -> Dataset:
    labels_path = labels_path_for(images_path)
    X, y = load_idx_images(images_path), load_idx_labels(labels_path)
    if len(X) != len(y):
        raise DatasetError(f"{images_path}: {len(X)} images but {labels_path.name} has {len(y)} labels")
    return Dataset(X, y, str(images_path), file_digest(images_path, labels_path))
