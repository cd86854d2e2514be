"""The application factory: ``create_app(settings)`` builds a fresh Flask app with its own state."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, request

from core.settings import Settings
from service import console, metrics
from service.errors import register_error_handlers
from service.jobs import api as jobs_api
from service.protocols import evaluation, health, models, openapi, repository, triton, v1, v2
from service.routing import CONVERTERS, RememberingMap
from service.service_error import ServiceError
from service.state import STATE_KEY, ServiceState


def _body_size_limit(settings: Settings) -> Callable[[], None]:
    """A hook: 413 from the Content-Length header alone, before a byte of the body is read or parsed.

    Job uploads (CSV files, datasets) have their own, larger limit; everything else is held to
    ``MAX_BODY_BYTES``. Werkzeug enforces the same limit while reading chunked bodies. The limits
    are read once here, not looked up on every request.
    """
    uploads, bodies, jobs = settings.max_upload_bytes, settings.max_body_bytes, jobs_api.blueprint.name

    def limit_body_size() -> None:
        req = request._get_current_object()  # one context lookup instead of one per attribute
        limit = uploads if req.blueprint == jobs else bodies
        req.max_content_length = limit
        length = req.content_length
        if length is not None and length > limit:
            raise ServiceError(413, f"request body of {length} bytes is larger than the limit of {limit} bytes")

    return limit_body_size


class ServiceApp(Flask):
    """Flask with a URL map that remembers recent matches (``service.routing.RememberingMap``)."""

    url_map_class = RememberingMap


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The console's assets are the app's own static files and templates (``/static/<filename>``).
    app = ServiceApp(__name__, static_folder="console/static", template_folder="console/templates")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.url_map.converters.update(CONVERTERS)  # before the blueprints: their rules name these converters
    app.extensions[STATE_KEY] = ServiceState.from_settings(settings, record=metrics.record_inference)
    register_error_handlers(app)
    metrics.install(app)  # first: its timer must start before the other hooks run
    app.before_request(_body_size_limit(settings))
    for blueprint in (health.blueprint, v1.blueprint, v2.blueprint, repository.blueprint, triton.blueprint,
                      models.blueprint, metrics.blueprint, openapi.blueprint, jobs_api.blueprint, evaluation.blueprint,
                      console.blueprint):
        app.register_blueprint(blueprint)
    return app
