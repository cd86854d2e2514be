"""The application factory: ``create_app(settings)`` builds a fresh Flask app with its own state."""

from __future__ import annotations

import logging

from flask import Flask, request

from core.settings import Settings
from service import health, jobs_api, metrics, models_api, openapi, v1, v2
from service.errors import ApiError, register_error_handlers
from service.state import STATE_KEY, ServiceState, get_state


def _limit_body_size() -> None:
    """413 from the Content-Length header alone, before a byte of the body is read or parsed.

    Job uploads (CSV files, datasets) have their own, larger limit; everything else is held to
    ``MAX_BODY_BYTES``. Werkzeug enforces the same limit while reading chunked bodies.
    """
    settings = get_state().settings
    limit = settings.max_upload_bytes if request.blueprint == jobs_api.blueprint.name else settings.max_body_bytes
    request.max_content_length = limit
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, f"request body of {length} bytes is larger than the limit of {limit} bytes")


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions[STATE_KEY] = ServiceState.from_settings(settings)
    register_error_handlers(app)
    metrics.install(app)  # first: its timer must start before the other hooks run
    app.before_request(_limit_body_size)
    for blueprint in (health.blueprint, v1.blueprint, v2.blueprint, models_api.blueprint, metrics.blueprint,
                      openapi.blueprint, jobs_api.blueprint):
        app.register_blueprint(blueprint)
    return app
