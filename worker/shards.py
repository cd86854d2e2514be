"""Sharded scoring: the shards of one large upload on any workers, then one join in row order.

The API cuts a large upload into byte ranges at line boundaries (``core.kaggle_csv.split_at_lines``)
and queues one ``score_shard`` job per range, plus the user's job id as ``join_shards``, which
RQ starts once every shard has ended (a dependency that allows failure, so a failed shard
still wakes it to report). Each shard is an ordinary job of the worker (``worker.rq_worker``): its own
fencing lock, retries and once-only final status, so it runs exactly once whatever worker
takes it, and a retry (after a SIGKILL, say) scores only that shard again.

A shard does not know how many rows come before it (that would need the file read from the
top), so its part holds result lines without the ImageId; the join numbers them while
concatenating, ``f"{id},{line}"``, which is byte for byte what the unsharded job writes. Only
when a shard meets a bad row does it count the newlines before its range, to name the row by
its line in the original file.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from rq.job import Job, JobStatus

from core.csv_ranges import count_lines
from core.datasets import DatasetError, iter_kaggle_csv
from core.jobs import RESULT_CSV, JoinJob, ShardJob, cancel_key
from worker.context import get_context
from worker.csv_check import describe_failure
from worker.payloads import accept
from worker.progress import JobReporter, peak_rss_mb
from worker.scoring import fenced_output, format_rows, load_model_for, read_ahead, result_header

__all__ = ["join_shards", "part_name", "score_shard"]


def part_name(index: int) -> str:
    return f"part-{index:05d}.csv"


class ShardReporter(JobReporter):
    """A shard stops when its own job or its parent (the user's job id) is canceled."""

    def __init__(self, connection: Any, job_id: str, parent: str) -> None:
        super().__init__(connection, job_id)
        self.parent = parent

    def canceled(self) -> bool:
        return bool(self.connection.exists(cancel_key(self.job_id), cancel_key(self.parent)))


def _bad_row_message(job: ShardJob, path: Path, chunk_rows: int) -> str:
    """The shard's first bad row, named by its line in the original file (the error path only:
    it counts the newlines before the range, then reads the range again without scoring)."""
    first_line = 1 + count_lines(path, 0, job.start)  # the header's newline included
    scored = 0
    try:
        for first_row, pixels, _ in iter_kaggle_csv(path, chunk_rows, read_label=False,
                                                    byte_range=(job.start, job.end), first_line=first_line):
            scored = first_row + len(pixels)
    except DatasetError as exc:
        return describe_failure(path, str(exc), first_line + scored, chunk_rows, read_label=False)
    return f"{path.name}: the rows from line {first_line} could not be read"  # not reached: the same bytes failed


def _ends_with_newline(path: Path, end: int) -> bool:
    if end == 0:
        return True
    with open(path, "rb") as fh:
        fh.seek(end - 1)
        return fh.read(1) == b"\n"


def score_shard(job_id: str, **arguments: Any) -> dict[str, Any]:
    """The RQ job of one shard: score its lines, write ``part-<index>.csv`` (labels without ImageId)."""
    context = get_context()
    reporter = ShardReporter(context.redis, job_id, str(arguments.get("parent", "")))
    job = accept(ShardJob, reporter, job_id, arguments)
    path = Path(job.upload)
    model = load_model_for(job, reporter)
    # Its own range only, at memory speed: the shard's row count, for its progress and the join's.
    total = count_lines(path, job.start, job.end) + (not _ends_with_newline(path, job.end))
    reporter.update(0.0, f"scoring {total} rows", model_version=model.version, rows_scored=0, rows_total=total)
    chunk_rows = context.settings.scoring_chunk_rows
    name = part_name(job.index)
    scored = 0
    with fenced_output(path.parent, name) as out:
        try:
            chunks = iter_kaggle_csv(path, chunk_rows, read_label=False, byte_range=(job.start, job.end))
            for first_row, pixels, _ in read_ahead(chunks, context.settings):
                reporter.check_canceled()
                labels, probs = model.predict(pixels)
                out.write(format_rows(None, labels, probs if job.probabilities else None))
                scored = first_row + len(pixels)
                reporter.update(scored / max(total, 1), f"scored {scored} of {total} rows", rows_scored=scored)
        except DatasetError:
            raise reporter.fail(_bad_row_message(job, path, chunk_rows)) from None
    summary = {"rows_scored": scored, "model_version": model.version, "part": name, "peak_rss_mb": peak_rss_mb()}
    reporter.update(1.0, "done", **summary)
    return summary


def _shard_error(shard: Job, index: int, count: int) -> str:
    """Why a shard did not finish, in the words the user would have seen from the unsharded job."""
    if shard.meta.get("error"):
        return str(shard.meta["error"])  # a bad row (by its line in the original file), a bad version...
    result = shard.latest_result()
    text = (getattr(result, "exc_string", None) or "").strip()
    if "AbandonedJobError" in text or not text:
        return (f"the worker scoring shard {index + 1} of {count} stopped before it ended (killed, or out of "
                f"memory) and no retry was left; see the worker logs, job id {shard.id}")
    return f"shard {index + 1} of {count} failed: {text.splitlines()[-1]}"


def join_shards(job_id: str, **arguments: Any) -> dict[str, Any]:
    """The user's job: once every shard has ended, number their parts into ``result.csv`` in row order,
    or fail with the first failed shard's error (the first bad row of the file)."""
    context = get_context()
    reporter = JobReporter(context.redis, job_id)
    job = accept(JoinJob, reporter, job_id, arguments)
    reporter.check_canceled()
    directory = Path(job.upload).parent
    count = len(job.shards)
    shards = Job.fetch_many(job.shards, connection=context.redis)
    rows: list[int] = []
    versions: set[int] = set()
    peaks: list[float] = []
    for index, shard in enumerate(shards):
        if shard is None:
            raise reporter.fail(f"shard {index + 1} of {count} expired before the join; submit the CSV again")
        if shard.get_status(refresh=False) != JobStatus.FINISHED:
            raise reporter.fail(_shard_error(shard, index, count))
        rows.append(int(shard.meta.get("rows_scored", 0)))
        versions.add(int(shard.meta.get("model_version", 0)))
        peaks.append(float(shard.meta.get("peak_rss_mb") or 0.0))
    if len(versions) != 1:  # the API pins the version, so only a registry changed under it gets here
        raise reporter.fail(f"the shards were scored by different model versions {sorted(versions)}; "
                            f"submit the CSV again")
    total = sum(rows)
    reporter.update(0.99, f"joining {count} shards", rows_scored=total, rows_total=total)
    with fenced_output(directory) as out:
        out.write(result_header(job.probabilities))
        next_id = 1
        for index, expected in enumerate(rows):
            reporter.check_canceled()
            with open(directory / part_name(index)) as part:
                while lines := part.readlines(1 << 20):
                    out.write("".join(f"{i},{line}" for i, line in enumerate(lines, start=next_id)))
                    next_id += len(lines)
            if next_id - 1 != sum(rows[:index + 1]):
                raise RuntimeError(f"part {index} holds {next_id - 1 - sum(rows[:index])} rows, "
                                   f"its shard reported {expected}")
    for index in range(count):
        with contextlib.suppress(FileNotFoundError):
            (directory / part_name(index)).unlink()
    summary = {"rows_scored": total, "rows_total": total, "model_version": versions.pop(), "result": RESULT_CSV,
               "probabilities": job.probabilities,
               "peak_rss_mb": max([*peaks, peak_rss_mb() or 0.0])}
    reporter.update(1.0, "done", **summary)
    return summary
