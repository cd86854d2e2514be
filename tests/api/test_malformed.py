"""A table of malformed requests: each gets its 4xx and an {"error"} that says what and where.

In-process (``client``): these check what the app answers to each request; test_fuzz.py sends
generated bad input to the app under real gunicorn."""

from __future__ import annotations

import orjson
import pytest

from tests.api.conftest import b64, files

ZEROS = [0] * 784
PREDICT = "/v1/models/mnist:predict"
INFER = "/v2/models/mnist/infer"
JSON = "application/json"


def _row(**changes: object) -> list:
    row = list(ZEROS)
    for index, value in changes.items():
        row[int(index.removeprefix("p"))] = value
    return row


def _v2(**tensor: object) -> dict:
    return {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": ZEROS, **tensor}]}


def _body(obj: object) -> bytes:
    return orjson.dumps(obj)


# (id, path, body bytes, content type, expected status, expected message part)
CASES = [
    ("wrong length", PREDICT, _body({"instances": [[0] * 783]}), JSON, 422,
     "instances[0]: expected 784 values or 28x28, got 783"),
    ("wrong length later instance", PREDICT, _body({"instances": [ZEROS, ZEROS, ZEROS, [1, 2]]}), JSON, 422,
     "instances[3]: expected 784 values or 28x28, got 2"),
    ("NaN", PREDICT, b'{"instances": [[' + b"0," * 5 + b"NaN" + b",0" * 778 + b"]]}", JSON, 422,
     "instances[0][5]: nan is not a finite number"),
    ("Infinity", PREDICT, b'{"instances": [[Infinity' + b",0" * 783 + b"]]}", JSON, 422, "is not a finite number"),
    ("string pixel", PREDICT, _body({"instances": [_row(p3="7")]}), JSON, 422,
     "instances[0][3]: expected a number, got string"),
    ("null pixel", PREDICT, _body({"instances": [ZEROS, _row(p9=None)]}), JSON, 422,
     "instances[1][9]: expected a number, got null"),
    ("boolean pixels", PREDICT, _body({"instances": [[True] * 784]}), JSON, 422, "got boolean"),
    ("negative pixel", PREDICT, _body({"instances": [ZEROS, _row(p0=-1)]}), JSON, 422,
     "instances[1][0]: pixel value -1 is outside 0..255"),
    ("pixel above 255", PREDICT, _body({"instances": [_row(p783=256.5)]}), JSON, 422,
     "instances[0][783]: pixel value 256.5 is outside 0..255"),
    ("28x28 out of range names row and column", PREDICT,
     _body({"instances": [[[0] * 28] * 27 + [[0] * 27 + [300]]]}), JSON, 422, "instances[0][27][27]: pixel value 300"),
    ("short 28x28 row", PREDICT, _body({"instances": [[[0] * 28] * 27 + [[0] * 27]]}), JSON, 422,
     "row 27 must hold 28 numbers, got 27 values"),
    ("empty list", PREDICT, _body({"instances": []}), JSON, 422, "instances: empty list"),
    ("neither instances nor inputs", PREDICT, _body({"input": [ZEROS]}), JSON, 422, "input: Extra inputs"),
    ("no batch at all", PREDICT, _body({"signature_name": "x"}), JSON, 422,
     "send exactly one of 'instances' (row format) or 'inputs' (columnar format), got neither"),
    ("instances not a list", PREDICT, _body({"instances": "all of them"}), JSON, 422, "instances: Input should be"),
    ("instance is a string", PREDICT, _body({"instances": ["0,0,0"]}), JSON, 422,
     "instances[0]: expected an array of 784 numbers, a 28x28 array or {\"b64\""),
    ("body is an array", PREDICT, _body([ZEROS]), JSON, 422, "request body: expected a JSON object, got array"),
    ("nested too deep in a row", PREDICT, _body({"instances": [[[[0] * 28]] * 28]}), JSON, 422,
     "row 0 must hold 28 numbers, got 1 values"),
    ("pathologically deep nesting", PREDICT, b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", JSON,
     400, "not valid JSON"),
    ("too many instances", PREDICT, _body({"instances": [[0]] * 4097}), JSON, 422,
     "instances: 4097 instances, at most 4096 per request"),
    ("invalid JSON", PREDICT, b'{"instances": [[0, 1,]]', JSON, 400, "request body is not valid JSON"),
    ("empty body", PREDICT, b"", JSON, 400, "request body is empty"),
    ("wrong content type", PREDICT, _body({"instances": [ZEROS]}), "text/plain", 415,
     "expected Content-Type application/json, got 'text/plain'"),
    ("form-encoded (curl -d default)", PREDICT, b"instances=1", "application/x-www-form-urlencoded", 415,
     "expected Content-Type application/json"),
    ("unknown field", PREDICT, _body({"instances": [ZEROS], "instance": 1}), JSON, 422,
     "instance: Extra inputs are not permitted"),
    ("bad base64", PREDICT, _body({"instances": [{"b64": "not*base64!"}]}), JSON, 422,
     "instances[0].b64: invalid base64"),
    ("non-image bytes", PREDICT, _body({"instances": [ZEROS, {"b64": b64(b"%PDF-1.4 hello")}]}), JSON, 422,
     "instances[1].b64: not a PNG or JPEG image"),
    ("object without b64", PREDICT, _body({"instances": [{"png": "abc"}]}), JSON, 422,
     "instances[0]: an object instance must be {\"b64\""),
    ("unknown version", "/v1/models/mnist/versions/99:predict", _body({"instances": [ZEROS]}), JSON, 404,
     "has no version 99 (available: 1, 2)"),
    ("non-numeric version", "/v1/models/mnist/versions/latest:predict", _body({"instances": [ZEROS]}), JSON, 404,
     "versions are positive integers"),
    ("unknown alias", "/v1/models/mnist/labels/canary:predict", _body({"instances": [ZEROS]}), JSON, 404,
     "has no alias 'canary' (aliases: production)"),
    ("unknown model", "/v1/models/cifar10:predict", _body({"instances": [ZEROS]}), JSON, 404,
     "unknown model 'cifar10': this server serves 'mnist'"),
    ("unknown route", "/v1/predict", _body({"instances": [ZEROS]}), JSON, 404, "URL was not found"),
    ("image endpoint without multipart", "/v1/models/mnist:predict_image", _body({"instances": [ZEROS]}), JSON,
     415, "expected Content-Type multipart/form-data"),
    ("v2 wrong shape", INFER, _body(_v2(shape=[1, 28, 28])), JSON, 422,
     "inputs[0].shape: expected [n, 784], got [1, 28, 28]"),
    ("v2 unsupported datatype", INFER, _body(_v2(datatype="BYTES")), JSON, 422,
     "inputs[0].datatype: 'BYTES' is not supported"),
    ("v2 data count", INFER, _body(_v2(data=[0] * 700)), JSON, 422, "needs 784 values, got 700"),
    ("v2 negative pixel", INFER, _body(_v2(data=_row(p12=-3))), JSON, 422,
     "inputs[0].data[0][12]: pixel value -3 is outside 0..255"),
    ("v2 unknown input", INFER, _body(_v2(name="image")), JSON, 422, "unknown input 'image'"),
    ("v2 unknown output", INFER, _body({**_v2(), "outputs": [{"name": "logits"}]}), JSON, 422,
     "outputs[0].name: unknown output 'logits'"),
    ("v2 missing inputs", INFER, _body({"inputs": []}), JSON, 422, "inputs: List should have at least 1 item"),
    ("v2 wrong content type", INFER, _body(_v2()), "text/csv", 415, "expected Content-Type application/json"),
    ("v2 unknown model", "/v2/models/resnet/infer", _body(_v2()), JSON, 404, "unknown model 'resnet'"),
]


@pytest.mark.parametrize(("path", "body", "content_type", "status", "message"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_malformed_request(client, path, body, content_type, status, message):
    response = client.post(path, data=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert message in response.json["error"]


def test_huge_body_is_refused_from_its_header_before_it_is_read(client):
    # The client announces 1 GB and sends nothing: only a check of Content-Length can answer.
    # (The test client computes Content-Length from the body it is given, so the header is set in
    # the WSGI environ directly, as a server passes it on; reading the empty stream would fail.)
    response = client.post(PREDICT, headers={"Content-Type": JSON},
                           environ_overrides={"CONTENT_LENGTH": str(10**9)})
    status, body = response.status_code, response.json
    assert status == 413
    assert "request body of 1000000000 bytes is larger than the limit of 67108864 bytes" in body["error"]


def test_binary_size_mismatch(client):
    header = _body({"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32",
                                "parameters": {"binary_data_size": 784}}]})
    response = client.post(INFER, data=header + bytes(784),
                           headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 422
    assert "binary_data_size: 784 does not match shape [1, 784] of float32 (3136 bytes)" in response.json["error"]


def test_bad_inference_header_length(client):
    response = client.post(INFER, data=b"{}", headers={"Inference-Header-Content-Length": "999"})
    assert response.status_code == 400 and "Inference-Header-Content-Length" in response.json["error"]


def test_upload_errors_name_the_file(client):
    response = client.post("/v1/models/mnist:predict_image", data=files([("file", "ok.txt", b"hello", "text/plain")]))
    assert response.status_code == 422 and response.json["error"] == "file[0] (ok.txt): not a PNG or JPEG image"
    response = client.post("/v1/models/mnist:predict_image", data=files([("other", "a", b"x", None)]))
    assert response.status_code == 422 and "no file uploaded" in response.json["error"]


def test_wrong_method_is_405_json(client):
    response = client.get(PREDICT)
    assert response.status_code == 405 and "error" in response.json
    # Only the methods that do not answer 405 (a model name never holds ':', so GET /v1/models/<name>
    # does not match a ':predict' URL)
    assert sorted(m.strip() for m in response.headers["Allow"].split(",")) == ["OPTIONS", "POST"]
    assert response.json["error"] == "GET is not allowed here; this URL accepts OPTIONS, POST"
    response = client.delete("/v1/models/mnist")  # Werkzeug's own 405
    assert response.status_code == 405 and response.headers["Content-Type"] == JSON
    assert {"GET", "HEAD"} <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert "DELETE is not allowed here" in response.json["error"]


def test_non_ascii_digits_are_not_numbers(client):
    # "²".isdigit() is True but int("²") raises: these must be clean 4xx, never 500.
    response = client.post("/v1/models/mnist/versions/%C2%B2:predict", json={"instances": [ZEROS]})
    assert response.status_code == 404 and "versions are positive integers" in response.json["error"]
    response = client.get("/v2/models/mnist/versions/%D9%A3")  # Arabic-Indic 3
    assert response.status_code == 404
    # A WSGI server hands header values over as latin-1 decoded text: "\xb2" is the byte 0xB2.
    response = client.post(INFER, data=b"{}", headers={"Inference-Header-Content-Length": "\u00b2"})
    assert response.status_code == 400 and "Inference-Header-Content-Length" in response.json["error"]


def test_an_empty_parameter_is_refused_not_taken_for_the_default(redis_client):
    """``?model=$MODEL`` with MODEL unset must not quietly score or evaluate with another model."""
    csv = ",".join(f"pixel{i}" for i in range(784)) + "\n" + ",".join(["0"] * 784) + "\n"
    response = redis_client.post("/v1/jobs/score?model=", data=csv, content_type="text/csv")
    assert response.status_code == 422 and response.json["error"] == "model: empty; leave it out for the default"
    response = redis_client.post("/v1/jobs/score?alias=&version=", data=csv, content_type="text/csv")
    assert response.json["error"] == "alias, version: empty; leave them out for the default"
    response = redis_client.get("/v1/models/mnist/versions/1/evaluation?dataset=")
    assert response.status_code == 422 and response.json["error"].startswith("dataset: empty")


def test_a_cancel_url_matches_only_the_cancel_route(redis_client):
    job = "0" * 32
    response = redis_client.get(f"/v1/jobs/{job}:cancel")  # not the status of a job called "<id>:cancel"
    assert response.status_code == 405 and sorted(response.headers["Allow"].split(", ")) == ["OPTIONS", "POST"]
    response = redis_client.post(f"/v1/jobs/{job}:cancel")
    assert response.status_code == 404 and response.json["error"] == f"no job {job!r} (unknown or expired)"


def test_training_integers_past_their_bound_are_refused_naming_the_field(redis_client):
    """Every integer of a training configuration has a maximum in the document, so no valid-looking
    integer is refused by pydantic's own 64-bit limit."""
    from tests.conftest import API_KEY

    auth = {"Authorization": f"Bearer {API_KEY}"}
    for value, message in ((2_000_000, "less than or equal to 1000000"), (10**21, "config.batch_size")):
        response = redis_client.post("/v1/jobs/train", json={"dataset": "x.csv", "config": {"batch_size": value}},
                               headers=auth)
        assert response.status_code == 422 and "config.batch_size" in response.json["error"], response.text
        assert message in response.json["error"]
    config = redis_client.get("/openapi.json").json["components"]["schemas"]["TrainConfig"]["properties"]
    unbounded = [name for name, field in config.items() if field.get("type") == "integer" and "maximum" not in field]
    assert unbounded == []
