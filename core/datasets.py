"""Dataset readers: MNIST IDX (gzip or raw), Kaggle digit-recognizer CSV, and NPZ, behind one
``load_dataset``.

Every reader returns pixels ``(n, 784)`` in 0..255 with 0 as background (MNIST's convention)
and integer labels 0..9 when the file has them. Bad data raises ``DatasetError`` naming the
file and the place (byte offset, line and column) so the user can fix it. The IDX and CSV
readers live in ``core.idx`` and ``core.kaggle_csv``; this module re-exports them.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from core.digits import (
    IMAGE_SHAPE,
    N_CLASSES,
    N_PIXELS,
    PIXEL_COLUMNS,
    Dataset,
    DatasetError,
    file_digest,
)
from core.idx import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    find_idx_images,
    labels_path_for,
    load_idx,
    load_idx_dataset,
    load_idx_images,
    load_idx_labels,
)
from core.kaggle_csv import data_end, iter_kaggle_csv, load_kaggle_csv

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "IMAGE_SHAPE", "N_CLASSES", "N_PIXELS", "PIXEL_COLUMNS", "Dataset",
           "DatasetError", "data_end", "file_digest", "find_idx_images", "iter_kaggle_csv", "labels_path_for",
           "load_dataset", "load_idx", "load_idx_dataset", "load_idx_images", "load_idx_labels", "load_kaggle_csv",
           "load_npz"]


def load_npz(path: str | Path) -> Dataset:
    path = Path(path)
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # an .npz is a zip archive
            raise DatasetError(f"{path}: not an .npz archive (no zip header at byte 0)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "X" not in archive:
                raise DatasetError(f"{path}: no array 'X' (found {', '.join(archive.files) or 'none'})")
            X = archive["X"]
            y = archive["y"] if "y" in archive.files else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from exc
    if X.ndim == 3 and X.shape[1:] == IMAGE_SHAPE:
        X = X.reshape(len(X), N_PIXELS)
    if X.ndim != 2 or X.shape[1] != N_PIXELS:
        raise DatasetError(f"{path}: X has shape {X.shape}, expected (n, 784) or (n, 28, 28)")
    if not np.issubdtype(X.dtype, np.number):
        raise DatasetError(f"{path}: X has dtype {X.dtype}, expected numbers")
    finite = np.isfinite(X) & (X >= 0) & (X <= 255)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise DatasetError(f"{path}: X[{row}, {col}] = {X[row, col]} is outside 0..255")
    if y is not None:
        if not np.issubdtype(y.dtype, np.number):
            raise DatasetError(f"{path}: y has dtype {y.dtype}, expected integer labels 0..9")
        if y.shape != (len(X),):
            raise DatasetError(f"{path}: y has shape {y.shape}, expected ({len(X)},)")
        bad = np.flatnonzero((y < 0) | (y > N_CLASSES - 1) | (y != np.round(y)))
        if bad.size:
            raise DatasetError(f"{path}: y[{bad[0]}] = {y[bad[0]]} is not a digit label 0..9")
        y = y.astype(np.int64)
    X = X if X.dtype == np.uint8 else X.astype(np.float32)
    return Dataset(X, y, str(path), file_digest(path))


def load_dataset(path: str | Path, require_labels: bool = True) -> Dataset:
    """Load any supported dataset: an MNIST directory or IDX images file, a CSV, or an NPZ."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    if path.is_dir():
        dataset = load_idx_dataset(find_idx_images(path))
    elif "idx3-ubyte" in path.name:
        dataset = load_idx_dataset(path)
    elif path.suffix.lower() == ".npz":
        dataset = load_npz(path)
    elif path.suffix.lower() == ".csv":
        dataset = load_kaggle_csv(path, require_label=require_labels)
    else:
        raise DatasetError(f"{path}: unknown dataset format (expected an MNIST directory, "
                           f"*-images-idx3-ubyte[.gz], .csv or .npz)")
    if require_labels and dataset.y is None:
        raise DatasetError(f"{path}: has no labels, which training and evaluation need")
    if len(dataset) == 0:
        raise DatasetError(f"{path}: contains no images")
    return dataset
