"""Flask-free JSON decoding shared by the codecs: parse bytes, validate with pydantic, name types.

Errors are ``ServiceError``s that say what and where (400 for bytes that are not JSON, 422 for
JSON of the wrong shape); ``service.codecs.jsonio`` adds the Flask side (reading the body, responses).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from core.validation import describe_validation
from service.service_error import ServiceError


def parse_json(raw: bytes, what: str = "request body") -> Any:
    """Parse JSON bytes; 400 with the position on malformed JSON.

    orjson (like the JSON standard) rejects ``NaN`` and ``Infinity``. Python's ``json.dumps``
    writes them anyway, so on failure the standard parser gets a second try: a body it accepts
    is passed on and the value checks then name the instance and pixel that is not finite.
    """
    if not raw:
        raise ServiceError(400, f"{what} is empty: expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise ServiceError(400, f"{what} is not valid JSON: {exc}") from None


def validate(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """``model.model_validate`` with a 422 that names the field of the first problem."""
    if not isinstance(data, dict):
        raise ServiceError(422, f"{prefix or 'request body'}: expected a JSON object, got {type_name(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ServiceError(422, describe_validation(exc, prefix=prefix, limit=1)) from None


def type_name(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)
