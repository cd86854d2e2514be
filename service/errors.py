"""One error shape for the whole API: ``{"error": "<what was wrong and where>"}`` with a 4xx/5xx.

Blueprints raise ``ApiError`` (or let a ``RegistryError`` through); the handlers here turn
them, and Flask's own HTTP errors, into that JSON body, so no bad input ever becomes a 500.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from core.registry import RegistryError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[Response, int]:
    response = jsonify({"error": message})
    response.headers.update(headers or {})
    return response, status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        return error_response(exc.status, exc.message, exc.headers)

    @app.errorhandler(RegistryError)
    def _registry_error(exc: RegistryError) -> tuple[Response, int]:
        if exc.status >= 500:
            log.error("registry error: %s", exc)
        return error_response(exc.status, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        # Keep the headers the exception carries (Allow on a 405, Retry-After, WWW-Authenticate);
        # only its HTML body and Content-Type are replaced by the JSON error.
        headers = {key: value for key, value in exc.get_headers() if key.lower() != "content-type"}
        return error_response(exc.code or 500, exc.description or exc.name, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal server error")
