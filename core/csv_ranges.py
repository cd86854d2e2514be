"""Byte ranges of a CSV file, without pandas: where its data ends, cuts at line boundaries, newline counts.

Kept apart from ``core.kaggle_csv`` so that the API process, which plans shards at submission,
never imports pandas.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import IO


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


def _line_end(fh: IO[bytes], position: int) -> int:
    """The offset just past the first newline at or after ``position - 1`` (a line start stays put)."""
    fh.seek(max(position - 1, 0))
    offset = max(position - 1, 0)
    while block := fh.read(1 << 16):
        found = block.find(b"\n")
        if found >= 0:
            return offset + found + 1
        offset += len(block)
    return offset


def split_at_lines(path: str | Path, shard_bytes: int) -> list[tuple[int, int]]:
    """The data rows of a CSV as byte ranges ``[start, end)`` of about ``shard_bytes``, cut just after
    a newline, so each range holds whole lines and none needs the file read from the top.

    Finding a cut costs one short read at each boundary, not a pass over the file; the header
    (line 1) and the blank tail (``data_end``) are in no range.
    """
    end = data_end(path)
    with open(path, "rb") as fh:
        cuts = [min(_line_end(fh, 1), end)]  # the header ends at the first newline
        while cuts[-1] + shard_bytes < end:
            cut = _line_end(fh, cuts[-1] + shard_bytes)
            if cut >= end:
                break
            cuts.append(cut)
    cuts.append(end)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def count_lines(path: str | Path, start: int, end: int) -> int:
    """Newlines in bytes ``start..end`` of a file: the rows before a shard, counted only when one fails."""
    count = 0
    with open(path, "rb") as fh:
        fh.seek(start)
        left = end - start
        while left > 0 and (block := fh.read(min(left, 1 << 20))):
            count += block.count(b"\n")
            left -= len(block)
    return count
