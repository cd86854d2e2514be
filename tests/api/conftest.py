"""Fixtures for the API tests: real digits, the base registry's models loaded locally, encoders, and
the in-process tier of the API.

Two tiers serve the app to the tests. Tests that only send a request and check the response use
``client``/``make_client``: ``create_app(Settings(...)).test_client()`` in this process, over a copy
of the base registry and the session's real redis-server (Flask's own testing pattern; the same
app, routes, hooks and error handlers, without a socket). Tests that need processes - several
gunicorn workers, what gunicorn itself adds, a real HTTP client library, kills, hot swap, memory,
fuzzing - use the real gunicorn of ``api``/``start_api`` in tests/conftest.py.
"""

from __future__ import annotations

import base64
import io
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from core.datasets import Dataset
from core.model import Model
from core.registry import ModelRegistry
from core.settings import Settings
from service.app import create_app
from tests.conftest import API_KEY
from tests.support import RedisServer


@pytest.fixture(scope="session")
def local_models(base_registry: Path) -> dict[int, Model]:
    """Versions 1 and 2 of the base registry, loaded in the test process to compute expectations."""
    registry = ModelRegistry(base_registry)
    return {v: registry.load("mnist", version=v) for v in registry.versions("mnist")}


@pytest.fixture(scope="session")
def digits(mnist: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The first 200 test digits (pixels as int 0..255, labels)."""
    return mnist.X[:200].astype(np.int64), mnist.y[:200].astype(np.int64)


def _settings(models_dir: Path, root: Path, redis_url: str, **settings: object) -> Settings:
    # The same values start_api and api give gunicorn through its environment.
    base: dict[str, object] = {"models_dir": models_dir, "redis_url": redis_url, "api_key": API_KEY,
                               "jobs_dir": root / "jobs", "data_dir": root / "data", "reload_interval": 0.2}
    return Settings(**{**base, **settings})


# In-process apps talk to no Redis unless a test asks for one (``redis_client``): a closed port, so
# that what needs Redis fails at once and visibly (503) rather than reaching some other server.
NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, base_registry: Path) -> Flask:
    """One in-process app per test module over a copy of the base registry (read-only use), no Redis."""
    root = tmp_path_factory.mktemp("app")
    shutil.copytree(base_registry, root / "models")
    return create_app(_settings(root / "models", root, NO_REDIS))


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def make_client(tmp_path: Path) -> Callable[..., FlaskClient]:
    """Factory: ``make_client(models_dir, **settings)``, a test client of a fresh app with those settings
    (Settings field names, e.g. ``require_key_for_all=True``), the in-process twin of ``start_api``;
    no Redis unless ``redis_url`` is among the settings."""

    def make(models_dir: Path, **settings: object) -> FlaskClient:
        return create_app(_settings(models_dir, tmp_path, str(settings.pop("redis_url", NO_REDIS)),
                                    **settings)).test_client()

    return make


@pytest.fixture()
def redis_client(make_client: Callable[..., FlaskClient], models_dir: Path,
                 redis_server: RedisServer) -> FlaskClient:
    """An in-process client of an app with the session's real Redis (job endpoints, readiness)."""
    return make_client(models_dir, redis_url=redis_server.url)


def png_bytes(pixels: np.ndarray, invert: bool = False, scale: int = 1) -> bytes:
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8).reshape(28, 28))
    if invert:
        image = Image.fromarray(255 - np.asarray(image))
    if scale != 1:
        image = image.resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def files(parts: list[tuple[str, str, bytes, str | None]]) -> dict[str, list]:
    """Multipart form parts ``(field, filename, bytes, content type)`` in the shape the test client takes
    (requests' ``files=``); parts of one field keep their order."""
    form: dict[str, list] = {}
    for field, filename, data, content_type in parts:
        form.setdefault(field, []).append((io.BytesIO(data), filename, content_type))
    return form


class _AccessLines(logging.Handler):
    """Collects the JSON access-log lines (the logger does not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(record.getMessage()))


@pytest.fixture()
def access_lines() -> Iterator[list[dict]]:
    """The access-log lines this process writes during the test, parsed."""
    handler, logger = _AccessLines(), logging.getLogger("mnist_serve.access")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
