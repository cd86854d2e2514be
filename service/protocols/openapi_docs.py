"""What the OpenAPI document says about each endpoint: summary, request body, responses, auth.

Keyed by Flask endpoint name. The paths, methods and path parameters are not written here:
``service.protocols.openapi`` reads them from ``app.url_map``, so a route cannot be missing from the
document or differ from it; an endpoint without an entry here is still listed (and
tests/api/test_openapi.py fails until it gets one).

Bodies name media types the views accept, with JSON Schemas as strict as the views' checks.
What JSON Schema cannot say (a V2 tensor's ``data`` length is ``shape[0] x 784``; an image must
decode as PNG or JPEG; a score job takes a version or an alias, not both) is said in the
descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Auth = Literal["open", "guarded", "always", "per_job"]
"""open: never needs the key; guarded: only under REQUIRE_KEY_FOR_ALL; always: always;
per_job: always for a training job, else as guarded."""


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_BINARY = {"type": "string", "format": "binary", "minLength": 1}
_IMAGE_FILE = {**_BINARY, "contentMediaType": "image/png", "description": "a PNG or JPEG image of one digit"}
_CSV_FILE = {"type": "string", "minLength": 1, "contentMediaType": "text/csv",
             "description": "Kaggle digit-recognizer CSV: pixel0..pixel783 columns (a label column is ignored)"}
# One blank digit: the smallest test.csv the scorer accepts (the example a client may try first).
_CSV_EXAMPLE = ",".join(f"pixel{i}" for i in range(784)) + "\n" + ",".join(["0"] * 784) + "\n"

# Score parameters (query string, or multipart text fields): service.jobs.schemas.ScoreParams.
# An empty value is refused (422): leave a parameter out for its default.
SCORE_FIELDS: dict[str, dict[str, Any]] = {
    "model": {"type": "string", "minLength": 1, "maxLength": 64,
              "description": "score with this served model (default: MODEL_NAME); another name is a 404"},
    "version": {"type": "integer", "minimum": 1, "description": "score with this version (not with alias)"},
    "alias": {"type": "string", "minLength": 1, "maxLength": 64,
              "description": "or with this alias (not with version)"},
    "probabilities": {"type": "boolean", "description": "add p0..p9 columns to the result"},
}
# Training parameters besides the data (query string, multipart text fields or the JSON body).
TRAIN_FIELDS: dict[str, dict[str, Any]] = {
    "model": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
              "description": "publish into this model (default: MODEL_NAME); a new name starts a new model, "
                             "served once its first version is published"},
    "promote": {"type": "string", "enum": ["never", "if_better", "always"]},
    "dev_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                     "description": "tail of the data held out as the dev split (default 0.2; not used "
                                    "with dev_dataset)"},
}
# Plain names joined by '/' (a folder in DATA_DIR, then a file in it): service.jobs.datasets._NAME.
# A segment starts with a letter or a digit, so it is never '.' or '..'.
_SEGMENT = "[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
DATASET_NAME = {"type": "string", "pattern": f"^{_SEGMENT}(/{_SEGMENT}){{0,3}}$",
                "description": "a dataset file or directory in the server's DATA_DIR (e.g. 'train.csv', "
                               "'fashion/t10k-images-idx3-ubyte.gz')"}
TRAIN_FIELDS["dev_dataset"] = {
    **DATASET_NAME, "description": "a labelled dataset in DATA_DIR as the dev split: training uses every row of the "
                                   "data, and dev_fraction is not used"}

PREDICT_JSON = {**json_body(ref("PredictRequest"))}
EXPLAIN_JSON = {**json_body(ref("ExplainRequest"))}
PREDICT_MULTIPART = {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file"], "additionalProperties": False,
               "properties": {"file": {"type": "array", "minItems": 1, "items": _IMAGE_FILE,
                                       "description": "one part per image (at most MAX_IMAGES_PER_REQUEST)"}}},
    "encoding": {"file": {"contentType": "image/png, image/jpeg"}}}}
V2_INFER = {
    **json_body(ref("V2InferRequest")),
    "application/octet-stream": {"schema": {
        **_BINARY, "description": "binary tensor extension: a JSON V2InferRequest header of "
                                  "Inference-Header-Content-Length bytes whose input gives "
                                  "parameters.binary_data_size instead of data, then the raw little-endian "
                                  "tensor (n x 784 float32 or uint8)"}}}
ALIAS_UPDATE = json_body(ref("AliasUpdate"))
SCORE_BODY = {
    "text/csv": {"schema": _CSV_FILE, "example": _CSV_EXAMPLE}, "application/csv": {"schema": _CSV_FILE},
    "text/plain": {"schema": _CSV_FILE},
    "multipart/form-data": {
        "schema": {"type": "object", "required": ["file"], "additionalProperties": False,
                   "properties": {"file": {**_BINARY, "description": _CSV_FILE["description"]}, **SCORE_FIELDS}},
        "encoding": {"file": {"contentType": "text/csv"}}},
}
_NPZ = {**_BINARY, "description": "an .npz archive (a zip file) with arrays X (n, 784) and y (n,)"}
TRAIN_BODY = {
    **json_body(ref("TrainRequest")),
    "text/csv": {"schema": {**_CSV_FILE, "description": "Kaggle train.csv: label, pixel0..pixel783"}},
    "application/csv": {"schema": {**_CSV_FILE, "description": "Kaggle train.csv: label, pixel0..pixel783"}},
    "application/x-npz": {"schema": _NPZ}, "application/zip": {"schema": _NPZ},
    "application/octet-stream": {"schema": _NPZ},
    "multipart/form-data": {
        "schema": {"type": "object", "additionalProperties": False,
                   "description": "either 'file' (CSV or NPZ) or the IDX pair 'images' and 'labels'",
                   "properties": {"file": {**_BINARY, "description": "train.csv or an .npz archive"},
                                  "images": {**_BINARY, "description": "IDX images (train-images-idx3-ubyte)"},
                                  "labels": {**_BINARY, "description": "IDX labels (train-labels-idx1-ubyte)"},
                                  "config": ref("TrainConfig"), **TRAIN_FIELDS},
                   "anyOf": [{"required": ["file"]}, {"required": ["images", "labels"]}],
                   "dependentRequired": {"images": ["labels"], "labels": ["images"]}},
        "encoding": {"config": {"contentType": "application/json"}}},
}


@dataclass(frozen=True)
class Doc:
    """One operation. ``ok`` maps success statuses to (description, content); ``errors`` lists the
    4xx/5xx statuses the view can answer (each with the ``{"error"}`` body)."""

    summary: str
    ok: dict[str, tuple[str, dict[str, Any] | None]]
    errors: tuple[int, ...] = ()
    body: dict[str, Any] | None = None
    auth: Auth = "guarded"
    body_required: bool = True  # False: the body may be left out (an empty body)
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)
    response_headers: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    description: str | None = None
    deprecated: bool = False
    # status -> OpenAPI links of that response: the operations a client (or a stateful fuzzer) may
    # call next with a value from this exchange, by operationId (the Flask endpoint name)
    links: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


_PREDICTED = {"200": ("predictions", json_body(ref("PredictResponse")))}
_PREDICTED_EITHER = {"200": ("predictions (for instances) or outputs (for TF Serving's columnar inputs)", json_body(
    {"oneOf": [ref("PredictResponse"), ref("ColumnarPredictResponse")]}))}
_TFS_METADATA = {"200": ("TF Serving's model metadata: the serving_default signature",
                         json_body(ref("TFServingModelMetadata")))}
_EXPLAINED = {"200": ("a 28x28 attribution map per instance, for its predicted digit",
                       json_body(ref("ExplainResponse")))}
_V1_ERRORS = (400, 404, 413, 415, 422, 503)
_V2_OK = {"200": ("outputs (JSON, or with the binary extension a JSON header then raw tensors)",
                  {**json_body(ref("V2InferResponse")), "application/octet-stream": {"schema": _BINARY}})}
_INFER_HEADERS = {"Inference-Header-Content-Length": {
    "type": "integer", "minimum": 0,
    "description": "binary tensor extension: the size of the JSON header at the start of the body"}}
_V2_RESPONSE_HEADERS = {"200": {"Inference-Header-Content-Length": {
    "type": "integer", "minimum": 0, "description": "binary responses: the size of the JSON header"}}}
_JOB_ACCEPTED = {"202": ("queued; poll status_url", json_body(ref("JobAccepted")))}
_LOCATION = {"202": {"Location": {"type": "string", "description": "the job's status URL"}}}
_JOB_STATUS = json_body(ref("JobStatus"))
_CANCELED = {"200": ("canceled: it was queued and never runs", _JOB_STATUS),
             "202": ("canceling: it stops at its next chunk or epoch", _JOB_STATUS)}


def _job_links(job_id: str, *targets: str) -> dict[str, dict[str, Any]]:
    """Links to the job operations ``targets`` (endpoint names) for the job whose id is at ``job_id``
    (a runtime expression, e.g. ``$response.body#/job_id``)."""
    return {target.split(".")[1]: {"operationId": target, "parameters": {"job_id": job_id}} for target in targets}


_NEW_SCORE_JOB_LINKS = _job_links("$response.body#/job_id", "jobs.job_status", "jobs.job_result", "jobs.cancel_job")
_NEW_TRAIN_JOB_LINKS = _job_links("$response.body#/job_id", "jobs.job_status", "jobs.cancel_job")
# From a model's description to the operations on its production version.
_PRODUCTION_VERSION_LINKS = {
    target.split(".")[1]: {"operationId": target, "parameters": {"model": "$response.body#/name",
                                                                 "version": "$response.body#/production_version"}}
    for target in ("evaluation.evaluate_version", "models.version_manifest", "v1.predict_version")}
_CANCELED_LINKS = _job_links("$request.path.job_id", "jobs.job_status", "jobs.cancel_job")
_CANCEL_DESCRIPTION = ("A canceled job stays readable (GET answers status 'canceled') until its retention ends. "
                       "Idempotent: a repeated or concurrent cancel answers 202 'canceling' while the job "
                       "stops, and 409 once it has ended.")
_OBJECT = json_body({"type": "object"})
_INDEX_BODY = json_body({"type": "object", "additionalProperties": False,
                         "properties": {"ready": {"type": "boolean", "description": "only the READY versions"}}})
_LOAD_BODY = json_body({"type": "object", "additionalProperties": False, "properties": {"parameters": {
    "type": "object", "maxProperties": 0, "description": "no overrides: models come from the registry"}}})
_UNLOAD_BODY = json_body({"type": "object", "additionalProperties": False, "properties": {"parameters": {
    "type": "object", "additionalProperties": False, "properties": {"unload_dependents": {"type": "boolean"}}}}})
_ACTION = {"200": ("the model's state now", json_body(ref("RepositoryAction")))}
_CONFIG = {"200": ("Triton's model configuration", json_body(ref("TritonModelConfig")))}
_STATS = {"200": ("Triton's statistics, server-wide", json_body(ref("TritonStats")))}
_HTML = {"200": ("HTML", {"text/html": {"schema": {"type": "string"}}})}

DOCS: dict[str, Doc] = {
    "v1.predict": Doc("V1 predict with the production model", _PREDICTED_EITHER, _V1_ERRORS, PREDICT_JSON),
    "v1.predict_version": Doc("V1 predict with one version", _PREDICTED_EITHER, _V1_ERRORS, PREDICT_JSON),
    "v1.predict_label": Doc("V1 predict with an aliased version", _PREDICTED_EITHER, _V1_ERRORS, PREDICT_JSON),
    "v1.metadata": Doc("TF Serving model metadata of the production version", _TFS_METADATA, (404, 503)),
    "v1.metadata_version": Doc("TF Serving model metadata of one version", _TFS_METADATA, (404, 503)),
    "v1.metadata_label": Doc("TF Serving model metadata of an aliased version", _TFS_METADATA, (404, 503)),
    "v1.predict_image": Doc("Predict uploaded images (multipart field 'file', repeatable)", _PREDICTED,
                            _V1_ERRORS, PREDICT_MULTIPART),
    "v1.predict_image_version": Doc("Predict uploaded images with one version", _PREDICTED, _V1_ERRORS,
                                    PREDICT_MULTIPART),
    "v1.predict_image_label": Doc("Predict uploaded images with an alias", _PREDICTED, _V1_ERRORS,
                                  PREDICT_MULTIPART),
    "v1.explain": Doc("V1 explain (gradient x input per instance) with the production model", _EXPLAINED,
                      _V1_ERRORS, EXPLAIN_JSON),
    "v1.explain_version": Doc("V1 explain with one version", _EXPLAINED, _V1_ERRORS, EXPLAIN_JSON),
    "v1.explain_label": Doc("V1 explain with an aliased version", _EXPLAINED, _V1_ERRORS, EXPLAIN_JSON),
    "models.list_models": Doc("The served models: versions, aliases, production version, class names",
                              {"200": ("the models", json_body(ref("ModelList")))}),
    "models.model_info": Doc("Versions, aliases, metrics and creation times",
                             {"200": ("the model", json_body(ref("ModelInfo")))}, (404,),
                             links={"200": _PRODUCTION_VERSION_LINKS}),
    "models.version_manifest": Doc("A version's manifest (model.json) and its TF Serving model_version_status",
                                   {"200": ("the manifest", json_body(ref("VersionManifest")))}, (404, 503)),
    "models.set_alias": Doc("Promote or roll back: point an alias at a version",
                            {"200": ("the alias moved", json_body(ref("AliasResponse")))},
                            (400, 404, 409, 413, 415, 422), ALIAS_UPDATE, auth="always"),
    "v2.server_metadata": Doc("V2 server metadata", {"200": ("server", json_body(ref("V2ServerMetadata")))},
                              auth="open"),
    "v2.live": Doc("V2 liveness", {"200": ("live", json_body(ref("V2Live")))}, auth="open"),
    "v2.ready": Doc("V2 readiness", {"200": ("ready", json_body(ref("V2Ready"))),
                                     "503": ("not ready, with the reason", json_body(ref("V2Ready")))},
                    auth="open"),
    "v2.list_models": Doc("V2 model index: every served model, its versions and readiness",
                          {"200": ("the models", json_body(ref("V2ModelIndex")))}),
    "v2.model_metadata": Doc("V2 model metadata", {"200": ("the model", json_body(ref("V2ModelMetadata")))},
                             (404,)),
    "v2.version_metadata": Doc("V2 model version metadata",
                               {"200": ("the version", json_body(ref("V2ModelMetadata")))}, (404,)),
    "v2.model_ready": Doc("V2 model readiness", {"200": ("ready", json_body(ref("V2ModelReady")))}, (404, 503)),
    "v2.version_ready": Doc("V2 model version readiness", {"200": ("ready", json_body(ref("V2ModelReady")))},
                            (404, 503)),
    "v2.infer": Doc("V2 inference (JSON or binary tensor extension)", _V2_OK, _V1_ERRORS, V2_INFER,
                    headers=_INFER_HEADERS, response_headers=_V2_RESPONSE_HEADERS),
    "v2.infer_version": Doc("V2 inference with one version", _V2_OK, _V1_ERRORS, V2_INFER,
                            headers=_INFER_HEADERS, response_headers=_V2_RESPONSE_HEADERS),
    "repository.repository_index": Doc(
        "V2 model repository index (Triton): every served model's versions, READY or UNAVAILABLE with the reason",
        {"200": ("the index", json_body({"type": "array", "items": ref("RepositoryIndexEntry")}))}, (400, 415, 422),
        _INDEX_BODY, body_required=False),
    "repository.load": Doc("Load a model (Triton): serve it again in every process", _ACTION, (400, 404, 409, 415, 422),
                           _LOAD_BODY, auth="always", body_required=False,
                           description="Idempotent. 409 when its production version cannot be loaded."),
    "repository.unload": Doc("Unload a model (Triton): every process stops serving it within RELOAD_INTERVAL",
                             _ACTION, (400, 404, 415, 422), _UNLOAD_BODY, auth="always", body_required=False,
                             description="Idempotent. Inference and readiness then answer 404 until a load."),
    "triton.model_config": Doc("V2 model configuration (Triton)", _CONFIG, (404, 503)),
    "triton.version_config": Doc("V2 model version configuration (Triton)", _CONFIG, (404, 503)),
    "triton.all_stats": Doc("V2 inference statistics of every served model (Triton)", _STATS),
    "triton.model_stats": Doc("V2 inference statistics of a model's versions (Triton)", _STATS, (404,)),
    "triton.version_stats": Doc("V2 inference statistics of one version (Triton)", _STATS, (404, 503)),
    "health.healthz": Doc("Liveness", {"200": ("the process is up", _OBJECT)}, auth="open"),
    "health.readyz": Doc("Readiness: model loaded, Redis answers", {"200": ("ready or degraded", _OBJECT),
                                                                     "503": ("not ready", _OBJECT)}, auth="open"),
    "metrics.metrics": Doc("Prometheus metrics (all workers)",
                           {"200": ("Prometheus text format", {"text/plain": {"schema": {"type": "string"}}})},
                           auth="open"),
    "openapi.openapi": Doc("This document", {"200": ("OpenAPI 3.1", _OBJECT)}, auth="open"),
    "console.index": Doc("Console, Try it: draw or upload a digit, see probabilities and an explanation; "
                         "lists the endpoints", _HTML, auth="open"),
    "console.models": Doc("Console, Models: versions, curves, confusion matrices, promote and roll back", _HTML,
                          auth="open"),
    "console.jobs": Doc("Console, Jobs: score a CSV, retrain, recent jobs", _HTML, auth="open"),
    "console.health": Doc("Console, Health: readiness, serving versions, request rate and latency", _HTML,
                          auth="open"),
    "console.docs": Doc("API docs: Swagger UI over /openapi.json, served by the app (no CDN)", _HTML,
                        auth="open"),
    "console.favicon": Doc("The console's icon (SVG) at the URL browsers ask for by default",
                           {"200": ("the icon", {"image/svg+xml": {"schema": {"type": "string"}}})}, auth="open"),
    "static": Doc("Static files of the console (scripts, styles, icon)", {"200": ("the file", None)}, (404,),
                  auth="open"),
    "evaluation.evaluate_version": Doc(
        "A version's confusion matrix and per-class precision/recall on labelled data in DATA_DIR "
        "(default: the file it was trained on, its dev split)",
        {"200": ("the evaluation", _OBJECT)}, (400, 404, 409, 422, 503),
        query={"dataset": {**DATASET_NAME,
                           "description": "a labelled dataset in DATA_DIR; default: the version's training file"}}),
    "jobs.submit_score": Doc("Submit a CSV batch-scoring job (text/csv body or multipart field 'file')",
                             _JOB_ACCEPTED, (400, 404, 413, 415, 422, 503, 507), SCORE_BODY, query=SCORE_FIELDS,
                             response_headers=_LOCATION, links={"202": _NEW_SCORE_JOB_LINKS}),
    "jobs.submit_train": Doc("Submit a retraining job (a dataset name in JSON, or an upload)", _JOB_ACCEPTED,
                             (400, 404, 413, 415, 422, 503, 507), TRAIN_BODY, auth="always",
                             query={**TRAIN_FIELDS, "config": {"content": json_body(ref("TrainConfig"))}},
                             response_headers=_LOCATION, links={"202": _NEW_TRAIN_JOB_LINKS}),
    "jobs.list_jobs": Doc("Recent jobs, newest first", {"200": ("jobs", json_body(ref("JobList")))}, (400, 503),
                          auth="always", query={"limit": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                          "default": 50}}),
    "jobs.job_status": Doc("A job's status, progress and outcome", {"200": ("the job", _JOB_STATUS)}, (404, 503)),
    "jobs.job_result": Doc("A finished scoring job's result CSV (ImageId,Label[,p0..p9])",
                           {"200": ("the result", {"text/csv": {"schema": {"type": "string"}}})}, (404, 409, 503)),
    "jobs.cancel_job": Doc("Cancel a queued or running job (training jobs need the key)", _CANCELED,
                           (404, 409, 503), auth="per_job", description=_CANCEL_DESCRIPTION,
                           links={"200": _CANCELED_LINKS, "202": _CANCELED_LINKS}),
    "jobs.cancel_job_delete": Doc("Cancel a job: the same as POST /v1/jobs/{job_id}:cancel", _CANCELED,
                                  (404, 409, 503), auth="per_job", deprecated=True,
                                  description="Cancels, does not delete: the job stays readable. Use "
                                              "POST /v1/jobs/{job_id}:cancel. " + _CANCEL_DESCRIPTION),
}
