"""What the job API and the worker agree on: queues, job functions, payloads, Redis keys, files.

The service enqueues by function path (it never imports ``worker``), so both sides read the
paths and keys from here. Only ids, paths and parameters travel through Redis; the data stays
in ``<jobs_dir>/<job_id>/`` on a volume both sides mount.

A job's arguments are one of the payload models below (``ScoreJob``, ``TrainJob``): the API
builds one, queues its ``model_dump(mode="json")`` as the job's keyword arguments, and the
worker function validates them back into the model. Plain JSON-like values rather than the
pickled model: a job queued by one release must load in the worker of the next (a pickled
class would tie the queued bytes to its module path and to pydantic's internals), and these
keyword arguments are exactly what earlier releases queued, so their jobs still run.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from core.training_config import TrainConfig

SCORING_QUEUE = "scoring"
TRAINING_QUEUE = "training"
QUEUES = (SCORING_QUEUE, TRAINING_QUEUE)  # scoring first: a worker on both prefers short jobs

SCORE_FUNCTION = "worker.scoring.score_csv"
TRAIN_FUNCTION = "worker.retraining.retrain"

Promote = Literal["never", "if_better", "always"]
# A model name a job may create: a registry directory and a URL path segment (no '/', no ':').
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class JobPayload(BaseModel):
    """The arguments of one job, as the worker function receives them."""

    # forbid: an argument this release does not know (a job queued by a newer one) fails the
    # job with its name instead of being silently ignored
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str]
    queue: ClassVar[str]
    function: ClassVar[str]

    job_id: str = Field(min_length=1)
    # The model the job works with; None (and every job queued before models had names) is the
    # worker's default model, MODEL_NAME.
    model: str | None = Field(None, min_length=1, max_length=64)

    # Optional arguments added after the first release, left out of the queued arguments when
    # None: such a job is queued exactly as the previous release queued it, so it still runs on
    # a worker of that release during a rolling deploy.
    omitted_when_none: ClassVar[tuple[str, ...]] = ("model",)

    @model_serializer(mode="wrap")
    def _omit_unset_newer_arguments(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for field in self.omitted_when_none:
            if getattr(self, field) is None:
                data.pop(field, None)
        return data

    def model_target(self) -> tuple[int | None, str | None, str | None]:
        """The (version, alias, model) the job works with; versions and alias None mean production,
        model None the default model. The order of ``ModelSet.get``'s arguments."""
        return None, None, self.model


class ScoreJob(JobPayload):
    """Score the Kaggle CSV at ``upload`` with a version, an alias, or production."""

    kind: ClassVar[str] = "score"
    queue: ClassVar[str] = SCORING_QUEUE
    function: ClassVar[str] = SCORE_FUNCTION

    upload: str = Field(min_length=1)
    version: int | None = Field(None, ge=1)
    alias: str | None = Field(None, min_length=1)
    probabilities: bool = False

    def model_target(self) -> tuple[int | None, str | None, str | None]:
        return self.version, self.alias, self.model


class TrainJob(JobPayload):
    """Train on the dataset at ``data`` into ``model`` (a new name starts a new model), evaluated on
    ``dev_data`` or on the tail of ``data``; ``promote`` decides whether the new version goes to
    production (retraining compares it with production, which is why production is the model it
    preloads)."""

    kind: ClassVar[str] = "train"
    queue: ClassVar[str] = TRAINING_QUEUE
    function: ClassVar[str] = TRAIN_FUNCTION

    omitted_when_none: ClassVar[tuple[str, ...]] = ("model", "dev_data", "class_names")

    data: str = Field(min_length=1)
    config: TrainConfig = Field(default_factory=TrainConfig)
    promote: Promote = "if_better"
    dev_fraction: float = Field(0.2, gt=0, lt=1)
    # A labelled dataset to evaluate on: training then uses every row of ``data`` and
    # ``dev_fraction`` is not used. None: the dev rows are the last ``dev_fraction`` of ``data``.
    dev_data: str | None = Field(None, min_length=1)
    # The new version's class names (checked by the API); None: those of the model's production version.
    class_names: list[str] | None = None


SHARD_FUNCTION = "worker.shards.score_shard"
JOIN_FUNCTION = "worker.shards.join_shards"


class ShardJob(ScoreJob):
    """Score bytes ``start..end`` (whole lines) of the upload of sharded job ``parent`` (see ``worker.shards``)."""

    kind: ClassVar[str] = "score-shard"
    function: ClassVar[str] = SHARD_FUNCTION

    parent: str = Field(min_length=1)
    index: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class JoinJob(ScoreJob):
    """The user's job id of a sharded scoring job: runs once its ``shards`` ended, joins their parts."""

    function: ClassVar[str] = JOIN_FUNCTION

    shards: list[str] = Field(min_length=1)


PAYLOADS: dict[str, type[JobPayload]] = {SCORE_FUNCTION: ScoreJob, TRAIN_FUNCTION: TrainJob,
                                         SHARD_FUNCTION: ShardJob, JOIN_FUNCTION: JoinJob}

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


def lock_key(job_id: str) -> str:
    """The fencing lock of a job: held (token, TTL kept alive) by the one execution running it."""
    return f"mnist:jobs:lock:{job_id}"


def done_key(job_id: str) -> str:
    """Set once, to the job's final status, by the execution that ends it; a later one does not run."""
    return f"mnist:jobs:done:{job_id}"


def job_dir(jobs_dir: Path, job_id: str) -> Path:
    if not is_job_id(job_id):
        raise ValueError(f"invalid job id {job_id!r}")
    return Path(jobs_dir) / job_id


def delete_upload(jobs_dir: Path, job_id: str) -> bool:
    """Delete a job's uploaded input (``upload.csv`` or ``upload/``), keeping its result; the job's
    directory goes too when nothing else is in it. Returns whether there was anything to delete."""
    directory = job_dir(jobs_dir, job_id)
    found = False
    with contextlib.suppress(FileNotFoundError):
        (directory / UPLOAD_CSV).unlink()
        found = True
    if (directory / UPLOAD_DIR).is_dir():
        shutil.rmtree(directory / UPLOAD_DIR, ignore_errors=True)
        found = True
    with contextlib.suppress(OSError):  # not empty (a result is kept) or already gone
        directory.rmdir()
    return found


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
