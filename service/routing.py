"""URL converters for the path pieces every blueprint shares: a model name, a version, an alias.

Each converter matches exactly the text its view can accept, so a URL reaches only the rules
that can answer it: ``GET /v1/models/mnist:predict`` no longer matches ``GET /v1/models/<name>``
(a model name never holds ':'), and ``OPTIONS`` lists only the methods that do not answer 405.
Each converter also says what the OpenAPI document declares for its parameter
(``json_schema``), so the document's path parameters come from the routes themselves.

``RememberingMap``: the app's URL map, which remembers what each recent path matched.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, ClassVar

from werkzeug.routing import BaseConverter, Map, MapAdapter

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
    """A job id segment that is not ``score`` or ``train`` and holds no ':', so that ``/v1/jobs/<job_id>``
    never matches the submission URLs (``GET /v1/jobs/score`` is a 405 and ``OPTIONS`` lists only POST)
    nor ``<job_id>:cancel``. Other malformed ids reach the view, whose 404 says job ids are 32
    hexadecimal characters."""

    regex = r"(?!(?:score|train)(?![^/:]))[^/:]+"
    json_schema: ClassVar[dict[str, Any]] = {"type": "string", "pattern": "^[0-9a-f]{32}$",
                                             "description": "32 hexadecimal characters"}


CONVERTERS["job_id"] = JobIdConverter


class RememberingMap(Map):
    """A URL map that remembers the rule and arguments each recent (path, method) matched.

    Werkzeug matches a path against the rules' regular expressions on every request (about 20 us
    for a one-digit predict's path in a loop here), while a serving client asks the same few paths
    again and again. Only matches are kept, so redirects, 404 and 405 answers (and
    the converters' checks behind them) are worked out every time; at most ``size`` paths, the
    memory starting over when full, so unknown paths cannot grow it.
    """

    size = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.matches: dict[tuple[str, str, bool], tuple[Any, dict[str, Any]]] = {}
        super().__init__(*args, **kwargs)

    def add(self, rulefactory: Any) -> None:
        self.matches.clear()  # a new rule may match a remembered path first
        super().add(rulefactory)

    # Map.bind builds a MapAdapter by name (and bind_to_environ calls Map.bind by name): both swapped.
    def bind(self, *args: Any, **kwargs: Any) -> MapAdapter:
        adapter = super().bind(*args, **kwargs)
        adapter.__class__ = _RememberingAdapter
        return adapter

    def bind_to_environ(self, *args: Any, **kwargs: Any) -> MapAdapter:
        adapter = super().bind_to_environ(*args, **kwargs)
        adapter.__class__ = _RememberingAdapter
        return adapter


class _RememberingAdapter(MapAdapter):
    map: RememberingMap

    def match(self, path_info: str | None = None, method: str | None = None, return_rule: bool = False,
              query_args: Any = None, websocket: bool | None = None) -> tuple[Any, dict[str, Any]]:
        if path_info is not None or method is not None or websocket is not None or self.map.host_matching:
            return super().match(path_info, method, return_rule, query_args, websocket)
        key = (self.path_info, self.default_method, return_rule)
        found = self.map.matches.get(key)
        if found is None:
            found = super().match(return_rule=return_rule, query_args=query_args)
            if len(self.map.matches) >= self.map.size:
                self.map.matches.clear()
            self.map.matches[key] = found
        endpoint, arguments = found
        return endpoint, dict(arguments)  # a copy: Flask's url_value_preprocessors may change it
