"""The prediction API: a Flask app factory over one dataplane, in rooms by concern.

- ``app`` (``create_app``), ``state``, ``dataplane`` (the inference path every protocol shares),
  ``batching``, and the HTTP plumbing: ``auth``, ``errors``/``service_error``, ``routing``,
  ``targets``, ``metrics``/``access_log``;
- ``protocols/``: V1, V2 (over HTTP and gRPC), model management, evaluation, health, the OpenAPI document;
- ``codecs/``: request bodies to numpy arrays and back;
- ``jobs/``: batch scoring and retraining on RQ;
- ``console/``: the web console's pages and assets;
- ``server/``: gunicorn's worker classes and hooks, and each worker's gRPC server.

Run it with ``gunicorn -c deploy/gunicorn.conf.py "service:create_app()"``. ``create_app`` is
imported on first use, not with the package: gunicorn's master imports ``service.server`` from
its config, and must not load the app with it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from service.app import create_app

        return create_app
    raise AttributeError(f"module 'service' has no attribute {name!r}")
