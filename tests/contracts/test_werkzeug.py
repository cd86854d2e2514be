"""werkzeug: the URL map service/routing.py swaps in, Rule._converters, and the multipart parser's callback.

``RememberingMap`` subclasses ``Map`` (``add``, ``bind``, ``bind_to_environ``) and turns the
adapters they build into ``_RememberingAdapter``, a ``MapAdapter`` whose ``match`` copies
werkzeug's signature and reads the adapter's ``path_info``, ``default_method`` and ``map``;
service/openapi.py reads ``Rule._converters``; service/jobs/uploads.py hands ``parse_form_data`` a
``stream_factory`` and reads the file parts' ``stream`` back. The behaviour that matters most:
for every route of the real app and a few hundred other paths, the remembering map answers
exactly as a plain ``Map`` of the same rules (the match, or the 404, 405 or redirect).
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import IO, Any

import pytest
from flask import Flask
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.formparser import parse_form_data
from werkzeug.routing import Map, MapAdapter, RequestRedirect
from werkzeug.test import EnvironBuilder

from core.settings import Settings
from service.app import create_app
from service.routing import RememberingMap
from tests.contracts.contract import Contract
from tests.support import REPO_ROOT

WERKZEUG = Contract("werkzeug")
REGISTRY = REPO_ROOT / "tests" / "fixtures" / "mlp_registry"  # one small model, "digits"
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
# A value each converter accepts, and values some of them refuse.
SAMPLES = {"model": ["digits", "mnist"], "version": ["1", "abc"], "alias": ["production", "12"],
           "job_id": ["0123456789abcdef0123456789abcdef", "score"], "path": ["console.css", "a/b.js"],
           "default": ["x"], "string": ["x"]}
_ARGUMENT = re.compile(r"<(?:([^<>:]+):)?([^<>]+)>")  # service/openapi.py reads the rules the same way


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    root = tmp_path_factory.mktemp("werkzeug-contract")
    # No request is served: Redis is never asked, so the URL need not answer.
    settings = Settings(models_dir=REGISTRY, model_name="digits", redis_url="redis://127.0.0.1:9/0",
                        jobs_dir=root / "jobs", data_dir=root / "data")
    with WERKZEUG.behaviour("create_app() (Flask with RememberingMap as url_map_class)"):
        return create_app(settings)


def test_the_names_the_project_uses_from_werkzeug() -> None:
    WERKZEUG.names_used("werkzeug")


def test_map_and_adapter_methods_the_remembering_map_overrides() -> None:
    WERKZEUG.signature(MapAdapter, "match", "(self, path_info=…, method=…, return_rule=…, query_args=…, websocket=…)")
    WERKZEUG.signature(Map, "add", "(self, rulefactory)")
    WERKZEUG.accepts(Map, "__init__", ["rules", "converters", "strict_slashes", "merge_slashes", "host_matching"])
    adapter = Map().bind("localhost", path_info="/p", default_method="POST")
    for name, value in [("path_info", "/p"), ("default_method", "POST")]:
        WERKZEUG.check(getattr(adapter, name, None) == value, f"MapAdapter.{name} is not the bound {name}")
    WERKZEUG.check(isinstance(WERKZEUG.attribute(adapter, "map", "MapAdapter().map"), Map), "MapAdapter.map")
    WERKZEUG.check(WERKZEUG.attribute(adapter.map, "host_matching", "Map().host_matching") is False,
                   "Map().host_matching is not False by default")


def test_every_rule_s_converters_are_where_openapi_reads_them(app: Flask) -> None:
    converters = app.url_map.converters
    for rule in app.url_map.iter_rules():
        found = WERKZEUG.attribute(rule, "_converters", "Rule()._converters")
        for converter_name, argument in _ARGUMENT.findall(rule.rule):
            converter = found.get(argument)
            expected = converters[converter_name or "default"]
            WERKZEUG.check(isinstance(converter, expected),
                           f"{rule.rule}: Rule._converters[{argument!r}] is {converter!r}, not a {expected.__name__}")
        WERKZEUG.check(set(found) == set(rule.arguments),
                       f"{rule.rule}: Rule._converters has {sorted(found)}, the rule's arguments are "
                       f"{sorted(rule.arguments)}")


def _paths(app: Flask) -> list[str]:
    """Each rule with each sample value, and a few hundred paths put together from the URL's pieces."""
    paths: set[str] = set()
    for rule in app.url_map.iter_rules():
        variants = [rule.rule]
        for converter_name, argument in _ARGUMENT.findall(rule.rule):
            token = f"<{converter_name}:{argument}>" if converter_name else f"<{argument}>"
            variants = [v.replace(token, value) for v in variants for value in SAMPLES[converter_name or "default"]]
        for path in variants:
            paths.update({path, path + "/", path.replace("/", "//", 1), path.rstrip("/") + "/x"})
    pieces = ["v1", "v2", "models", "digits", "mnist", "versions", "1", "0", "abc", "labels", "production",
              "aliases", "jobs", "score", "train", "result", "health", "live", "ready", "static", "console",
              "console.css", "metrics", "", "a:b", "%20", "\u00e9"]
    suffixes = ["", "", ":predict", ":explain", ":predict_image", ":cancel", "/infer", "/ready", "/"]
    rng = random.Random(20240601)
    for _ in range(300):
        segments = [rng.choice(pieces) for _ in range(rng.randint(1, 6))]
        paths.add("/" + "/".join(segments) + rng.choice(suffixes))
    return sorted(paths)


def _outcome(adapter: MapAdapter) -> tuple[Any, ...]:
    try:
        rule, arguments = adapter.match(return_rule=True)
        return ("match", rule.rule, rule.endpoint, dict(arguments))
    except RequestRedirect as exc:
        return ("redirect", exc.new_url)
    except MethodNotAllowed as exc:
        return ("405", sorted(exc.valid_methods or []))
    except NotFound:
        return ("404",)
    except HTTPException as exc:
        return (exc.code, type(exc).__name__)


def test_the_remembering_map_answers_as_a_plain_map(app: Flask) -> None:
    remembering = app.url_map
    WERKZEUG.check(isinstance(remembering, RememberingMap), "Flask did not build its url_map from url_map_class")
    with WERKZEUG.behaviour("a plain Map of the app's rules (Rule.empty())"):
        plain = Map([rule.empty() for rule in remembering.iter_rules()], converters=dict(remembering.converters),
                    strict_slashes=remembering.strict_slashes, merge_slashes=remembering.merge_slashes,
                    host_matching=remembering.host_matching)
    paths = _paths(app)
    outcomes: dict[str, int] = {}
    for path in paths:
        for method in METHODS:
            environ = EnvironBuilder(path=path, method=method, base_url="http://localhost/").get_environ()
            expected = _outcome(plain.bind_to_environ(environ))
            # twice: the first match is worked out (and remembered when it is one), the second may be remembered
            for attempt in ("first", "second"):
                with WERKZEUG.behaviour(f"RememberingMap matching {method} {path} ({attempt} time)"):
                    adapter = remembering.bind_to_environ(environ)
                    got = _outcome(adapter)
                WERKZEUG.check(got == expected, f"{method} {path} ({attempt} time): the remembering map answered "
                               f"{got}, a plain Map {expected}")
            outcomes[str(expected[0])] = outcomes.get(str(expected[0]), 0) + 1
    # The paths reach every kind of answer, or the comparison would prove less than it says.
    for kind in ("match", "404", "405", "redirect"):
        assert outcomes.get(kind, 0) >= 10, f"only {outcomes.get(kind, 0)} {kind} outcomes among {outcomes}"
    assert remembering.matches, "nothing was remembered: the remembering path was never taken"


def test_the_multipart_parser_calls_the_stream_factory_as_uploads_expects(tmp_path: Path) -> None:
    """service/jobs/uploads.py's factory takes (total_content_length, content_type, filename,
    content_length=None) and returns its own file object, which the parsed FileStorage keeps as
    ``stream`` (the upload's path is read from it)."""
    calls: list[tuple[Any, ...]] = []
    target = tmp_path / "part"

    def stream_factory(total_content_length: int | None, content_type: str | None, filename: str | None,
                       content_length: int | None = None) -> IO[bytes]:
        calls.append((total_content_length, content_type, filename, content_length))
        return open(target, "w+b")  # the parser writes the part into it and keeps it open

    environ = EnvironBuilder(method="POST", data={"file": (io.BytesIO(b"1,2,3\n"), "rows.csv", "text/csv"),
                                                  "note": "hello"}).get_environ()
    with WERKZEUG.behaviour("parse_form_data(environ, stream_factory=, max_content_length=, "
                            "max_form_memory_size=, max_form_parts=)"):
        _, form, files = parse_form_data(environ, stream_factory=stream_factory, max_content_length=1 << 20,
                                         max_form_memory_size=1 << 20, max_form_parts=10)
    WERKZEUG.check(len(calls) == 1 and calls[0][2] == "rows.csv", f"the stream factory was called with {calls}")
    storage = files.get("file")
    WERKZEUG.check(storage is not None and Path(storage.stream.name) == target and storage.filename == "rows.csv",
                   "the parsed file part does not keep the stream the factory returned")
    WERKZEUG.check(form.get("note") == "hello", "a text field was lost")
    storage.stream.close()
    WERKZEUG.check(target.read_bytes() == b"1,2,3\n", "the file part's bytes were not written to the factory's stream")
