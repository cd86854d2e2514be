"""Rows of a dataset written the way clients send them: Kaggle CSV layouts, V1 JSON requests, and a
digit as a scanned-looking PNG for the image endpoints.

``python -m trainer export`` turns MNIST files into ready-made request bodies for the README's
curl examples, for load tests and for trying the service without writing code.
"""

from __future__ import annotations

import io
import json
from typing import BinaryIO, TextIO

import numpy as np

from core.datasets import PIXEL_COLUMNS, Dataset

TEXT_FORMATS = ("csv", "train-csv", "v1-json")  # export_rows
EXPORT_FORMATS = (*TEXT_FORMATS, "png")  # png: export_png, one binary image
PNG_SCALE = 4  # 28x28 -> 112x112: an image the API must shrink, centre and invert, as it does a photo


def export_png(dataset: Dataset, row: int, out: BinaryIO) -> None:
    """Row ``row`` as a PNG of dark ink on white paper, ``PNG_SCALE`` times larger: what a scan of a
    handwritten digit looks like (the API inverts, crops and centres it back into MNIST's form)."""
    from PIL import Image  # here, not at import: the CSV and JSON formats do not need Pillow

    if not 0 <= row < len(dataset):
        raise ValueError(f"--start {row} is outside the dataset's {len(dataset)} rows")
    ink = np.clip(np.rint(dataset.X[row]), 0, 255).astype(np.uint8).reshape(28, 28)
    image = Image.fromarray(255 - ink, mode="L").resize((28 * PNG_SCALE, 28 * PNG_SCALE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    out.write(buffer.getvalue())


def export_rows(dataset: Dataset, start: int, count: int, fmt: str, out: TextIO) -> int:
    """Write rows ``start .. start+count`` of ``dataset`` to ``out``; returns how many were written.

    ``csv`` is Kaggle's test.csv layout (``pixel0..pixel783``), ``train-csv`` its train.csv
    layout (``label`` first), ``v1-json`` a V1 predict body ``{"instances": [[784 numbers], ...]}``.
    """
    if fmt not in TEXT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (expected one of {', '.join(TEXT_FORMATS)})")
    if not 0 <= start < len(dataset):
        raise ValueError(f"--start {start} is outside the dataset's {len(dataset)} rows")
    pixels = np.rint(dataset.X[start:start + count]).astype(np.int64)
    if fmt == "v1-json":
        json.dump({"instances": pixels.tolist()}, out, separators=(",", ":"))
        out.write("\n")
        return len(pixels)
    labelled = fmt == "train-csv"
    if labelled and dataset.y is None:
        raise ValueError(f"{dataset.source}: has no labels for the train.csv layout")
    header = ["label", *PIXEL_COLUMNS] if labelled else PIXEL_COLUMNS
    table = np.column_stack([dataset.y[start:start + count], pixels]) if labelled else pixels
    out.write(",".join(header) + "\n")
    np.savetxt(out, table, fmt="%d", delimiter=",")
    return len(pixels)
