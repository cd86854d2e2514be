"""Unit tests of the job file helpers: retention cleanup, row counting, result rows, bad-row listing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from core.jobs import expire_job_dirs, is_expired, new_job_id
from worker.csv_check import find_bad_rows
from worker.scoring import count_rows, format_rows


def test_expire_job_dirs_removes_only_old_job_directories(tmp_path: Path):
    old, fresh = tmp_path / new_job_id(), tmp_path / new_job_id()
    for directory in (old, fresh):
        directory.mkdir()
        (directory / "result.csv").write_text("ImageId,Label\n")
    past = time.time() - 3600
    for path in (old, old / "result.csv"):
        os.utime(path, (past, past))
    (tmp_path / "not-a-job").mkdir()
    os.utime(tmp_path / "not-a-job", (past, past))
    assert expire_job_dirs(tmp_path, retention_seconds=600) == [old.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, "not-a-job"])
    assert is_expired(old / "result.csv", 600) and not is_expired(fresh / "result.csv", 600)


def test_count_rows_with_and_without_final_newline(tmp_path: Path):
    path = tmp_path / "a.csv"
    path.write_text("h\n1\n2\n")
    assert count_rows(path) == 2
    path.write_text("h\n1\n2")
    assert count_rows(path) == 2
    path.write_text("h\n")
    assert count_rows(path) == 0
    path.write_text("h\r\n1\r\n2\r\n\r\n \n\n")  # blank lines at the end are not rows
    assert count_rows(path) == 2
    path.write_text("h\n1\n\n2\n")  # a blank line between rows is one (an error, later)
    assert count_rows(path) == 3


def test_format_rows_numbers_from_first_id():
    assert format_rows(5, np.array([3, 1]), None) == "5,3\n6,1\n"
    probabilities = np.eye(10, dtype=np.float32)[[3]]
    assert format_rows(1, np.array([3]), probabilities) == "1,3," + ",".join(
        "1.000000" if k == 3 else "0.000000" for k in range(10)) + "\n"


def test_find_bad_rows_lists_each_bad_line(tmp_path: Path):
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    good = "7," + ",".join(["0"] * 784)
    rows = [header, good, good.replace("7,", "12,", 1), good, good + ",5", "3," + ",".join(["0"] * 783 + ["x"])]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    assert find_bad_rows(path, first_line=2, max_lines=100) == [
        "line 3, column 1 (label): value 12 is not a digit label 0..9",
        "line 5: 786 fields, expected 785",
        "line 6, column 785 (pixel783): 'x' is not a number",
    ]


def test_find_bad_rows_blank_lines_and_ignored_labels(tmp_path: Path):
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    good = "7," + ",".join(["0"] * 784)
    empty_cells = ",".join([""] * 785)
    rows = [header, good, "", good.replace("7,", "x,", 1), empty_cells, good, "", "  "]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    assert find_bad_rows(path, first_line=2, max_lines=100) == [
        "line 3: a blank line between rows",
        "line 4, column 1 (label): 'x' is not a number",
        "line 5, column 1 (label): an empty cell",
    ]  # the blank lines 7 and 8 end the file: not reported
    assert find_bad_rows(path, first_line=2, max_lines=100, read_label=False) == [
        "line 3: a blank line between rows",
        "line 5, column 2 (pixel0): an empty cell",
    ]
