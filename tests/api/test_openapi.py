"""The OpenAPI document and the routes agree: every rule is documented, every documented path is
routed, path parameters are as strict as the views, and ``Allow`` names only methods that answer."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from core.registry import InvalidName, check_alias
from core.settings import Settings
from service.protocols.openapi import TAGS, UNDOCUMENTED, documented_rules
from service.routing import ALIAS_JSON_PATTERN

IMPLICIT = {"HEAD", "OPTIONS"}


def _allow(response) -> set[str]:
    return {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize("path", ["/v1/models/mnist:predict", "/v1/models/mnist:predict_image",
                                  "/v1/models/mnist/versions/1:predict", "/v1/models/mnist/labels/production:predict",
                                  "/v1/jobs/score", "/v1/jobs/train"])
def test_options_advertises_only_methods_that_answer(client, path):
    # A model name never holds ':', so GET /v1/models/<name> (and .../versions/<v>) cannot match a
    # ':predict' URL: GET is a 405 there, and OPTIONS must not list it. Likewise a job id is never
    # "score" or "train", so GET/DELETE /v1/jobs/<job_id> do not claim the submission URLs.
    assert _allow(client.options(path)) == {"POST", "OPTIONS"}
    response = client.get(path)
    assert response.status_code == 405
    assert _allow(response) == {"POST", "OPTIONS"}
    assert response.json == {"error": "GET is not allowed here; this URL accepts OPTIONS, POST"}


def _spec(client: FlaskClient) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json


SAMPLE_VALUES = {"model": "mnist", "version": "1", "alias": "production", "job_id": "0" * 32, "filename": "app.js"}


def test_every_route_is_documented_and_every_documented_path_is_routed(app, client):
    spec = _spec(client)
    documented = {(path, method.upper()) for path, operations in spec["paths"].items() for method in operations}
    adapter = app.url_map.bind("localhost")
    routed = set()
    for rule, methods in documented_rules(app):
        assert methods, rule.rule
        for method in methods:
            matches = [(path, method) for path in spec["paths"] if method.lower() in spec["paths"][path]
                       and adapter.match(path.format(**SAMPLE_VALUES), method)[0] == rule.endpoint]
            assert matches, f"{method} {rule.rule} ({rule.endpoint}) is not in /openapi.json"
            routed.update(matches)
            operation = spec["paths"][matches[0][0]][method.lower()]
            assert operation["summary"] != UNDOCUMENTED, f"{rule.endpoint}: add it to service/openapi_docs.DOCS"
    assert documented == routed  # and nothing documented that no rule answers


def test_job_api_and_index_are_documented(client):
    paths = _spec(client)["paths"]
    assert set(paths["/v1/jobs"]) == {"get"}
    assert set(paths["/v1/jobs/{job_id}"]) == {"get", "delete"}
    assert {"/v1/jobs/score", "/v1/jobs/train", "/v1/jobs/{job_id}/result", "/"} <= set(paths)
    train = paths["/v1/jobs/train"]["post"]
    assert train["security"] == [{"bearer": []}]
    assert {"application/json", "text/csv", "multipart/form-data", "application/x-npz"} <= set(
        train["requestBody"]["content"])
    assert {"202", "400", "401", "403", "413", "415", "422", "503", "507"} <= set(train["responses"])


def test_parameters_and_bodies_are_as_strict_as_the_server(client):
    spec = _spec(client)
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    predict = paths["/v1/models/{model}/versions/{version}:predict"]["post"]
    params = {p["name"]: p["schema"] for p in predict["parameters"]}
    assert params["model"]["enum"] == ["mnist"]
    assert params["version"] == {"type": "integer", "minimum": 1, "description": "a version number (positive integer)"}
    alias = {p["name"]: p["schema"] for p in paths["/v1/models/{model}/aliases/{alias}"]["put"]["parameters"]}
    assert alias["alias"]["maxLength"] == 64 and "pattern" in alias["alias"]
    assert schemas["PredictRequest"]["properties"]["instances"]["maxItems"] == Settings().max_instances
    v2_input = schemas["V2RequestInput"]["properties"]
    assert v2_input["datatype"]["enum"] == ["FP32", "UINT8"] and v2_input["name"]["const"] == "pixels"
    assert "application/octet-stream" in paths["/v2/models/{model}/infer"]["post"]["requestBody"]["content"]
    image = predict["requestBody"]["content"]["application/json"]["schema"]
    assert image == {"$ref": "#/components/schemas/PredictRequest"}
    upload = paths["/v1/models/{model}:predict_image"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["required"] == ["file"]
    error = spec["components"]["responses"]["Error422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorResponse"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and "$ref" in response:
                    assert response["$ref"] == f"#/components/responses/Error{status}", (path, method)


def test_security_follows_the_settings(make_client, base_registry):
    def security(**settings: object) -> dict[str, object]:
        spec = make_client(base_registry, **settings).get("/openapi.json").json
        return {f"{m.upper()} {p}": o.get("security") for p, ops in spec["paths"].items() for m, o in ops.items()}

    open_ = security()
    assert open_["POST /v1/models/{model}:predict"] is None
    assert open_["PUT /v1/models/{model}/aliases/{alias}"] == [{"bearer": []}]
    assert open_["DELETE /v1/jobs/{job_id}"] == [{}, {"bearer": []}]  # training jobs only
    closed = security(require_key_for_all=True)
    assert closed["POST /v1/models/{model}:predict"] == [{"bearer": []}]
    assert closed["GET /healthz"] is None and closed["GET /v2/health/ready"] is None


@pytest.mark.parametrize("alias", ["production", "a", "A-1_b", "0a", "x" * 64, "", "1", "123", "a.b", "a b",
                                   "x" * 65, "é", "a\n", "²"])
def test_alias_pattern_agrees_with_the_registry(alias):
    try:
        check_alias(alias)
        valid = True
    except InvalidName:
        valid = False
    schema_ok = bool(re.search(ALIAS_JSON_PATTERN.replace("$", r"\Z"), alias)) and 1 <= len(alias) <= 64
    assert schema_ok == valid


def test_the_page_lists_the_documented_operations(client):
    page = client.get("/").text
    assert "/v1/jobs/{job_id}/result" in page and "<code>/v1/models/{model}:predict</code>" in page


def test_every_operation_is_grouped_under_its_blueprints_tag(app, client):
    """/docs (Swagger UI) lists operations by tag: a new blueprint must choose its group."""
    blueprints = {rule.endpoint.split(".", 1)[0] for rule, _ in documented_rules(app) if "." in rule.endpoint}
    assert blueprints <= set(TAGS), blueprints - set(TAGS)
    document = client.get("/openapi.json").get_json()
    names = [tag["name"] for tag in document["tags"]]
    used = {operation["tags"][0] for methods in document["paths"].values() for operation in methods.values()}
    assert used == set(names) and len(names) == len(set(names))
    assert document["paths"]["/v1/models/{model}:predict"]["post"]["tags"] == ["V1 (TF Serving)"]
    assert document["paths"]["/docs"]["get"]["tags"] == ["Console"]
