"""Job endpoints (``/v1/jobs``): batch scoring and retraining on RQ.

``POST /v1/jobs/score`` and ``POST /v1/jobs/train`` stream the upload into
``<JOBS_DIR>/<job_id>/`` and enqueue the job by function path with only its id and paths;
``GET /v1/jobs[/<id>[/result]]`` reads status and results (``?wait=<s>`` long-polls a status
until the job ends, at most 30 s), ``POST /v1/jobs/<id>:cancel`` (or ``DELETE /v1/jobs/<id>``,
deprecated) cancels.
Scoring follows the prediction rule (open unless REQUIRE_KEY_FOR_ALL), or needs the key with
REQUIRE_KEY_FOR_JOBS, which then guards status, result and cancel too: a job id alone (leaked
from a log or a shared link) opens nothing. Retraining changes what is served, so it always
needs the Bearer key. So does the job list: a job id is the only thing guarding an open job's
result and its cancel, so ids are handed out to their submitter only.

Every upload is admitted against the disk budget of JOBS_DIR first (``service.jobs.budget``,
507 when it does not fit); a job canceled before it ran takes its directory with it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import redis
from flask import Blueprint, Response, request, send_file, url_for
from flask.typing import ResponseReturnValue
from rq.job import Job

from core.jobs import RESULT_CSV, UPLOAD_CSV, UPLOAD_DIR, ScoreJob, TrainJob, is_expired, job_dir, new_job_id
from service.auth import check_api_key
from service.codecs.jsonio import json_response, parse_json, read_body
from service.errors import ServiceError, error_response
from service.jobs import budget as jobs_budget
from service.jobs import queue as jobs_queue
from service.jobs import sharding
from service.jobs.datasets import TRAINING_FILE_FIELDS, dataset_path, save_training_upload
from service.jobs.schemas import parse_score, parse_train
from service.jobs.uploads import Upload, move_into_place, parse_multipart, save_body
from service.state import get_state

blueprint = Blueprint("jobs", __name__)


@blueprint.errorhandler(redis.exceptions.RedisError)
def _redis_failed(exc: redis.exceptions.RedisError) -> tuple[Response, int]:
    # A safety net: calls go through jobs_queue.redis_errors(), but a Redis failure must be a
    # 503 on every job endpoint, never a 500, even from a call that was missed.
    error = jobs_queue.unavailable(exc)
    return error_response(error.status, error.message)


def _accepted(job_id: str) -> ResponseReturnValue:
    status_url = url_for("jobs.job_status", job_id=job_id)
    return json_response({"job_id": job_id, "status": "queued", "status_url": status_url}, 202,
                         headers={"Location": status_url})


def _check_jobs_key(always: bool = False) -> None:
    """The key rule of the job endpoints: REQUIRE_KEY_FOR_JOBS (or _ALL) makes every one need it."""
    check_api_key(always=always or get_state().settings.require_key_for_jobs)


def _mimetype() -> str:
    return (request.mimetype or "").lower()


@contextlib.contextmanager
def _new_job() -> Iterator[tuple[str, Path]]:
    """A fresh job id and its directory, after checking Redis answers; if anything in the block
    fails, the directory goes with it, so nothing half-submitted stays behind."""
    jobs_queue.ping()
    job_id = new_job_id()
    directory = job_dir(get_state().settings.jobs_dir, job_id)
    try:
        yield job_id, directory
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


@blueprint.post("/v1/jobs/score")
def submit_score() -> ResponseReturnValue:
    _check_jobs_key()
    settings = get_state().settings
    with _new_job() as (job_id, directory):
        upload = directory / UPLOAD_CSV
        if _mimetype() == "multipart/form-data":
            with jobs_budget.receiving(settings, directory) as allowance:
                form, files = parse_multipart(directory, settings.max_upload_bytes, ("file",), allowance.charge)
            if "file" not in files:
                raise ServiceError(400, "multipart upload has no file field 'file' (the CSV to score)")
            move_into_place(files["file"], upload)
            params = parse_score({**form.to_dict(), **request.args.to_dict()})
        elif _mimetype() in ("text/csv", "application/csv", "text/plain"):
            params = parse_score(request.args.to_dict())
            with jobs_budget.receiving(settings, directory) as allowance:
                save_body(upload, settings.max_upload_bytes, allowance.charge)
        else:
            raise ServiceError(415, f"send the CSV as a text/csv body or as multipart field 'file', "
                                f"not {request.mimetype or 'no content type'}")
        payload = ScoreJob(job_id=job_id, upload=str(upload), **params.model_dump())
        ranges = sharding.plan(upload)  # a large upload: shards that any worker takes, joined in row order
        if ranges:
            sharding.enqueue_sharded(payload, ranges)
        else:
            jobs_queue.enqueue(payload)
    return _accepted(job_id)


@blueprint.post("/v1/jobs/train")
def submit_train() -> ResponseReturnValue:
    check_api_key(always=True)
    settings = get_state().settings
    with _new_job() as (job_id, directory):
        if _mimetype() == "application/json":
            body = parse_json(read_body())
            if not isinstance(body, dict):
                raise ServiceError(400, "the JSON body must be an object like {\"dataset\": ..., \"config\": {...}}")
            params = parse_train({**request.args.to_dict(), **body})
            if not params.dataset:
                raise ServiceError(400, "dataset: name a dataset in the server's data directory, or upload one")
            data = dataset_path(settings.data_dir, params.dataset)
        else:
            form: dict[str, str] = {}
            files: dict[str, Upload] = {}
            with jobs_budget.receiving(settings, directory) as allowance:
                if _mimetype() == "multipart/form-data":
                    parsed_form, files = parse_multipart(directory / UPLOAD_DIR, settings.max_upload_bytes,
                                                         TRAINING_FILE_FIELDS, allowance.charge)
                    form = parsed_form.to_dict()
                params = parse_train({**form, **request.args.to_dict()})
                if params.dataset:
                    raise ServiceError(400, "dataset: give either a dataset name (JSON body) or an upload, not both")
                data = save_training_upload(directory / UPLOAD_DIR, _mimetype(), files, settings.max_upload_bytes,
                                            allowance.charge)
        dev_data = dataset_path(settings.data_dir, params.dev_dataset, "dev_dataset") if params.dev_dataset else None
        jobs_queue.enqueue(TrainJob(job_id=job_id, data=str(data), config=params.config, promote=params.promote,
                                    dev_fraction=params.dev_fraction, model=params.model,
                                    dev_data=None if dev_data is None else str(dev_data),
                                    class_names=params.class_names))
    return _accepted(job_id)


def _describe(job: Job) -> dict[str, object]:
    body = jobs_queue.describe(job)
    if sharding.is_sharded(job):
        sharding.aggregate(job, body)
    return body


def _with_urls(body: dict[str, object]) -> dict[str, object]:
    body["status_url"] = url_for("jobs.job_status", job_id=body["job_id"])
    body["result_url"] = (url_for("jobs.job_result", job_id=body["job_id"])
                          if body["type"] == "score" and body["status"] == "finished" else None)
    return body


@blueprint.get("/v1/jobs/<job_id:job_id>")
def job_status(job_id: str) -> ResponseReturnValue:
    _check_jobs_key()
    wait = jobs_queue.parse_wait(request.args.get("wait"))
    job = jobs_queue.wait_until_final(jobs_queue.fetch(job_id), wait)
    return json_response(_with_urls(_describe(job)))


@blueprint.get("/v1/jobs")
def list_jobs() -> ResponseReturnValue:
    check_api_key(always=True)
    raw = request.args.get("limit", "50")
    # isascii(): "²".isdigit() is True, yet int("²") raises
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise ServiceError(400, f"limit: expected a whole number 1..1000, got {raw!r}")
    jobs = jobs_queue.fetch_many(jobs_queue.recent_ids(int(raw)))
    return json_response({"jobs": [_with_urls(_describe(job)) for job in jobs]})


@blueprint.get("/v1/jobs/<job_id:job_id>/result")
def job_result(job_id: str) -> ResponseReturnValue:
    _check_jobs_key()
    settings = get_state().settings
    job = jobs_queue.fetch(job_id)
    if job.meta.get("type") != "score":
        raise ServiceError(404, f"job {job_id} is a training job: it has no result file "
                            f"(its new model version is in GET /v1/jobs/{job_id})")
    status = jobs_queue.public_status(job)
    if status != "finished":
        raise ServiceError(409, f"job {job_id} is {status}: the result is not ready"
                            + (" and never will be" if status in ("failed", "canceled") else ""))
    path = job_dir(settings.jobs_dir, job_id) / RESULT_CSV
    if is_expired(path, settings.job_retention_seconds):
        raise ServiceError(404, f"the result of job {job_id} has expired or was removed")
    return send_file(path, mimetype="text/csv", as_attachment=True, download_name=f"{job_id}.csv",
                     conditional=True, max_age=0)


@blueprint.post("/v1/jobs/<job_id:job_id>:cancel")
def cancel_job(job_id: str) -> ResponseReturnValue:
    """Cancel a job; it stays readable, with status 'canceled', until its retention ends.

    200 'canceled': it was queued and never runs. 202 'canceling': it is running, and stops at
    its next chunk or epoch (the first request also stops its work horse at once); a repeated
    or concurrent cancel answers this too and sends nothing more. 409 once the job has ended.
    """
    _check_jobs_key()  # before the fetch: without the key, not even whether the job exists
    job = jobs_queue.fetch(job_id)
    _check_jobs_key(always=job.meta.get("type") == "train")
    status = jobs_queue.public_status(job)
    if status in jobs_queue.FINAL:
        raise ServiceError(409, f"job {job.id} is already {status}")
    if not jobs_queue.claim_cancel(job):
        status = "canceling"  # an earlier request is canceling it
    elif sharding.is_sharded(job):
        status = sharding.cancel(job)
    else:
        status = jobs_queue.cancel(job)
    if status == "canceled":
        # It never ran and never will: its upload goes now, not at the end of the retention.
        # The whole directory, which holds only the upload (never a DATA_DIR dataset it names).
        shutil.rmtree(job_dir(get_state().settings.jobs_dir, job_id), ignore_errors=True)
    body = {"job_id": job_id, "status": status, "status_url": url_for("jobs.job_status", job_id=job_id)}
    return json_response(body, 200 if status == "canceled" else 202)


# DELETE cancels too, as it did before ``:cancel`` existed: the job is not deleted (it stays
# readable), which is why the documented verb is ``POST ...:cancel`` (see docs/jobs.md).
blueprint.add_url_rule("/v1/jobs/<job_id:job_id>", "cancel_job_delete", cancel_job, methods=["DELETE"])
