"""The prediction API: Flask app factory and blueprints (V1, V2, jobs, models, health, metrics).

Run it with ``gunicorn -c deploy/gunicorn.conf.py "service:create_app()"``.
"""

from service.app import create_app

__all__ = ["create_app"]
