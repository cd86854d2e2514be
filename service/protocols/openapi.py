"""``/openapi.json`` built from the app's own routes (the console at ``/`` lists them too).

Paths, methods and path parameters come from ``app.url_map`` (each rule, its methods less the
HEAD and OPTIONS Flask adds, its converters' JSON Schemas), so the document cannot list a route
the server lacks or miss one it has. What each operation takes and answers comes from
``service.protocols.openapi_docs`` and the pydantic schemas. Settings shape the document too: the one
model names served, ``MAX_INSTANCES``, ``MAX_EXPLAIN_INSTANCES``, and which operations need the Bearer key.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from core.settings import Settings
from core.training_config import TrainConfig
from core.version import VERSION
from service.codecs import schemas as s
from service.codecs import triton_schemas as t
from service.codecs.jsonio import json_response
from service.protocols.openapi_docs import DATASET_NAME, DOCS, TRAIN_FIELDS, Doc, ref
from service.state import get_state

blueprint = Blueprint("openapi", __name__)
_SCHEMAS: list[type[BaseModel]] = [
    s.PredictRequest, s.PredictResponse, s.ColumnarPredictResponse, s.ExplainRequest, s.ExplainResponse,
    s.TFServingModelMetadata, s.VersionManifest,
    s.AliasUpdate, s.AliasResponse, s.ModelInfo, s.ModelList, s.ErrorResponse, s.V2ModelIndex,
    s.V2InferRequest, s.V2InferResponse, s.V2ModelMetadata, s.V2ServerMetadata, s.V2Live, s.V2Ready,
    s.V2ModelReady, s.JobAccepted, s.JobStatus, s.JobList, TrainConfig,
    t.RepositoryIndexEntry, t.RepositoryAction, t.TritonModelConfig, t.TritonStats,
]
_IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
_ARGUMENT = re.compile(r"<(?:([^<>:]+):)?([^<>]+)>")
ERROR_STATUSES = {400: "bad request (malformed body or parameter)", 401: "missing Bearer API key",
                  403: "wrong API key, or the server has no API_KEY for this endpoint", 404: "not found",
                  409: "conflict with the current state", 413: "body or upload over a size limit",
                  415: "unsupported Content-Type", 422: "the request is well formed but its values are not",
                  503: "not ready (no model, Redis unavailable)", 507: "not enough disk space for the upload"}
UNDOCUMENTED = "Undocumented endpoint"


def _key_required(auth: str, settings: Settings) -> str:
    """'yes', 'no' or 'optional' (per job) under these settings."""
    guarded = settings.require_key_for_all or settings.require_key_for_jobs
    if auth == "always" or (auth in ("guarded", "per_job") and guarded):
        return "yes"
    return "optional" if auth == "per_job" else "no"


def _path_and_parameters(rule: Rule, enums: dict[str, list[str]]) -> tuple[str, list[dict[str, Any]]]:
    """The rule's path in OpenAPI form and its path parameters; ``enums``: the only values some of them
    take (the served model names, the console's static files), any other being a 404."""
    params: list[dict[str, Any]] = []

    def replace(match: re.Match[str]) -> str:
        argument = match.group(2)
        converter = rule._converters[argument]
        name = getattr(converter, "param_name", argument)
        schema = copy.deepcopy(getattr(converter, "json_schema", {"type": "string"}))
        if name in enums:
            schema["enum"] = list(enums[name])
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _ARGUMENT.sub(replace, rule.rule), params


# Swagger UI (/docs) groups operations by tag: one per protocol or concern, named by blueprint.
TAGS = {"v1": "V1 (TF Serving)", "v2": "V2 (Open Inference Protocol)", "repository": "V2 extensions (Triton)",
        "triton": "V2 extensions (Triton)", "models": "Model management", "evaluation": "Model management",
        "jobs": "Jobs", "health": "Operations", "metrics": "Operations", "openapi": "Operations",
        "console": "Console"}


def _tag(endpoint: str) -> str:
    return TAGS.get(endpoint.split(".", 1)[0], "Console")  # "static": the console's files


def _operation(endpoint: str, doc: Doc, params: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    parameters = list(params)
    for name, schema in doc.query.items():
        param = {"name": name, "in": "query", "required": False}
        param.update({"content": schema["content"]} if "content" in schema else {"schema": schema})
        parameters.append(param)
    for name, schema in doc.headers.items():
        parameters.append({"name": name, "in": "header", "required": False, "schema": schema})
    responses: dict[str, Any] = {}
    for status, (description, content) in doc.ok.items():
        responses[status] = {"description": description, **({"content": content} if content else {})}
        if status in doc.response_headers:
            responses[status]["headers"] = {name: {"schema": schema}
                                            for name, schema in doc.response_headers[status].items()}
        if status in doc.links:
            responses[status]["links"] = doc.links[status]
    if doc.query:
        # gunicorn refuses a request line over 4094 bytes before the app sees it, with its own page.
        responses["414"] = {"description": "request line over 4,094 bytes (the server's limit): send long values "
                                           "in the body", "content": {"text/html": {"schema": {"type": "string"}}}}
    errors = set(doc.errors)
    key = _key_required(doc.auth, settings)
    if key != "no":
        errors |= {401, 403}
    if doc.body is not None:
        errors.add(413)
    for status in sorted(errors):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/Error{status}"})
    # Every rule has one method and its own endpoint name (tests/api/test_openapi.py), so the
    # endpoint names the operation, and links name their targets by it.
    operation: dict[str, Any] = {"operationId": endpoint, "tags": [_tag(endpoint)], "summary": doc.summary,
                                 "parameters": parameters, "responses": responses}
    if doc.description:
        operation["description"] = doc.description
    if doc.deprecated:
        operation["deprecated"] = True
    if doc.body is not None:
        operation["requestBody"] = {"required": doc.body_required, "content": doc.body}
    if key == "yes":
        operation["security"] = [{"bearer": []}]
    elif key == "optional":
        operation["security"] = [{}, {"bearer": []}]
    return operation


def _components(settings: Settings) -> dict[str, Any]:
    _, definitions = models_json_schema([(m, "validation") for m in _SCHEMAS],
                                        ref_template="#/components/schemas/{model}")
    schemas = definitions["$defs"]
    # What the views check beyond the pydantic types, under this server's settings.
    predict = schemas["PredictRequest"]["properties"]
    row, named = predict["inputs"]["oneOf"]
    for batch in (predict["instances"], row, named["properties"]["pixels"]):
        batch["maxItems"] = settings.max_instances
    for name in ("instances", "inputs"):  # either may be left out, never sent as null
        predict[name].pop("default", None)
    schemas["ExplainRequest"]["properties"]["instances"]["maxItems"] = settings.max_explain_instances
    schemas["V2RequestInput"]["properties"]["shape"]["prefixItems"][0]["maximum"] = settings.max_instances
    schemas["TrainConfig"]["properties"]["hidden"] = {
        "type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1, "maximum": 8192},
        "description": "hidden layer widths, e.g. [256, 128]"}
    schemas["TrainRequest"] = {
        "type": "object", "required": ["dataset"], "additionalProperties": False,
        "description": "retrain on a dataset already in the server's DATA_DIR",
        "properties": {"dataset": DATASET_NAME, "config": ref("TrainConfig"), **TRAIN_FIELDS}}
    responses = {f"Error{status}": {"description": text, "content": {"application/json": {
        "schema": ref("ErrorResponse")}}} for status, text in ERROR_STATUSES.items()}
    return {"schemas": schemas, "responses": responses,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Authorization: Bearer <API_KEY>"}}}


def documented_rules(app: Flask) -> list[tuple[Rule, list[str]]]:
    """Every rule with the methods it documents (HEAD and OPTIONS are Flask's own)."""
    return [(rule, sorted((rule.methods or set()) - _IMPLICIT_METHODS)) for rule in app.url_map.iter_rules()]


def static_files(app: Flask) -> list[str]:
    """The files under the app's static folder, as ``/static/<filename>`` names them."""
    root = Path(app.static_folder or "")
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def build_openapi(app: Flask, settings: Settings, model_names: list[str] | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    enums = {"model": model_names or [settings.model_name], "filename": static_files(app)}
    for rule, methods in documented_rules(app):
        path, params = _path_and_parameters(rule, enums)
        doc = DOCS.get(rule.endpoint) or Doc(UNDOCUMENTED, {"200": ("OK", None)})
        for method in methods:
            paths.setdefault(path, {})[method.lower()] = _operation(rule.endpoint, doc, params, settings)
    return {"openapi": "3.1.0",
            "info": {"title": "mnist-serve", "version": VERSION,
                     "description": "Handwritten-digit predictions (TF Serving V1, Open Inference Protocol V2), "
                                    "batch scoring and retraining jobs. Every error is {\"error\": \"...\"}."},
            "tags": [{"name": name} for name in dict.fromkeys(TAGS.values())],
            "paths": dict(sorted(paths.items())),
            "components": _components(settings)}


def api_document() -> dict[str, Any]:
    """The app's document, built once per process and set of served models: routes and settings never
    change after start, but a model published later is served (and so in the model ``enum``)."""
    state = get_state()
    names = state.models.names()
    cached = current_app.extensions.get("openapi")
    if cached is None or cached[0] != names:
        cached = current_app.extensions["openapi"] = (names, build_openapi(current_app, state.settings, names))
    return cached[1]


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return json_response(api_document())
