"""URL converters for the path pieces every blueprint shares: a model name, a version, an alias.

Each converter matches exactly the text its view can accept, so a URL reaches only the rules
that can answer it: ``GET /v1/models/mnist:predict`` no longer matches ``GET /v1/models/<name>``
(a model name never holds ':'), and ``OPTIONS`` lists only the methods that do not answer 405.
Each converter also says what the OpenAPI document declares for its parameter
(``json_schema``), so the document's path parameters come from the routes themselves.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, ClassVar

from werkzeug.routing import BaseConverter

# core.registry_errors.check_alias in JSON Schema terms (no look-ahead): at least one character that
# is not a digit. tests/api/test_openapi.py checks the two rules agree.
ALIAS_JSON_PATTERN = r"^[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*$"


class ModelNameConverter(BaseConverter):
    """A model name: one path segment without ':' (the ':' starts the verb in ``<name>:predict``).
    Any other name reaches the view, which answers 404 naming the model this server serves; the
    document declares that one name (an ``enum``)."""

    regex = r"[^/:]+"
    param_name = "model"  # the views call it ``name``; clients and the document have always said {model}
    json_schema: ClassVar[dict[str, Any]] = {"type": "string"}


class VersionConverter(BaseConverter):
    """A version segment without ':'; the view answers 404 "versions are positive integers" for
    anything but ASCII digits from 1 up, so the document declares a positive integer."""

    regex = r"[^/:]+"
    json_schema: ClassVar[dict[str, Any]] = {"type": "integer", "minimum": 1,
                                             "description": "a version number (positive integer)"}


class AliasConverter(BaseConverter):
    """An alias segment: no '/' and no ':'; the registry's alias rule (422 otherwise) is checked by the view."""

    regex = r"[^/:]+"
    json_schema: ClassVar[dict[str, Any]] = {"type": "string", "minLength": 1, "maxLength": 64,
                                             "pattern": ALIAS_JSON_PATTERN,
                                             "description": "1-64 ASCII letters, digits, '-' or '_', not only digits"}


CONVERTERS: dict[str, type[BaseConverter]] = {"model": ModelNameConverter, "version": VersionConverter,
                                              "alias": AliasConverter}


_CONVERTER_PREFIX = re.compile(r"<[^<>:]+:([^<>]+)>")


@lru_cache(maxsize=256)  # called for every request by the metrics hook; the rules are a fixed few
def plain_rule(rule: str) -> str:
    """``/v1/models/<model:name>:predict`` -> ``/v1/models/<name>:predict``: the rule as metrics and
    logs have always labelled it, whatever converters it names."""
    return _CONVERTER_PREFIX.sub(r"<\1>", rule)


class JobIdConverter(BaseConverter):
    """A job id segment that is not ``score`` or ``train``, so that ``/v1/jobs/<job_id>`` never matches
    the submission URLs (``GET /v1/jobs/score`` is a 405 and ``OPTIONS`` lists only POST). Other
    malformed ids reach the view, whose 404 says job ids are 32 hexadecimal characters."""

    regex = r"(?!(?:score|train)(?![^/]))[^/]+"
    json_schema: ClassVar[dict[str, Any]] = {"type": "string", "pattern": "^[0-9a-f]{32}$",
                                             "description": "32 hexadecimal characters"}


CONVERTERS["job_id"] = JobIdConverter
