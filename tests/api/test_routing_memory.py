"""service.routing.RememberingMap: a remembered match answers exactly as Werkzeug's own matching.

The app's URL map keeps the rule and arguments each recent (path, method) matched. What it must
not change: the arguments each request gets (its own copy), the answers that are not matches
(404, 405, redirects, converter checks), and its size whatever paths clients invent.
"""

from __future__ import annotations

from flask import Flask

from service.routing import RememberingMap

ONE_DIGIT = {"instances": [[0] * 784]}


def _matches(app: Flask) -> dict:
    url_map = app.url_map
    assert isinstance(url_map, RememberingMap)
    return url_map.matches


def test_a_remembered_match_serves_the_same_request_again(client, app):
    for _ in range(3):
        answer = client.post("/v1/models/mnist:predict", json=ONE_DIGIT)
        assert answer.status_code == 200 and answer.get_json()["predictions"][0]["label"] in range(10)
    assert ("/v1/models/mnist:predict", "POST", True) in _matches(app)
    # the same path by another method is its own entry, and still a 405 with the allowed methods
    for _ in range(2):
        answer = client.get("/v1/models/mnist:predict")
        assert answer.status_code == 405 and "POST" in answer.headers["Allow"]
    assert ("/v1/models/mnist:predict", "GET", True) not in _matches(app)


def test_arguments_are_each_request_s_own(client, app):
    for version in ("1", "1", "999", "1"):  # 1 exists, 999 does not: each answer is its own
        answer = client.post(f"/v1/models/mnist/versions/{version}:predict", json=ONE_DIGIT)
        assert answer.status_code == (200 if version == "1" else 404), answer.get_json()
    key = ("/v1/models/mnist/versions/1:predict", "POST", True)
    _, arguments = _matches(app)[key]
    assert arguments == {"name": "mnist", "version": "1"}


def test_non_matches_are_never_remembered_and_the_memory_is_bounded(client, app):
    for _ in range(2):
        assert client.get("/no/such/path").status_code == 404
        assert client.post("/v1/models/mnist/versions/abc:predict", json=ONE_DIGIT).status_code == 404
    assert not any(path.startswith("/no/such") for path, _, _ in _matches(app))
    url_map = app.url_map
    for i in range(url_map.size + 10):  # every name a client may invent is a match of <model:name>
        client.post(f"/v1/models/m{i}:predict", json=ONE_DIGIT)
    assert len(_matches(app)) <= url_map.size
    assert client.post("/v1/models/mnist:predict", json=ONE_DIGIT).status_code == 200
