"""``score_csv``: score an uploaded Kaggle CSV in chunks and write a submission file.

Reads ``chunk_rows`` rows at a time (memory stays bounded whatever the file size), runs the
same ``Model.predict`` the API uses, and writes ``ImageId,Label[,p0..p9]`` to a temporary
file that is renamed to ``result.csv`` only when every row was valid and scored. Running it
twice (a retry after a crash) simply rewrites the same result.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from core.datasets import N_CLASSES, DatasetError, data_end, iter_kaggle_csv
from core.jobs import RESULT_CSV, TMP_PREFIX
from core.registry import RegistryError
from worker.context import get_context
from worker.csv_check import describe_failure
from worker.progress import JobReporter, peak_rss_mb


def count_rows(path: Path) -> int:
    """Data lines after the header, counted in 1 MiB blocks for the progress figure.

    Up to ``data_end`` (blank lines at the end are not rows), the text ends on its last row
    without a newline, so each newline in it starts one more row after the header.
    """
    left = data_end(path)
    newlines = 0
    with open(path, "rb") as fh:
        while left > 0 and (block := fh.read(min(left, 1 << 20))):
            newlines += block.count(b"\n")
            left -= len(block)
    return newlines


def format_rows(first_id: int, labels: np.ndarray, probabilities: np.ndarray | None) -> str:
    ids = np.arange(first_id, first_id + len(labels))
    if probabilities is None:
        return "".join(f"{i},{label}\n" for i, label in zip(ids.tolist(), labels.tolist(), strict=True))
    # Six decimals keep the file small; the labels column is the argmax of the full-precision values.
    table = np.column_stack([ids, labels, probabilities.astype(np.float64)])
    fmt = ",".join(["%d", "%d"] + ["%.6f"] * N_CLASSES)
    return "".join(fmt % tuple(row) + "\n" for row in table.tolist())


def _remove_stale_temporaries(directory: Path) -> None:
    # A worker killed mid-job leaves its temporary result behind; the retry starts clean.
    for stale in directory.glob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def score_csv(job_id: str, upload: str, version: int | None = None, alias: str | None = None,
              probabilities: bool = False) -> dict[str, Any]:
    context = get_context()
    reporter = JobReporter(context.redis, job_id)
    upload_path = Path(upload)
    directory = upload_path.parent
    reporter.update(0.0, "loading model")
    reporter.check_canceled()
    try:
        model = context.predictor.get(version, alias)
    except RegistryError as exc:
        raise reporter.fail(str(exc)) from None
    if not upload_path.exists():
        raise reporter.fail("the uploaded CSV is gone (expired or deleted); submit it again")
    total = count_rows(upload_path)
    reporter.update(0.0, f"scoring {total} rows", model_version=model.version, rows_total=total, rows_scored=0)

    _remove_stale_temporaries(directory)
    tmp = directory / f"{TMP_PREFIX}{RESULT_CSV}.{os.getpid()}"
    chunk_rows = context.settings.scoring_chunk_rows
    scored = 0
    try:
        with open(tmp, "w", buffering=1 << 20) as out:
            out.write("ImageId,Label" + "".join(f",p{k}" for k in range(N_CLASSES)) * probabilities + "\n")
            try:
                for first_row, pixels, _labels in iter_kaggle_csv(upload_path, chunk_rows=chunk_rows, read_label=False):
                    reporter.check_canceled()
                    labels, probs = model.predict(pixels)
                    out.write(format_rows(first_row + 1, labels, probs if probabilities else None))
                    scored = first_row + len(pixels)
                    reporter.update(scored / max(total, 1), f"scored {scored} of {total} rows", rows_scored=scored)
            except DatasetError as exc:
                # The failing chunk starts at data row `scored`, i.e. file line scored + 2.
                raise reporter.fail(describe_failure(upload_path, str(exc), scored + 2, chunk_rows,
                                                     read_label=False)) from None
            if scored == 0:
                raise reporter.fail(f"{upload_path.name}: the file has a header but no rows")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, directory / RESULT_CSV)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    summary = {"rows_scored": scored, "model_version": model.version, "result": RESULT_CSV,
               "probabilities": probabilities, "peak_rss_mb": peak_rss_mb()}
    reporter.update(1.0, "done", **summary)
    return summary
