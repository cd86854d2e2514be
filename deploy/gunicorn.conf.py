"""gunicorn settings for the API (also what docker-compose and deploy/run-local use)."""

import os

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 60
