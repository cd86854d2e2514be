"""Flask: the URL map class service/app.py swaps in, and the request object behind the proxy.

``ServiceApp`` sets ``url_map_class``; the request hooks (service/app.py, service/metrics.py) take
the request out of its proxy with the private-looking ``request._get_current_object()`` (werkzeug's
``LocalProxy``) and set ``max_content_length`` on it per request, which Flask then enforces
while the body is read.
"""

from __future__ import annotations

import flask
from werkzeug.exceptions import RequestEntityTooLarge

from service.app import ServiceApp
from service.routing import RememberingMap
from tests.contracts.contract import Contract

FLASK = Contract("flask")


def test_the_names_the_project_uses_from_flask() -> None:
    FLASK.names_used("flask")


def test_the_app_builds_its_url_map_from_url_map_class() -> None:
    FLASK.check(FLASK.attribute(flask.Flask, "url_map_class", "Flask.url_map_class") is not None,
                "Flask.url_map_class is None")
    app = ServiceApp(__name__)
    FLASK.check(isinstance(app.url_map, RememberingMap),
                f"Flask built its url_map as a {type(app.url_map).__name__}, not from url_map_class")
    FLASK.check(hasattr(app.json, "sort_keys"), "app.json.sort_keys is gone (service/app.py turns it off)")


def test_the_request_behind_the_proxy_takes_a_per_request_body_limit() -> None:
    app = flask.Flask(__name__)
    with app.test_request_context("/", method="POST", data=b"x" * 100):
        with FLASK.behaviour("flask.request._get_current_object()"):
            req = flask.request._get_current_object()
        FLASK.check(type(req) is app.request_class,
                    f"request._get_current_object() gave a {type(req).__name__}, not the app's request class")
        with FLASK.behaviour("setting max_content_length on the request"):
            req.max_content_length = 10
        FLASK.check(flask.request.max_content_length == 10, "the request's max_content_length did not take the limit")
        try:
            req.get_data()
        except RequestEntityTooLarge:
            pass
        else:
            FLASK.fail("a body over the request's max_content_length was read without a 413")
