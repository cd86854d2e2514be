"""Model management: listing, manifests, promotion and rollback with and without the API key."""

from __future__ import annotations

import requests

from tests.conftest import API_KEY
from tests.support import wait_until

ALIAS = "/v1/models/mnist/aliases/production"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _served_version(url: str) -> int:
    response = requests.post(f"{url}/v1/models/mnist:predict", json={"instances": [[0] * 784]}, timeout=10)
    return response.json()["model_version"]


def test_model_listing_and_manifest(api):
    info = requests.get(f"{api.url}/v1/models/mnist", timeout=10).json()
    assert info["production_version"] == 1 and info["aliases"] == {"production": 1}
    assert [v["version"] for v in info["versions"]] == [1, 2]
    assert info["versions"][0]["aliases"] == ["production"]
    assert 0.5 < info["versions"][0]["metrics"]["dev_accuracy"] <= 1 and info["versions"][1]["created_at"]
    assert [s["state"] for s in info["model_version_status"]] == ["AVAILABLE", "AVAILABLE"]
    manifest = requests.get(f"{api.url}/v1/models/mnist/versions/2", timeout=10).json()
    assert manifest["version"] == 2 and len(manifest["weights_sha256"]) == 64
    missing = requests.get(f"{api.url}/v1/models/mnist/versions/5", timeout=10)
    assert missing.status_code == 404 and "no version 5" in missing.json()["error"]


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


def test_promotion_refused_without_a_configured_key(start_api, models_dir):
    server = start_api(models_dir, API_KEY="")
    response = requests.put(server.url + ALIAS, json={"version": 2}, headers=AUTH, timeout=10)
    assert response.status_code == 403 and "no API_KEY configured" in response.json()["error"]
