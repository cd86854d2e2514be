"""Operations: /metrics (multiprocess), /openapi.json, the browsable page, access logs, limits, 503.

Metrics across workers, gunicorn's log and chunked bodies need real gunicorn (``api``/``start_api``);
the document, the page and the probes are the app's answers (``client``)."""

from __future__ import annotations

import orjson
import requests
from prometheus_client.parser import text_string_to_metric_families


def test_metrics_aggregate_all_workers(api, digits):
    for _ in range(6):  # fresh connections: both workers answer some of these
        requests.post(f"{api.url}/v1/models/mnist:predict", json={"instances": digits[0][:5].tolist()}, timeout=10)
    requests.post(f"{api.url}/v1/models/mnist:predict", json={"instances": []}, timeout=10)
    text = requests.get(f"{api.url}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests_total = {(s.labels["endpoint"], s.labels["status"]): s.value
                      for s in families["mnist_http_requests"].samples if s.name.endswith("_total")}
    assert requests_total[("/v1/models/<name>:predict", "200")] >= 6
    assert requests_total[("/v1/models/<name>:predict", "422")] >= 1
    buckets = [s for s in families["mnist_http_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["endpoint"] == "/v1/models/<name>:predict"
               and s.labels["status"] == "200" and s.labels["le"] == "+Inf"]
    assert buckets and buckets[0].value >= 6
    per_class = {s.labels["label"]: s.value for s in families["mnist_predictions"].samples
                 if s.name.endswith("_total") and s.labels["version"] == "1"}
    assert sum(per_class.values()) >= 30 and set(per_class) <= {str(d) for d in range(10)}
    served = [s for s in families["mnist_model_version_served"].samples]
    assert served and all(s.value == 1 for s in served) and all("pid" in s.labels for s in served)


def test_openapi_document(client):
    document = orjson.loads(client.get("/openapi.json").data)
    assert document["openapi"].startswith("3.")
    for path in ("/v1/models/{model}:predict", "/v1/models/{model}/versions/{version}:predict",
                 "/v1/models/{model}/labels/{alias}:predict", "/v1/models/{model}:predict_image",
                 "/v1/models/{model}/aliases/{alias}", "/v2/models/{model}/infer", "/v2/health/ready"):
        assert path in document["paths"], path
    schemas = document["components"]["schemas"]
    assert {"PredictRequest", "PredictResponse", "V2InferRequest", "AliasUpdate", "ErrorResponse"} <= set(schemas)
    ref = document["paths"]["/v1/models/{model}:predict"]["post"]["requestBody"]["content"]["application/json"]
    assert ref["schema"]["$ref"] == "#/components/schemas/PredictRequest"


def test_browsable_page(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    # The console's Try it page: the drawing pad, and the endpoint table naming the predict route.
    assert "<canvas" in response.text and "<code>/v1/models/{model}:predict</code>" in response.text


def test_health_endpoints(client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200


def test_access_log_lines_are_json(api):
    requests.get(api.url + "/v1/models/mnist", timeout=10)
    lines = [line for line in api.log_path.read_text().splitlines() if line.startswith('{"ts"')]
    entries = [orjson.loads(line) for line in lines]
    entry = next(e for e in reversed(entries) if e["path"] == "/v1/models/mnist")
    assert entry["status"] == 200 and entry["method"] == "GET" and entry["duration_ms"] >= 0


def test_no_model_yet_is_503_and_body_limit_is_413(start_api, tmp_path):
    server = start_api(tmp_path / "empty-models", MAX_BODY_BYTES="4096")
    response = requests.post(server.url + "/v1/models/mnist:predict", json={"instances": [[0] * 784]}, timeout=10)
    assert response.status_code == 503 and "no model 'mnist' has been published yet" in response.json()["error"]
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 503
    assert requests.get(server.url + "/v2/health/ready", timeout=10).status_code == 503
    body = orjson.dumps({"instances": [[255] * 784] * 3})
    too_big = requests.post(server.url + "/v1/models/mnist:predict", data=body,
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert too_big.status_code == 413 and "larger than the limit of 4096 bytes" in too_big.json()["error"]
    chunked = requests.post(server.url + "/v1/models/mnist:predict", data=iter([body[:3000], body[3000:]]),
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert chunked.status_code == 413 and "error" in chunked.json()


def test_every_json_answer_ends_with_a_newline(client, digits):
    """A pasted ``curl`` leaves the shell's prompt on a line of its own: successes and errors alike."""
    answers = [client.get("/v1/models"), client.get("/readyz"), client.get("/v2/models/mnist"),
               client.post("/v1/models/mnist:predict", json={"instances": digits[0][:1].tolist()}),
               client.post("/v2/models/mnist/infer", json={"inputs": [{"name": "pixels", "shape": [1, 784],
                                                                      "datatype": "FP32", "data": [0] * 784}]}),
               client.get("/v1/models/nope"), client.post("/v1/models/mnist:predict", json={})]
    for answer in answers:
        assert answer.mimetype == "application/json", answer.request.path
        assert answer.data.endswith(b"}\n") and orjson.loads(answer.data), (answer.request.path, answer.data[-40:])
