"""Model management: listing, manifests, promotion and rollback with and without the API key.

In-process (``client``/``make_client``), but for promotion and rollback, which every one of
several gunicorn workers must follow.
"""

from __future__ import annotations

import requests
from flask.testing import FlaskClient

from core.registry import ModelRegistry
from tests.conftest import API_KEY
from tests.support import wait_until

ALIAS = "/v1/models/mnist/aliases/production"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _served_version(url: str) -> int:
    response = requests.post(f"{url}/v1/models/mnist:predict", json={"instances": [[0] * 784]}, timeout=10)
    return response.json()["model_version"]


def _served_version_in(client: FlaskClient) -> int:
    return client.post("/v1/models/mnist:predict", json={"instances": [[0] * 784]}).json["model_version"]


def test_model_listing_and_manifest(make_client, models_dir):
    client = make_client(models_dir)  # a fresh app: no version loaded before the listing
    info = client.get("/v1/models/mnist").json
    assert info["production_version"] == 1 and info["aliases"] == {"production": 1}
    assert [v["version"] for v in info["versions"]] == [1, 2]
    assert info["versions"][0]["aliases"] == ["production"]
    assert 0.5 < info["versions"][0]["metrics"]["dev_accuracy"] <= 1 and info["versions"][1]["created_at"]
    # TF Serving's states, in the answering process: production loaded by the listing, version 2 on disk only
    status = info["model_version_status"]
    assert [(s["version"], s["state"], s["status"]["error_code"]) for s in status] == [
        ("1", "AVAILABLE", "OK"), ("2", "START", "OK")]
    assert "loaded on first request" in status[1]["status"]["error_message"]
    manifest = client.get("/v1/models/mnist/versions/2").json
    assert manifest["version"] == 2 and len(manifest["weights_sha256"]) == 64
    assert manifest["model_version_status"] == [status[1]]
    assert client.post("/v1/models/mnist/versions/2:predict", json={"instances": [[0] * 784]}).status_code == 200
    assert client.get("/v1/models/mnist/versions/2").json["model_version_status"] == [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    missing = client.get("/v1/models/mnist/versions/5")
    assert missing.status_code == 404 and "no version 5" in missing.json["error"]


def test_promote_and_roll_back(start_api, models_dir):
    server = start_api(models_dir)
    url = server.url
    assert requests.put(url + ALIAS, json={"version": 2}, timeout=10).status_code == 401
    wrong = requests.put(url + ALIAS, json={"version": 2}, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 403 and wrong.json()["error"] == "invalid API key"
    unknown = requests.put(url + ALIAS, json={"version": 9}, headers=AUTH, timeout=10)
    assert unknown.status_code == 404 and "no version 9" in unknown.json()["error"]
    bad = requests.put(url + ALIAS, json={"version": "two"}, headers=AUTH, timeout=10)
    assert bad.status_code == 422 and bad.json()["error"].startswith("version:")
    assert _served_version(url) == 1

    promoted = requests.put(url + ALIAS, json={"version": 2}, headers=AUTH, timeout=10)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {"model": "mnist", "alias": "production", "version": 2, "previous_version": 1,
                               "aliases": {"production": 2}}
    # Every worker must follow within a couple of seconds; fresh connections reach both workers.
    wait_until(lambda: all(_served_version(url) == 2 for _ in range(10)), 3, "workers serving version 2")

    staged = requests.put(url + "/v1/models/mnist/aliases/staging", json={"version": 1}, headers=AUTH, timeout=10)
    assert staged.status_code == 200
    wait_until(lambda: requests.post(url + "/v1/models/mnist/labels/staging:predict", timeout=10,
                                     json={"instances": [[0] * 784]}).status_code == 200, 3, "staging alias")

    rolled = requests.put(url + ALIAS, json={"version": 1}, headers=AUTH, timeout=10)
    assert rolled.json()["previous_version"] == 2
    wait_until(lambda: all(_served_version(url) == 1 for _ in range(10)), 3, "workers back on version 1")


def test_promotion_refused_without_a_configured_key(make_client, models_dir):
    client = make_client(models_dir, api_key="")
    response = client.put(ALIAS, json={"version": 2}, headers=AUTH)
    assert response.status_code == 403 and "no API_KEY configured" in response.json["error"]


def _corrupt(models_dir, version: int) -> None:
    weights = models_dir / "mnist" / str(version) / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)  # same size, wrong sha256


def test_promoting_a_version_that_does_not_load_is_refused(make_client, models_dir):
    client = make_client(models_dir)
    _corrupt(models_dir, 2)
    refused = client.put(ALIAS, json={"version": 2}, headers=AUTH)
    assert refused.status_code == 409, refused.text
    assert refused.json["error"].startswith("cannot point 'production' at version 2: model 'mnist' version 2: "
                                            "weights.npz has sha256")
    info = client.get("/v1/models/mnist").json
    assert info["aliases"] == {"production": 1} and info["serving_version"] == 1 and info["error"] is None
    assert _served_version_in(client) == 1


def test_a_broken_production_shows_as_degraded_while_the_old_version_serves(make_client, models_dir):
    client = make_client(models_dir)
    assert _served_version_in(client) == 1
    _corrupt(models_dir, 2)
    # The alias is moved behind the API's back (a hand edit, or the files corrupted after a promotion).
    ModelRegistry(models_dir).set_alias("mnist", "production", 2)

    def degraded() -> bool:
        return client.get("/readyz").json["status"] == "degraded"

    wait_until(degraded, 5, "/readyz to report the broken production")
    ready = client.get("/readyz")
    assert ready.status_code == 200  # still serving, so still ready
    body = ready.json
    assert body["serving_version"] == 1 and "version 2: weights.npz has sha256" in body["error"]
    info = client.get("/v1/models/mnist").json
    assert info["production_version"] == 2 and info["serving_version"] == 1
    assert "refusing to load it" in info["error"]
    status = {s["version"]: s for s in info["model_version_status"]}
    assert status["1"]["state"] == "AVAILABLE"
    assert status["2"]["state"] == "UNKNOWN" and status["2"]["status"]["error_code"] == "FAILED_PRECONDITION"
    assert "sha256" in status["2"]["status"]["error_message"]
    assert _served_version_in(client) == 1

    ModelRegistry(models_dir).set_alias("mnist", "production", 1)  # the operator rolls back
    wait_until(lambda: client.get("/readyz").json["status"] == "ready", 5, "/readyz back to ready")
    assert client.get("/readyz").json["error"] is None


def test_invalid_aliases_are_422_never_500(make_client, models_dir):
    client = make_client(models_dir)
    for alias in ("12", "prod%C3%BCction", "%C2%B2", "staging%0A", "a" * 65):
        response = client.put(f"/v1/models/mnist/aliases/{alias}", json={"version": 1}, headers=AUTH)
        assert response.status_code == 422, (alias, response.text)
        assert response.json["error"].startswith("invalid alias"), alias
    assert ModelRegistry(models_dir).aliases("mnist") == {"production": 1}
