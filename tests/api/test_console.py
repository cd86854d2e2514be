"""The console's routes in process (no browser): what a browser fetches by itself, such as
``/favicon.ico``, answers with the console's own file and type, not the API's JSON 404."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

FAVICON = Path(__file__).parents[2] / "service" / "console" / "static" / "favicon.svg"


def test_favicon_ico_is_the_consoles_svg_icon(client: FlaskClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.data == FAVICON.read_bytes()
    assert response.cache_control.max_age == 86400  # asked for on every page view otherwise
    # HEAD (Flask's own for every GET) answers too, without a body.
    head = client.head("/favicon.ico")
    assert head.status_code == 200 and head.data == b""


def test_favicon_ico_is_in_the_openapi_document(client: FlaskClient) -> None:
    operation = client.get("/openapi.json").json["paths"]["/favicon.ico"]["get"]
    assert operation["operationId"] == "console.favicon"
    assert set(operation["responses"]["200"]["content"]) == {"image/svg+xml"}


def test_docs_page_is_swagger_ui_from_this_app(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'src="/static/vendor/swagger-ui/swagger-ui-bundle.js"' in html and 'data-spec="/openapi.json"' in html
    assert "http://" not in html and "https://" not in html  # no CDN
    bundle = client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.data) > 1_000_000
    assert client.get("/static/vendor/swagger-ui/VERSION").get_data(as_text=True).startswith("swagger-ui-dist 5.")
