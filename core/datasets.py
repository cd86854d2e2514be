"""Dataset readers: MNIST IDX (gzip or raw), Kaggle digit-recognizer CSV, and NPZ.

Every reader returns pixels ``(n, 784)`` in 0..255 with 0 as background (MNIST's convention)
and integer labels 0..9 when the file has them. Bad data raises ``DatasetError`` naming the
file and the place (byte offset, line and column) so the user can fix it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import os
import re
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

N_PIXELS = 784
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
PIXEL_COLUMNS = [f"pixel{i}" for i in range(N_PIXELS)]
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
_GZIP_MAGIC = b"\x1f\x8b"


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


# ---------------------------------------------------------------- IDX


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


# ---------------------------------------------------------------- Kaggle CSV


def _check_header(path: Path, columns: list[str], require_label: bool) -> bool:
    """Validate the header; returns whether a ``label`` column leads it."""
    has_label = bool(columns) and columns[0] == "label"
    pixel_columns = columns[1:] if has_label else columns
    if require_label and not has_label:
        raise DatasetError(f"{path}: line 1: first column must be 'label' for training data, "
                           f"found {columns[0] if columns else 'nothing'!r}")
    if pixel_columns != PIXEL_COLUMNS:
        if len(pixel_columns) != N_PIXELS:
            raise DatasetError(f"{path}: line 1: expected {N_PIXELS} pixel columns pixel0..pixel783"
                               f"{' after label' if has_label else ''}, found {len(pixel_columns)}")
        wrong = next(i for i, (a, b) in enumerate(zip(pixel_columns, PIXEL_COLUMNS, strict=True)) if a != b)
        raise DatasetError(f"{path}: line 1: column {wrong + 1 + has_label} is named "
                           f"{pixel_columns[wrong]!r}, expected {PIXEL_COLUMNS[wrong]!r}")
    return has_label


def _first_bad_cell(path: Path, frame: pd.DataFrame, first_line: int, skip: int = 0) -> str:
    """Describe the first cell that is not a number (or is empty) as 'line L, column C (name)';
    the first ``skip`` columns (an ignored label) are not looked at."""
    checked = frame.columns[skip:]
    bad_cells = pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce") for c in checked}).isna().to_numpy()
    if not bad_cells.any():  # e.g. a column pandas read as True/False: parsed, yet not pixel numbers
        return f"{path}: lines {first_line}..{first_line + len(frame) - 1}: cells that are not numbers"
    row, column_index = np.argwhere(bad_cells)[0]  # row-major: the first bad cell in reading order
    column_index += skip
    line, column = first_line + int(row), frame.columns[column_index]
    value = frame[column].iloc[row]
    if pd.isna(value):
        # pandas pads a short row (or a blank line) with NaN; say so rather than "empty cell".
        fields = _count_fields(path, line)
        if fields != frame.shape[1]:
            return f"{path}: line {line}: expected {frame.shape[1]} columns, found {fields}"
        return f"{path}: line {line}, column {column_index + 1} ({column}): an empty cell"
    return f"{path}: line {line}, column {column_index + 1} ({column}): {value!r} is not a number"


def _count_fields(path: Path, line: int) -> int:
    """Comma-separated fields on 1-based ``line`` (only read on the error path)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = next(itertools.islice(fh, line - 1, None), "").rstrip("\r\n")
    return text.count(",") + 1 if text else 0


def _validate_chunk(path: Path, frame: pd.DataFrame, first_line: int, has_label: bool, read_label: bool = True
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Turn one parsed chunk into float32 pixels and int64 labels, or raise naming the first bad cell.

    With ``read_label`` False a leading label column is not looked at (scoring ignores it).
    """
    skip = int(has_label and not read_label)
    checked = frame.iloc[:, skip:]
    if not all(pd.api.types.is_numeric_dtype(t) for t in checked.dtypes) or checked.isna().to_numpy().any():
        raise DatasetError(_first_bad_cell(path, frame, first_line, skip))
    values = checked.to_numpy(dtype=np.float32)
    first_pixel_column = 1 + has_label  # 1-based, in the file
    has_label = has_label and read_label
    pixels = values[:, 1:] if has_label else values
    if not np.isfinite(pixels).all() or pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        bad_row, bad_col = np.argwhere(~(np.isfinite(pixels) & (pixels >= 0) & (pixels <= 255)))[0]
        raise DatasetError(f"{path}: line {first_line + bad_row}, column {bad_col + first_pixel_column} "
                           f"(pixel{bad_col}): value {pixels[bad_row, bad_col]:g} is outside 0..255")
    labels = None
    if has_label:
        raw = values[:, 0]
        bad = np.flatnonzero((raw != np.round(raw)) | (raw < 0) | (raw > N_CLASSES - 1))
        if bad.size:
            raise DatasetError(f"{path}: line {first_line + bad[0]}, column 1 (label): "
                               f"value {raw[bad[0]]:g} is not a digit label 0..9")
        labels = raw.astype(np.int64)
    return np.ascontiguousarray(pixels), labels


def data_end(path: Path) -> int:
    """Byte offset just past the last non-blank character: blank lines (and spaces) at the end
    of a file are not rows. A blank line before that is still a row, and an error."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - (1 << 16))
            fh.seek(start)
            block = fh.read(end - start)
            stripped = block.rstrip(b" \t\r\n")
            if stripped:
                return start + len(stripped)
            end = start
    return 0


class _Prefix(io.RawIOBase):
    """The first ``size`` bytes of a binary file, for pandas to parse without the blank tail."""

    def __init__(self, fh: IO[bytes], size: int) -> None:
        super().__init__()
        self._fh, self._left = fh, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._fh.read(min(len(buffer), self._left))
        buffer[:len(data)] = data
        self._left -= len(data)
        return len(data)


def iter_kaggle_csv(path: str | Path, chunk_rows: int = 10_000, require_label: bool = False,
                    read_label: bool = True) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Stream a Kaggle CSV as ``(first_row_index, pixels float32 (k, 784), labels or None)``.

    Memory stays bounded by ``chunk_rows`` whatever the file size. A ``label`` column is
    optional unless ``require_label``; with ``read_label`` False it is skipped unchecked and
    labels are None (scoring). Every other cell is validated and the first bad one raises.
    Blank lines at the end of the file are ignored; a blank line between rows is an error.
    """
    path = Path(path)
    try:
        header = pd.read_csv(path, nrows=0).columns.tolist()
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a CSV file with a header line ({exc})") from exc
    has_label = _check_header(path, header, require_label)
    width = len(header)
    row = 0
    try:
        with open(path, "rb") as fh, io.BufferedReader(_Prefix(fh, data_end(path)), 1 << 20) as data:
            # on_bad_lines="error" makes pandas refuse a row with too many fields; too few show up as
            # NaN, and so does a blank line (kept, so that it is reported with its line number).
            reader = pd.read_csv(data, chunksize=chunk_rows, engine="c", on_bad_lines="error",
                                 skip_blank_lines=False)
            for frame in reader:
                if frame.empty:
                    continue
                if frame.shape[1] != width:
                    raise DatasetError(f"{path}: expected {width} columns, a chunk has {frame.shape[1]}")
                pixels, labels = _validate_chunk(path, frame, row + 2, has_label, read_label)
                yield row, pixels, labels
                row += len(frame)
    except pd.errors.ParserError as exc:
        raise DatasetError(f"{path}: {_describe_parser_error(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: near line {row + 2}: not UTF-8 text ({exc.reason})") from exc


def _describe_parser_error(exc: pd.errors.ParserError) -> str:
    # pandas says "Expected 785 fields in line 7, saw 786"; put it in our "line L: ..." form.
    text = str(exc).strip().replace("Error tokenizing data. C error: ", "")
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, line, found = match.groups()
        return f"line {line}: expected {expected} columns, found {found}"
    return text


def load_kaggle_csv(path: str | Path, require_label: bool = True) -> Dataset:
    path = Path(path)
    parts = list(iter_kaggle_csv(path, chunk_rows=20_000, require_label=require_label))
    if not parts:
        raise DatasetError(f"{path}: the file has a header but no rows")
    X = np.concatenate([p[1] for p in parts])
    y = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
    return Dataset(X, y, str(path), file_digest(path))


# ---------------------------------------------------------------- NPZ


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


# ---------------------------------------------------------------- dispatch


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
