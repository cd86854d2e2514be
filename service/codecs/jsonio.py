"""Fast JSON in and out with orjson, and the body checks every JSON endpoint shares.

The parsing itself is Flask-free in ``service.codecs.json_decode`` (re-exported here); this module
reads the request body and writes responses.

A 1,000-instance request is ~3 MB of numbers: orjson parses it several times faster than the
standard library, and serialises numpy rows directly (no ``tolist`` round trip).
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, request

from service.codecs.json_decode import parse_json, type_name, validate
from service.service_error import ServiceError

__all__ = ["JSON_OPTIONS", "json_response", "parse_json", "read_body", "require_json_content_type", "type_name",
           "validate"]

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # content_type, not mimetype: Werkzeug would otherwise work out a charset for every response.
    # The newline ends the text as a file's last line ends: a pasted curl's prompt starts on its own line.
    return Response(orjson.dumps(body, option=JSON_OPTIONS | orjson.OPT_APPEND_NEWLINE), status=status, headers=headers,
                    content_type="application/json")


def read_body() -> bytes:
    """The raw body, held to the request's size limit also when it arrives chunked.

    A body with Content-Length was already checked against the limit before the view ran.
    Werkzeug silently truncates a chunked body at the limit, so that case reads one byte
    past the limit from the server's stream to tell "exactly at the limit" from "over it".
    """
    length, environ = request.content_length, request.environ
    if length is not None and "wsgi.input" in environ:
        # The server's stream ends at Content-Length (gunicorn, Werkzeug); reading it directly
        # skips Werkzeug's stream wrappers, a measurable share of a one-digit request.
        return environ["wsgi.input"].read(length) if length else b""
    if length is not None or "wsgi.input" not in environ:
        return request.get_data(cache=False)
    limit = request.max_content_length
    if limit is None:
        return request.environ["wsgi.input"].read()
    raw = request.environ["wsgi.input"].read(limit + 1)
    if len(raw) > limit:
        raise ServiceError(413, f"request body is larger than the limit of {limit} bytes")
    return raw


def require_json_content_type(allow_missing: bool = False) -> None:
    """415 unless the body is declared as JSON (``application/json`` or ``+json``)."""
    mimetype = request.mimetype
    if not mimetype and allow_missing:
        return
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ServiceError(415, f"expected Content-Type application/json, got {request.content_type or 'none'!r}")
