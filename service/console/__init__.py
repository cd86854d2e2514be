"""The web console: Try it (``/``), Models, Jobs and Health pages, served by the app itself.

The pages are Jinja templates with small vanilla JavaScript in ``static/`` beside this module; every figure
they show is fetched from the public HTTP API (the same endpoints anyone can curl), so the
console has no data path of its own. Charts are inline SVG drawn by ``static/charts.js``; the API
docs page (``/docs``) is Swagger UI, vendored in ``static/vendor/swagger-ui``: no CDN, nothing
leaves the host.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request, send_from_directory

from service.protocols.openapi import api_document
from service.state import get_state

blueprint = Blueprint("console", __name__)
PAGES = (("console.index", "Try it"), ("console.models", "Models"), ("console.jobs", "Jobs"),
         ("console.health", "Health"), ("console.docs", "API"))


def _page(template: str, active: str, **context: object) -> str:
    # The model comes from ``?model=`` so a view is shareable and survives a reload. It is not
    # checked here: an unknown name still renders the page, whose API calls then show the API's
    # own 404 text (naming the served models) instead of a blank page.
    default = get_state().settings.model_name
    chosen = request.args.get("model", "").strip() or default
    link_args = {"model": chosen} if chosen != default else {}
    return render_template(template, pages=PAGES, active=active, model=chosen, default_model=default,
                           link_args=link_args, **context)


@blueprint.get("/")
def index() -> str:
    """Try it: draw or upload a digit, see what the model saw, its probabilities and an explanation."""
    operations = [(method.upper(), path, operation["summary"])
                  for path, methods in api_document()["paths"].items() for method, operation in methods.items()]
    return _page("try.html", "console.index", operations=operations)


@blueprint.get("/console/models")
def models() -> str:
    return _page("models.html", "console.models")


@blueprint.get("/console/jobs")
def jobs() -> str:
    return _page("jobs.html", "console.jobs")


@blueprint.get("/console/health")
def health() -> str:
    return _page("health.html", "console.health")


@blueprint.get("/docs")
def docs() -> str:
    """Swagger UI over ``/openapi.json``, as KServe, MLServer and BentoML serve one at ``/docs``."""
    return _page("docs.html", "console.docs")


@blueprint.get("/favicon.ico")
def favicon() -> Response:
    """The console's icon at the one URL every browser asks for, whatever the page's ``<link rel=icon>``
    says (a JSON page, /openapi.json, a download). The same SVG as ``/static/favicon.svg``, served in
    place rather than redirected: one request, and browsers take an SVG icon by its content type."""
    return send_from_directory(current_app.static_folder or "", "favicon.svg", mimetype="image/svg+xml",
                               max_age=86400)
