"""List the first bad rows of a Kaggle CSV, once ``iter_kaggle_csv`` has refused a chunk.

The fast reader stops at the first bad cell; a user fixing a file wants to see a few at once.
This slow, exact pass runs only on the failure path and only over the chunk that failed.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

from core.digits import N_CLASSES


def _cell_problem(value: str, is_label: bool) -> str | None:
    if value.strip() == "":
        return "an empty cell"
    try:
        number = float(value)
    except ValueError:
        return f"{value!r} is not a number"
    if is_label:
        if number != round(number) or not 0 <= number <= N_CLASSES - 1:
            return f"value {value} is not a digit label 0..9"
    elif not 0 <= number <= 255:
        return f"value {value} is outside 0..255"
    return None


def find_bad_rows(path: Path, first_line: int, max_lines: int, limit: int = 5, read_label: bool = True
                  ) -> list[str]:
    """Problems as 'line L, column C (name): what', for lines ``first_line..`` (1-based, header = 1).

    With ``read_label`` False (scoring) a leading label column is not checked.
    """
    problems: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            has_label = bool(header) and header[0] == "label"
            width = len(header)
            rows = itertools.islice(reader, max(first_line - 2, 0), max(first_line - 2, 0) + max_lines)
            blank: list[int] = []  # blank lines count only when a row follows (a blank tail is fine)
            for line, row in enumerate(rows, start=max(first_line, 2)):
                if not row or (len(row) == 1 and not row[0].strip()):
                    blank.append(line)
                    continue
                problems += [f"line {b}: a blank line between rows" for b in blank]
                blank.clear()
                if len(row) != width:
                    problems.append(f"line {line}: {len(row)} fields, expected {width}")
                else:
                    for index, value in enumerate(row):
                        is_label = has_label and index == 0
                        if is_label and not read_label:
                            continue
                        name = "label" if is_label else f"pixel{index - has_label}"
                        problem = _cell_problem(value, is_label)
                        if problem:
                            problems.append(f"line {line}, column {index + 1} ({name}): {problem}")
                            break
                if len(problems) >= limit:
                    break
    except (OSError, csv.Error):
        return problems
    return problems


def describe_failure(path: Path, first_error: str, first_line: int, max_lines: int, read_label: bool = True) -> str:
    """The reader's own message, plus the next bad rows of the failing chunk when there are more."""
    message = first_error.replace(str(path), path.name)
    others = [p for p in find_bad_rows(path, first_line, max_lines, read_label=read_label)
              if p.split(":")[0] not in message]
    if others:
        message += "; further bad rows: " + "; ".join(others[:4])
    return message

