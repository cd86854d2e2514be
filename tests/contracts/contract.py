"""``Contract``: checks whose failure names the library and its installed version.

Signatures are compared by parameter names, kinds and whether each has a default (not by
annotations, which libraries rewrite freely without changing a call): ``(self, job, queue,
started_job_registry=…, exc_string=…)``.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.support import REPO_ROOT

# The project's code: its packages and the gunicorn config file (what pyproject.toml's ranges are for).
PROJECT_SOURCES = [*(REPO_ROOT / package for package in ("core", "trainer", "service", "worker")),
                   REPO_ROOT / "deploy" / "gunicorn.conf.py"]


def _project_files() -> list[Path]:
    return [path for source in PROJECT_SOURCES for path in ([source] if source.is_file() else source.rglob("*.py"))]


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` -> ["a", "b", "c"]; None for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def names_used(top_module: str) -> tuple[dict[str, list[str]], dict[str, dict[str, list[str]]]]:
    """What the project takes from ``top_module``, as dotted paths with the files that use them:

    - the names it imports (``from rq.job import JobStatus``: ``rq.job.JobStatus``) and the attributes
      it reads on them and on imported modules (``JobStatus.CREATED``: ``rq.job.JobStatus.CREATED``);
    - for calls of those, the keywords passed (``Dependency(jobs=...)``: ``rq.job.Dependency`` -> jobs).

    Attributes and calls of instances (``job.meta``, ``queue.enqueue(...)``) are out of a static reach.
    """
    found: dict[str, set[str]] = {}
    keywords: dict[str, dict[str, set[str]]] = {}
    for path in _project_files():
        tree = ast.parse(path.read_text(), str(path))
        where = str(path.relative_to(REPO_ROOT))
        aliases: dict[str, str] = {}  # local name -> dotted path in the library
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] == top_module:
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == top_module:
                        local = alias.asname or alias.name.split(".")[0]
                        aliases[local] = alias.name if alias.asname else local
        for dotted in aliases.values():
            found.setdefault(dotted, set()).add(where)
        for node in ast.walk(tree):
            parts = _dotted(node) if isinstance(node, ast.Attribute) else None
            if parts and parts[0] in aliases:
                found.setdefault(".".join([aliases[parts[0]], *parts[1:]]), set()).add(where)
            if isinstance(node, ast.Call):
                parts = _dotted(node.func)
                if parts and parts[0] in aliases:
                    called = keywords.setdefault(".".join([aliases[parts[0]], *parts[1:]]), {})
                    for keyword in node.keywords:
                        if keyword.arg is not None:  # **mapping: its keys are not known here
                            called.setdefault(keyword.arg, set()).add(where)
    return ({name: sorted(files) for name, files in found.items()},
            {name: {kw: sorted(files) for kw, files in kws.items()} for name, kws in keywords.items()})


def resolve(dotted: str) -> object | None:
    """The object at ``dotted`` (``rq.job.JobStatus.CREATED``), importing submodules on the way; None
    when the path goes on past an instance (``flask.request.args``), whose attributes are not static."""
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        if not (inspect.ismodule(obj) or inspect.isclass(obj)):
            return None
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif inspect.ismodule(obj):
            obj = importlib.import_module(".".join(parts[:index + 1]))
        else:
            raise AttributeError(f"{'.'.join(parts[:index])} has no attribute {part!r}")
    return obj


def shape(function: Callable[..., Any]) -> str:
    """The parameter list of ``function`` as a call sees it: names, kinds, which have defaults."""
    parts: list[str] = []
    keyword_only_marked = False
    for parameter in inspect.signature(function).parameters.values():
        kind = parameter.kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            parts.append(f"*{parameter.name}")
            keyword_only_marked = True
            continue
        if kind is inspect.Parameter.VAR_KEYWORD:
            parts.append(f"**{parameter.name}")
            continue
        if kind is inspect.Parameter.KEYWORD_ONLY and not keyword_only_marked:
            parts.append("*")
            keyword_only_marked = True
        text = parameter.name + ("=…" if parameter.default is not inspect.Parameter.empty else "")
        if kind is inspect.Parameter.POSITIONAL_ONLY:
            text += " (positional only)"
        parts.append(text)
    return "(" + ", ".join(parts) + ")"


class Contract:
    """The checks of one library (a distribution name, as pip knows it)."""

    def __init__(self, distribution: str) -> None:
        self.distribution = distribution
        self.version = version(distribution)

    def fail(self, message: str) -> NoReturn:
        pytest.fail(f"{self.distribution} {self.version}: {message}", pytrace=False)

    def check(self, condition: object, message: str) -> None:
        if not condition:
            self.fail(message)

    def signature(self, owner: Any, name: str, expected: str) -> None:
        """``owner.name`` exists and takes exactly the parameters ``expected`` (``shape`` notation)."""
        function = getattr(owner, name, None)
        label = f"{getattr(owner, '__name__', owner)}.{name}"
        if function is None:
            self.fail(f"{label}{expected} is gone")
        actual = shape(function)
        if actual != expected:
            self.fail(f"{label}{expected} changed to {label}{actual}")

    def accepts(self, owner: Any, name: str, parameters: Iterable[str]) -> None:
        """``owner.name`` accepts each of ``parameters`` by keyword (others may come and go)."""
        function = getattr(owner, name, None)
        label = f"{getattr(owner, '__name__', owner)}.{name}"
        if function is None:
            self.fail(f"{label} is gone")
        signature = inspect.signature(function)
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
        missing = [p for p in parameters if p not in signature.parameters and not takes_any]
        if missing:
            self.fail(f"{label} no longer takes {', '.join(missing)}: it is now {label}{shape(function)}")

    def names_used(self, top_module: str) -> None:
        """Every name the project imports from ``top_module``, or reads on what it imports, is still there,
        and every call of those takes the keywords the project passes (``names_used``)."""
        names, keywords = names_used(top_module)
        self.check(names, f"the project uses nothing from {top_module} any more: drop this check")
        problems = []
        for dotted, files in sorted(names.items()):
            try:
                resolve(dotted)
            except (ImportError, AttributeError) as exc:
                problems.append(f"{dotted} is gone ({', '.join(files)}: {exc})")
        for dotted, passed in sorted(keywords.items()):
            try:
                called = resolve(dotted)
                if called is None:
                    continue  # a method of an instance
                signature = inspect.signature(called)  # type: ignore[arg-type]
            except (ImportError, AttributeError, TypeError, ValueError):
                continue  # gone (said above), or a builtin without a signature
            parameters = signature.parameters.values()
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
                continue
            accepted = {p.name for p in parameters if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
            for keyword, files in sorted(passed.items()):
                if keyword not in accepted:
                    problems.append(f"{dotted}() no longer takes {keyword}= ({', '.join(files)})")
        self.check(not problems, "what the project uses is gone: " + "; ".join(problems))

    def attribute(self, owner: Any, name: str, what: str = "") -> Any:
        """``owner.name``, failing with the library's version when it is not there."""
        try:
            return getattr(owner, name)
        except AttributeError:
            label = what or f"{type(owner).__name__ if not inspect.isclass(owner) else owner.__name__}.{name}"
            self.fail(f"{label} is gone")

    @contextlib.contextmanager
    def behaviour(self, what: str) -> Iterator[None]:
        """Any exception in the block (an attribute gone, a call refused) fails as ``what`` broke."""
        try:
            yield
        except pytest.fail.Exception:
            raise
        except Exception as exc:
            self.fail(f"{what}: {type(exc).__name__}: {exc}")
