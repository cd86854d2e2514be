"""The application factory: ``create_app(settings)`` builds a fresh Flask app with its own state."""

from __future__ import annotations

import logging

from flask import Flask

from core.settings import Settings
from service import health, jobs_api
from service.errors import register_error_handlers
from service.state import STATE_KEY, ServiceState


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.extensions[STATE_KEY] = ServiceState.from_settings(settings)
    register_error_handlers(app)
    for blueprint in (health.blueprint, jobs_api.blueprint):
        app.register_blueprint(blueprint)
    return app
