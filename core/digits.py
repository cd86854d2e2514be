"""What every dataset reader shares: the digit image's shape, ``Dataset`` and ``DatasetError``.

Pixels are ``(n, 784)`` in 0..255 with 0 as background (MNIST's convention), labels 0..9.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_PIXELS = 784
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
PIXEL_COLUMNS = [f"pixel{i}" for i in range(N_PIXELS)]


class DatasetError(ValueError):
    """A data file that cannot be used, with the file and the place that is wrong."""


@dataclass
class Dataset:
    """Pixels ``X`` (n, 784) in 0..255 and labels ``y`` (n,) or None; ``digest`` identifies the source."""

    X: np.ndarray
    y: np.ndarray | None
    source: str
    digest: str

    def __len__(self) -> int:
        return len(self.X)

    def tail(self, rows: int) -> Dataset:
        """The last ``rows`` rows (all of them when ``rows`` is the length), same source and digest."""
        if rows >= len(self):
            return self
        start = len(self) - max(rows, 0)  # not X[-rows:]: that is every row when rows is 0
        return Dataset(self.X[start:], None if self.y is None else self.y[start:],
                       f"{self.source} (last {rows})", self.digest)

    def split_last(self, fraction: float) -> tuple[Dataset, Dataset]:
        """(first rows, last ``fraction`` of rows) in file order: the dev split is the file's tail.

        Both sides get at least one row or ``DatasetError`` says why: an empty training side
        would reach the training loop as a zero-row batch.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"dev fraction must be between 0 and 1, got {fraction}")
        n_dev = max(1, round(len(self) * fraction))
        cut = len(self) - n_dev
        if cut < 1:
            raise DatasetError(f"{self.source}: {len(self)} row(s) cannot be split into training and dev rows "
                               f"with dev fraction {fraction:g} (the dev split would take {n_dev}); each side "
                               f"needs at least one row: use more data or a smaller dev fraction")
        y_head = None if self.y is None else self.y[:cut]
        y_tail = None if self.y is None else self.y[cut:]
        return (Dataset(self.X[:cut], y_head, self.source, self.digest),
                Dataset(self.X[cut:], y_tail, f"{self.source} (last {n_dev})", self.digest))


def file_digest(*paths: Path) -> str:
    """sha256 over the bytes of ``paths`` in order (for a directory dataset: images then labels)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
