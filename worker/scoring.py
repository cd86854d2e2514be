"""``score_csv``: score an uploaded Kaggle CSV in chunks and write a submission file.

Reads ``chunk_rows`` rows at a time (memory stays bounded whatever the file size), runs the
same ``Model.predict`` the API uses, and writes ``ImageId,Label[,p0..p9]`` to a temporary
file named after the execution's lock token, renamed to ``result.csv`` only when every row
was valid and scored and the execution still holds the job's lock. A retry after a crash
rewrites the same result; it never deletes a temporary of an execution that still holds the lock.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np

from core.datasets import DatasetError, data_end, iter_kaggle_csv
from core.digits import N_CLASSES
from core.jobs import RESULT_CSV, TMP_PREFIX, ScoreJob
from core.model import Model
from core.registry import RegistryError
from core.settings import Settings
from worker.context import get_context
from worker.csv_check import describe_failure
from worker.fence import check_fence, current_fence
from worker.payloads import accept
from worker.progress import JobReporter, peak_rss_mb

T = TypeVar("T")


def prefetched(chunks: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``chunks`` read ahead by a thread: pandas parses (mostly without the GIL) while the caller
    runs the forward pass (numpy, also without it), so the two overlap on two cores. ``depth``
    chunks wait at most, which bounds the memory added to one chunk per step of depth.

    The reader's exception is raised in the caller at the chunk where it happened; a caller that
    stops early (cancel, a fenced execution) leaves the reader blocked on a full queue, a daemon
    thread that dies with the work horse.
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)

    def read() -> None:
        try:
            for chunk in chunks:
                handoff.put(("chunk", chunk))
            handoff.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            handoff.put(("error", exc))

    threading.Thread(target=read, name="csv-reader", daemon=True).start()
    while True:
        kind, value = handoff.get()
        if kind == "end":
            return
        if kind == "error":
            raise value
        yield value


def read_ahead(chunks: Iterator[T], settings: Settings) -> Iterator[T]:
    """``chunks`` through the reader thread, or as they are when SCORING_PREFETCH is off."""
    return prefetched(chunks) if settings.scoring_prefetch else chunks


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


def format_rows(first_id: int | None, labels: np.ndarray, probabilities: np.ndarray | None) -> str:
    """Result lines ``ImageId,Label[,p0..p9]``; without the ImageId when ``first_id`` is None (a
    shard's part, which the join numbers: ``f"{id},{line}"`` gives the very same bytes)."""
    if probabilities is None:
        if first_id is None:
            return "".join(f"{label}\n" for label in labels.tolist())
        ids = range(first_id, first_id + len(labels))
        return "".join(f"{i},{label}\n" for i, label in zip(ids, labels.tolist(), strict=True))
    # Six decimals keep the file small; the labels column is the argmax of the full-precision values.
    columns = [labels, probabilities.astype(np.float64)]
    if first_id is not None:
        columns.insert(0, np.arange(first_id, first_id + len(labels)))
    fmt = ",".join(["%d"] * (1 + (first_id is not None)) + ["%.6f"] * N_CLASSES)
    return "".join(fmt % tuple(row) + "\n" for row in np.column_stack(columns).tolist())


def result_header(probabilities: bool) -> str:
    return "ImageId,Label" + "".join(f",p{k}" for k in range(N_CLASSES)) * probabilities + "\n"


def remove_stale_temporaries(directory: Path, owner: str | None, name: str = RESULT_CSV) -> None:
    """Delete temporary results left by executions that no longer hold the job's lock.

    A temporary's name ends with its execution's token; only the lock holder's is kept, so a
    retry never deletes the file a still-running execution is writing (it holds the lock, and
    this runs only in the holder, i.e. with ``owner`` being this execution's own token).
    """
    for stale in directory.glob(f"{TMP_PREFIX}{name}.*"):
        if owner is not None and stale.name.endswith(f".{owner}"):
            continue
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def _fenced_temporary(directory: Path, name: str) -> Path:
    """The temporary file this execution writes ``name`` into, named after its lock token, once
    the leftovers of earlier executions are cleared (only while this execution holds the lock)."""
    fence = current_fence()
    token = fence.token if fence is not None else None  # this execution's own, never the current holder's
    check_fence()  # only the lock holder may clear others' leftovers
    remove_stale_temporaries(directory, token, name)
    return directory / f"{TMP_PREFIX}{name}.{token or f'pid{os.getpid()}'}"


@contextlib.contextmanager
def fenced_output(directory: Path, name: str = RESULT_CSV) -> Iterator[TextIO]:
    """``directory / name``, written through this execution's own temporary file (yielded open).

    When the block ends normally the file is flushed to disk and renamed into place, only while
    this execution still owns its job (the lock is its and the job has not ended elsewhere); the
    temporary is removed whatever happens, so a failed or fenced-off run leaves nothing.
    """
    tmp = _fenced_temporary(directory, name)
    try:
        with open(tmp, "w", buffering=1 << 20) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        check_fence()
        os.replace(tmp, directory / name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def load_model_for(job: ScoreJob, reporter: JobReporter) -> Model:
    """The model ``job`` names, once its upload is known to be there; else the job fails in user terms."""
    reporter.update(0.0, "loading model")
    reporter.check_canceled()
    try:
        model = get_context().predictor.get(*job.model_target())
    except RegistryError as exc:
        raise reporter.fail(str(exc)) from None
    if not Path(job.upload).exists():
        raise reporter.fail("the uploaded CSV is gone (expired or deleted); submit it again")
    return model


def score_csv(job_id: str, **arguments: Any) -> dict[str, Any]:
    """The RQ job: ``arguments`` are the other fields of a ``ScoreJob`` (upload, version, alias, probabilities)."""
    context = get_context()
    reporter = JobReporter(context.redis, job_id)
    job = accept(ScoreJob, reporter, job_id, arguments)
    probabilities = job.probabilities
    upload_path = Path(job.upload)
    directory = upload_path.parent
    model = load_model_for(job, reporter)
    total = count_rows(upload_path)
    reporter.update(0.0, f"scoring {total} rows", model_version=model.version, rows_total=total, rows_scored=0)

    chunk_rows = context.settings.scoring_chunk_rows
    scored = 0
    with fenced_output(directory) as out:
        out.write(result_header(probabilities))
        try:
            for first_row, pixels, _labels in read_ahead(iter_kaggle_csv(upload_path, chunk_rows=chunk_rows,
                                                                         read_label=False), context.settings):
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
    summary = {"rows_scored": scored, "model_version": model.version, "result": RESULT_CSV,
               "probabilities": probabilities, "peak_rss_mb": peak_rss_mb()}
    reporter.update(1.0, "done", **summary)
    return summary
