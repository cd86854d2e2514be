"""Kaggle digit-recognizer CSV: ``label,pixel0..pixel783`` (train.csv) or ``pixel0..pixel783`` (test.csv).

Read in chunks so memory stays bounded whatever the file size; every row is validated and the
first bad cell is named by line and column.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from core.csv_ranges import count_lines, data_end, split_at_lines
from core.digits import N_CLASSES, N_PIXELS, PIXEL_COLUMNS, Dataset, DatasetError, file_digest

__all__ = ["count_lines", "data_end", "iter_kaggle_csv", "load_kaggle_csv", "split_at_lines"]


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
    dtypes = frame.dtypes.tolist()
    if not all(pd.api.types.is_numeric_dtype(t) for t in dtypes[skip:]):
        raise DatasetError(_first_bad_cell(path, frame, first_line, skip))
    # One conversion of the whole frame: selecting the columns of a 785-column frame first (or
    # asking it isna()) costs as much again as converting it, and this runs for every chunk.
    if not skip or pd.api.types.is_numeric_dtype(dtypes[0]):
        values = frame.to_numpy(dtype=np.float32)[:, skip:]
    else:
        values = frame.iloc[:, skip:].to_numpy(dtype=np.float32)
    # pandas reads an empty cell, or the missing cells of a short row, as NaN; max() is NaN then.
    if np.isnan(values.max()):
        raise DatasetError(_first_bad_cell(path, frame, first_line, skip))
    first_pixel_column = 1 + has_label  # 1-based, in the file
    has_label = has_label and read_label
    pixels = values[:, 1:] if has_label else values
    # No NaN is left, so min and max also catch an infinity (empty chunks never get here).
    if pixels.min() < 0 or pixels.max() > 255:
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
    return pixels, labels  # column-major as pandas converts it: the forward pass takes it as fast


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
                    read_label: bool = True, byte_range: tuple[int, int] | None = None, first_line: int = 2
                    ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Stream a Kaggle CSV as ``(first_row_index, pixels float32 (k, 784), labels or None)``; the
    pixels are a view that need not be C-contiguous.

    Memory stays bounded by ``chunk_rows`` whatever the file size. A ``label`` column is
    optional unless ``require_label``; with ``read_label`` False it is skipped unchecked and
    labels are None (scoring). Every other cell is validated and the first bad one raises.
    Blank lines at the end of the file are ignored; a blank line between rows is an error.

    ``byte_range`` (from ``split_at_lines``) reads only those whole lines, under the header of
    line 1; ``first_line`` is the file line its first row is on, for the line numbers in errors.
    """
    path = Path(path)
    try:
        header = pd.read_csv(path, nrows=0).columns.tolist()
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a CSV file with a header line ({exc})") from exc
    has_label = _check_header(path, header, require_label)
    width = len(header)
    row = 0
    if byte_range is None:
        start, size, line_shift = 0, data_end(path), 0  # pandas counts the header as its line 1
        options: dict = {}
    else:
        start, size, line_shift = byte_range[0], max(byte_range[1] - byte_range[0], 0), first_line - 1
        # index_col=False: a row with an extra field is an error, not an unnamed index column
        options = {"header": None, "names": header, "index_col": False}
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            with io.BufferedReader(_Prefix(fh, size), 1 << 20) as data:
                # on_bad_lines="error" makes pandas refuse a row with too many fields; too few show up
                # as NaN, and so does a blank line (kept, so that it is reported with its line number).
                reader = pd.read_csv(data, chunksize=chunk_rows, engine="c", on_bad_lines="error",
                                     skip_blank_lines=False, **options)
                for frame in reader:
                    if frame.empty:
                        continue
                    if frame.shape[1] != width:
                        raise DatasetError(f"{path}: expected {width} columns, a chunk has {frame.shape[1]}")
                    pixels, labels = _validate_chunk(path, frame, row + first_line, has_label, read_label)
                    rows = len(frame)
                    # pixels are a copy: without the frame, its tens of MB are not held (beside the next
                    # chunk's, which pandas builds before the loop rebinds ``frame``) while a caller scores.
                    del frame
                    yield row, pixels, labels
                    row += rows
    except pd.errors.ParserError as exc:
        raise DatasetError(f"{path}: {_describe_parser_error(exc, line_shift)}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: near line {row + first_line}: not UTF-8 text ({exc.reason})") from exc


def _describe_parser_error(exc: pd.errors.ParserError, line_shift: int = 0) -> str:
    # pandas says "Expected 785 fields in line 7, saw 786"; put it in our "line L: ..." form
    # (pandas's line 7 is file line 7 + line_shift when it read from the middle of the file).
    text = str(exc).strip().replace("Error tokenizing data. C error: ", "")
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, line, found = match.groups()
        return f"line {int(line) + line_shift}: expected {expected} columns, found {found}"
    return text


def load_kaggle_csv(path: str | Path, require_label: bool = True) -> Dataset:
    path = Path(path)
    parts = list(iter_kaggle_csv(path, chunk_rows=20_000, require_label=require_label))
    if not parts:
        raise DatasetError(f"{path}: the file has a header but no rows")
    X = np.concatenate([np.ascontiguousarray(p[1]) for p in parts])  # row-major: training gathers rows
    y = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
    return Dataset(X, y, str(path), file_digest(path))
