"""A job's keyword arguments back into its typed payload (``core.jobs.ScoreJob``, ``TrainJob``).

The API queues a payload's ``model_dump(mode="json")``; earlier releases queued the same
fields as keyword arguments, so their jobs validate too. Arguments that do not fit (a job
queued by a release with other fields) fail the job at once, with the field and the problem
in its status, instead of a ``TypeError`` traceback and a retry that cannot succeed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError
from rq.job import Job

from core.jobs import PAYLOADS, JobPayload
from core.validation import describe_validation
from worker.progress import JobReporter

P = TypeVar("P", bound=JobPayload)


def accept(model: type[P], reporter: JobReporter, job_id: str, arguments: Mapping[str, Any]) -> P:
    """``model`` built from the job's arguments, or the job failed (no retry) saying which one is wrong."""
    try:
        return model.model_validate({**arguments, "job_id": job_id})
    except ValidationError as exc:
        raise reporter.fail(f"this worker cannot run the job as it was queued (by another release?): "
                            f"{describe_validation(exc, whole='job')}") from None


def payload_of(job: Job) -> JobPayload | None:
    """The typed payload of a queued job, or None for a function or arguments this release does not know."""
    model = PAYLOADS.get(job.func_name)
    if model is None:
        return None
    try:
        return model.model_validate(job.kwargs)
    except ValidationError:
        return None
