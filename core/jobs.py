"""Names the job API and the worker agree on: queues, job functions, Redis keys, file layout.

The service enqueues by function path (it never imports ``worker``), so both sides read the
paths and keys from here. Only ids and paths travel through Redis; the data stays in
``<jobs_dir>/<job_id>/`` on a volume both sides mount.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

SCORING_QUEUE = "scoring"
TRAINING_QUEUE = "training"
QUEUES = (SCORING_QUEUE, TRAINING_QUEUE)  # scoring first: a worker on both prefers short jobs

SCORE_FUNCTION = "worker.scoring.score_csv"
TRAIN_FUNCTION = "worker.retraining.retrain"

RECENT_JOBS_KEY = "mnist:jobs:recent"  # sorted set job_id -> submission time
RECENT_JOBS_KEEP = 1000

UPLOAD_CSV = "upload.csv"
UPLOAD_DIR = "upload"  # retraining data (CSV, NPZ or an IDX images + labels pair)
RESULT_CSV = "result.csv"
TMP_PREFIX = ".tmp-"

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    return bool(_JOB_ID.match(text))


def cancel_key(job_id: str) -> str:
    """A flag the API sets and the job checks between chunks/epochs (kept apart from job.meta,
    which the running job rewrites with its progress)."""
    return f"mnist:jobs:cancel:{job_id}"


def job_dir(jobs_dir: Path, job_id: str) -> Path:
    if not is_job_id(job_id):
        raise ValueError(f"invalid job id {job_id!r}")
    return Path(jobs_dir) / job_id


def _newest_mtime(path: Path) -> float:
    newest = path.stat().st_mtime
    for child in path.rglob("*"):
        try:
            newest = max(newest, child.stat().st_mtime)
        except FileNotFoundError:
            continue
    return newest


def expire_job_dirs(jobs_dir: Path, retention_seconds: float, now: float | None = None) -> list[str]:
    """Delete job directories untouched for longer than the retention; returns the ids removed."""
    jobs_dir = Path(jobs_dir)
    if not jobs_dir.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - retention_seconds
    removed = []
    for path in jobs_dir.iterdir():
        if not (path.is_dir() and is_job_id(path.name)):
            continue
        try:
            if _newest_mtime(path) < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        except FileNotFoundError:
            continue  # another worker removed it first
    return removed


def is_expired(path: Path, retention_seconds: float) -> bool:
    """Whether a job file outlived the retention (checked on access, before the cleanup ran)."""
    try:
        return path.stat().st_mtime < time.time() - retention_seconds
    except FileNotFoundError:
        return True
