"""One error shape for the whole API: ``{"error": "<what was wrong and where>"}`` with a 4xx/5xx.

Codecs, the dataplane and the blueprints raise Flask-free errors that carry their HTTP status:
``ServiceError``, ``ImageError`` from image decoding and
``RegistryError`` from the model registry. ONE handler, registered by the app factory, turns any
of them into that JSON body; Flask's own HTTP errors get the same shape, so no bad input ever
becomes a 500.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from core.registry import RegistryError
from service.codecs.image_decode import ImageError
from service.service_error import ServiceError

log = logging.getLogger(__name__)

# Every Flask-free error type whose ``status`` (and, for ServiceError, ``headers``) says how to answer.
REFUSALS: tuple[type[Exception], ...] = (ServiceError, ImageError, RegistryError)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[Response, int]:
    response = jsonify({"error": message})
    response.headers.update(headers or {})
    return response, status


def refusal_response(exc: Exception) -> tuple[Response, int]:
    """A ``REFUSALS`` error -> its status and ``{"error": message}``.

    A registry 5xx (a digest that does not match, nothing published) is the operator's to fix,
    so it is also logged; the others describe the request or a transient limit.
    """
    status = int(getattr(exc, "status", 500))
    if isinstance(exc, RegistryError) and status >= 500:
        log.error("registry error: %s", exc)
    return error_response(status, str(exc), getattr(exc, "headers", None))


def register_error_handlers(app: Flask) -> None:
    for refusal in REFUSALS:
        app.register_error_handler(refusal, refusal_response)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        # Keep the headers the exception carries (Allow on a 405, Retry-After, WWW-Authenticate);
        # only its HTML body and Content-Type are replaced by the JSON error.
        headers = {key: value for key, value in exc.get_headers() if key.lower() != "content-type"}
        message = exc.description or exc.name
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            message = f"{request.method} is not allowed here; this URL accepts {', '.join(sorted(exc.valid_methods))}"
        return error_response(exc.code or 500, message, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal server error")
