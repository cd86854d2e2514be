"""``/openapi.json`` generated from the pydantic schemas, and the browsable page at ``/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service import schemas as s
from service.jsonio import json_response
from service.state import get_state

blueprint = Blueprint("openapi", __name__)
_PAGE = Path(__file__).with_name("templates") / "index.html"
_SCHEMAS: list[type[BaseModel]] = [
    s.PredictRequest, s.PredictResponse, s.AliasUpdate, s.AliasResponse, s.ModelInfo, s.ErrorResponse,
    s.V2InferRequest, s.V2InferResponse, s.V2ModelMetadata, s.V2ServerMetadata,
]
_V = "/versions/{version}"
# (method, path, summary, request schema, response schema)
ENDPOINTS: list[tuple[str, str, str, str | None, str | None]] = [
    ("post", "/v1/models/{model}:predict", "V1 predict with the production model", "PredictRequest",
     "PredictResponse"),
    ("post", f"/v1/models/{{model}}{_V}:predict", "V1 predict with one version", "PredictRequest",
     "PredictResponse"),
    ("post", "/v1/models/{model}/labels/{alias}:predict", "V1 predict with an aliased version", "PredictRequest",
     "PredictResponse"),
    ("post", "/v1/models/{model}:predict_image", "Predict uploaded images (multipart field 'file', repeatable)",
     "multipart", "PredictResponse"),
    ("post", f"/v1/models/{{model}}{_V}:predict_image", "Predict uploaded images with one version", "multipart",
     "PredictResponse"),
    ("post", "/v1/models/{model}/labels/{alias}:predict_image", "Predict uploaded images with an alias",
     "multipart", "PredictResponse"),
    ("get", "/v1/models/{model}", "Versions, aliases, metrics and creation times", None, "ModelInfo"),
    ("get", f"/v1/models/{{model}}{_V}", "A version's manifest", None, None),
    ("put", "/v1/models/{model}/aliases/{alias}", "Promote or roll back (Bearer API key)", "AliasUpdate",
     "AliasResponse"),
    ("get", "/v2", "V2 server metadata", None, "V2ServerMetadata"),
    ("get", "/v2/health/live", "V2 liveness", None, None),
    ("get", "/v2/health/ready", "V2 readiness", None, None),
    ("get", "/v2/models/{model}", "V2 model metadata", None, "V2ModelMetadata"),
    ("get", f"/v2/models/{{model}}{_V}", "V2 model version metadata", None, "V2ModelMetadata"),
    ("get", "/v2/models/{model}/ready", "V2 model readiness", None, None),
    ("get", f"/v2/models/{{model}}{_V}/ready", "V2 model version readiness", None, None),
    ("post", "/v2/models/{model}/infer", "V2 inference (JSON or binary tensor extension)", "V2InferRequest",
     "V2InferResponse"),
    ("post", f"/v2/models/{{model}}{_V}/infer", "V2 inference with one version", "V2InferRequest",
     "V2InferResponse"),
    ("get", "/healthz", "Liveness", None, None),
    ("get", "/readyz", "Readiness: model loaded, Redis answers", None, None),
    ("get", "/metrics", "Prometheus metrics (all workers)", None, None),
    ("get", "/openapi.json", "This document", None, None),
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def build_openapi(model_name: str) -> dict[str, Any]:
    _, definitions = models_json_schema([(m, "validation") for m in _SCHEMAS],
                                        ref_template="#/components/schemas/{model}")
    error = {"description": "error", "content": {"application/json": {"schema": _ref("ErrorResponse")}}}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, reply in ENDPOINTS:
        params = [{"name": p, "in": "path", "required": True,
                   "schema": {"type": "string", **({"enum": [model_name]} if p == "model" else {})}}
                  for p in ("model", "version", "alias") if "{" + p + "}" in path]
        operation: dict[str, Any] = {"summary": summary, "parameters": params,
                                     "responses": {"200": {"description": "OK"}, "4XX": error, "503": error}}
        if reply:
            operation["responses"]["200"]["content"] = {"application/json": {"schema": _ref(reply)}}
        if body == "multipart":
            file_schema = {"type": "array", "items": {"type": "string", "format": "binary"}}
            operation["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "properties": {"file": file_schema}, "required": ["file"]}}}}
        elif body:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
        if method == "put":
            operation["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[method] = operation
    return {"openapi": "3.1.0",
            "info": {"title": "mnist-serve", "version": "0.1.0",
                     "description": "Handwritten-digit predictions (TF Serving V1, Open Inference Protocol V2)"},
            "paths": paths,
            "components": {"schemas": definitions["$defs"],
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return json_response(build_openapi(get_state().settings.model_name))


@blueprint.get("/")
def index() -> Response:
    rows = "".join(f"<tr><td>{m.upper()}</td><td><code>{p}</code></td><td>{summary}</td></tr>"
                   for m, p, summary, _, _ in ENDPOINTS)
    page = _PAGE.read_text().replace("{{ENDPOINTS}}", rows).replace("{{MODEL}}", get_state().settings.model_name)
    return Response(page, mimetype="text/html")
