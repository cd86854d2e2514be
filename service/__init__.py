"""The prediction API: Flask app factory and blueprints (V1, V2, jobs, models, health, metrics).

Run it with ``gunicorn -c deploy/gunicorn.conf.py "service:create_app()"``.

``create_app`` is imported on first use, not with the package: gunicorn's master imports
``service.server`` (worker classes, hooks) from its config, and must not load the app with it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from service.app import create_app

        return create_app
    raise AttributeError(f"module 'service' has no attribute {name!r}")
