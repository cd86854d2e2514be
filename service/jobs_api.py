"""Job endpoints (``/v1/jobs``): batch scoring and retraining on RQ.

``POST /v1/jobs/score`` and ``POST /v1/jobs/train`` stream the upload into
``<JOBS_DIR>/<job_id>/`` and enqueue the job by function path with only its id and paths;
``GET /v1/jobs[/<id>[/result]]`` reads status and results, ``DELETE /v1/jobs/<id>`` cancels.
Scoring follows the prediction rule (open unless REQUIRE_KEY_FOR_ALL); retraining changes
what is served, so it always needs the Bearer key. So does the job list: a job id is the
only thing guarding a job's result and its cancel, so ids are handed out to their submitter only.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import redis
from flask import Blueprint, Response, jsonify, request, send_file, url_for
from flask.typing import ResponseReturnValue

from core.jobs import (
    RESULT_CSV,
    SCORE_FUNCTION,
    SCORING_QUEUE,
    TRAIN_FUNCTION,
    TRAINING_QUEUE,
    UPLOAD_CSV,
    UPLOAD_DIR,
    is_expired,
    job_dir,
    new_job_id,
)
from service import jobs_queue
from service.auth import check_api_key
from service.errors import ApiError, error_response
from service.jobs_datasets import TRAINING_FILE_FIELDS, dataset_path, save_training_upload
from service.jobs_schemas import parse_score, parse_train
from service.jobs_uploads import Upload, move_into_place, parse_multipart, save_body
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
    response = jsonify({"job_id": job_id, "status": "queued", "status_url": status_url})
    response.headers["Location"] = status_url
    return response, 202


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
    check_api_key(always=False)
    settings = get_state().settings
    with _new_job() as (job_id, directory):
        upload = directory / UPLOAD_CSV
        if _mimetype() == "multipart/form-data":
            form, files = parse_multipart(directory, settings.max_upload_bytes, ("file",))
            if "file" not in files:
                raise ApiError(400, "multipart upload has no file field 'file' (the CSV to score)")
            move_into_place(files["file"], upload)
            params = parse_score({**form.to_dict(), **request.args.to_dict()})
        elif _mimetype() in ("text/csv", "application/csv", "text/plain"):
            params = parse_score(request.args.to_dict())
            save_body(upload, settings.max_upload_bytes)
        else:
            raise ApiError(415, f"send the CSV as a text/csv body or as multipart field 'file', "
                                f"not {request.mimetype or 'no content type'}")
        jobs_queue.enqueue(SCORING_QUEUE, SCORE_FUNCTION, job_id, "score",
                           {"job_id": job_id, "upload": str(upload), **params.model_dump()})
    return _accepted(job_id)


@blueprint.post("/v1/jobs/train")
def submit_train() -> ResponseReturnValue:
    check_api_key(always=True)
    settings = get_state().settings
    with _new_job() as (job_id, directory):
        if _mimetype() == "application/json":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise ApiError(400, "the JSON body must be an object like {\"dataset\": ..., \"config\": {...}}")
            params = parse_train({**request.args.to_dict(), **body})
            if not params.dataset:
                raise ApiError(400, "dataset: name a dataset in the server's data directory, or upload one")
            data = dataset_path(settings.data_dir, params.dataset)
        else:
            form: dict[str, str] = {}
            files: dict[str, Upload] = {}
            if _mimetype() == "multipart/form-data":
                parsed_form, files = parse_multipart(directory / UPLOAD_DIR, settings.max_upload_bytes,
                                                     TRAINING_FILE_FIELDS)
                form = parsed_form.to_dict()
            params = parse_train({**form, **request.args.to_dict()})
            if params.dataset:
                raise ApiError(400, "dataset: give either a dataset name (JSON body) or an upload, not both")
            data = save_training_upload(directory / UPLOAD_DIR, _mimetype(), files, settings.max_upload_bytes)
        jobs_queue.enqueue(TRAINING_QUEUE, TRAIN_FUNCTION, job_id, "train",
                           {"job_id": job_id, "data": str(data), "config": params.config.model_dump(),
                            "promote": params.promote, "dev_fraction": params.dev_fraction})
    return _accepted(job_id)


def _with_urls(body: dict[str, object]) -> dict[str, object]:
    body["status_url"] = url_for("jobs.job_status", job_id=body["job_id"])
    body["result_url"] = (url_for("jobs.job_result", job_id=body["job_id"])
                          if body["type"] == "score" and body["status"] == "finished" else None)
    return body


@blueprint.get("/v1/jobs/<job_id>")
def job_status(job_id: str) -> ResponseReturnValue:
    check_api_key(always=False)
    return jsonify(_with_urls(jobs_queue.describe(jobs_queue.fetch(job_id))))


@blueprint.get("/v1/jobs")
def list_jobs() -> ResponseReturnValue:
    check_api_key(always=True)
    raw = request.args.get("limit", "50")
    # isascii(): "²".isdigit() is True, yet int("²") raises
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise ApiError(400, f"limit: expected a whole number 1..1000, got {raw!r}")
    jobs = jobs_queue.fetch_many(jobs_queue.recent_ids(int(raw)))
    return jsonify({"jobs": [_with_urls(jobs_queue.describe(job)) for job in jobs]})


@blueprint.get("/v1/jobs/<job_id>/result")
def job_result(job_id: str) -> ResponseReturnValue:
    check_api_key(always=False)
    settings = get_state().settings
    job = jobs_queue.fetch(job_id)
    if job.meta.get("type") != "score":
        raise ApiError(404, f"job {job_id} is a training job: it has no result file "
                            f"(its new model version is in GET /v1/jobs/{job_id})")
    status = jobs_queue.public_status(job)
    if status != "finished":
        raise ApiError(409, f"job {job_id} is {status}: the result is not ready"
                            + (" and never will be" if status in ("failed", "canceled") else ""))
    path = job_dir(settings.jobs_dir, job_id) / RESULT_CSV
    if is_expired(path, settings.job_retention_seconds):
        raise ApiError(404, f"the result of job {job_id} has expired or was removed")
    return send_file(path, mimetype="text/csv", as_attachment=True, download_name=f"{job_id}.csv",
                     conditional=True, max_age=0)


@blueprint.delete("/v1/jobs/<job_id>")
def cancel_job(job_id: str) -> ResponseReturnValue:
    job = jobs_queue.fetch(job_id)
    check_api_key(always=job.meta.get("type") == "train")
    status = jobs_queue.cancel(job)
    return jsonify({"job_id": job_id, "status": status,
                    "status_url": url_for("jobs.job_status", job_id=job_id)}), 200 if status == "canceled" else 202
