"""Shared fixtures: real MNIST digits, a small trained registry, a private Redis, real gunicorn.

MNIST comes from ``$MNIST_DIR`` (default: the t10k files the repository ships in ``data/``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.datasets import Dataset, load_dataset
from core.registry import ModelRegistry
from core.training_config import TrainConfig
from tests.support import MNIST_DIR, GunicornServer, RedisServer
from trainer.pipeline import train_and_publish

API_KEY = "test-key"

# Fixtures that start a server process: redis-server, gunicorn, RQ workers, nginx, Chromium, the
# launcher. A test that uses one (directly or through another fixture), or lives in a folder of
# such tests, is marked ``servers``; ``make test-fast`` runs the others.
SERVER_FIXTURES = frozenset({"redis_server", "own_redis", "start_api", "api", "make_stack", "launcher", "group",
                             "fuzz_api", "browser", "start_proxy", "main_stack"})
SERVER_FOLDERS = ("browser", "deploy", "jobs")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.parent.name
        if folder in SERVER_FOLDERS or SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


# Docker tests skipped for want of an engine, with the reason: said again after pytest's own last
# line, because "3 skipped" alone reads like success.
_docker_not_run: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "docker" in report.keywords and isinstance(report.longrepr, tuple):
        _docker_not_run.append(report.longrepr[2].removeprefix("Skipped: "))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _docker_not_run:
        print(f"\nNOT RUN: {len(_docker_not_run)} docker-compose test(s) skipped: {_docker_not_run[0]}", flush=True)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = MNIST_DIR
    if not (path / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail(f"MNIST test split not found in {path} (set MNIST_DIR)")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> Dataset:
    """All 10,000 real digits of MNIST's test split."""
    return load_dataset(mnist_dir)


@pytest.fixture(scope="session")
def base_registry(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    """A registry with two small real models: v1 (production, ~95%) and v2 (weaker, ~90%).

    Trained once per session in a few seconds; tests copy it before changing anything.
    """
    root = tmp_path_factory.mktemp("registry")
    registry = ModelRegistry(root)
    strong = TrainConfig(hidden=[64], epochs=4, dropout=0.0, augment_shift=0, early_stopping=0, seed=1)
    weak = TrainConfig(hidden=[16], epochs=1, dropout=0.0, augment_shift=0, early_stopping=0, seed=2)
    train_and_publish(registry, "mnist", mnist_dir, strong)
    train_and_publish(registry, "mnist", mnist_dir, weak)
    return root


@pytest.fixture()
def models_dir(tmp_path: Path, base_registry: Path) -> Path:
    """A private copy of the base registry that a test may change."""
    target = tmp_path / "models"
    shutil.copytree(base_registry, target)
    return target


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def start_api(tmp_path: Path, redis_server: RedisServer) -> Iterator[Callable[..., GunicornServer]]:
    """Factory: ``start_api(models_dir, **env)`` runs the app under gunicorn; stopped at teardown."""
    servers: list[GunicornServer] = []

    def start(models_dir: Path, workers: int = 2, **env: str) -> GunicornServer:
        base = {"MODELS_DIR": str(models_dir), "REDIS_URL": redis_server.url, "API_KEY": API_KEY,
                "JOBS_DIR": str(tmp_path / "jobs"), "DATA_DIR": str(tmp_path / "data"),
                "RELOAD_INTERVAL": "0.2"}
        server = GunicornServer({**base, **env}, tmp_path / "logs", workers=workers)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory, base_registry: Path, redis_server: RedisServer
        ) -> Iterator[GunicornServer]:
    """One gunicorn server for the session over a copy of the base registry (read-only use).

    The real-process tier: tests that need HTTP clients, gunicorn's workers or its log. Tests that
    change the registry or the settings start their own with ``start_api``; tests that only check
    the app's answers use the in-process ``client`` of tests/api/conftest.py.
    """
    root = tmp_path_factory.mktemp("api")
    shutil.copytree(base_registry, root / "models")
    server = GunicornServer({"MODELS_DIR": str(root / "models"), "REDIS_URL": redis_server.url,
                             "API_KEY": API_KEY, "JOBS_DIR": str(root / "jobs"), "DATA_DIR": str(root / "data"),
                             "RELOAD_INTERVAL": "0.2"}, root / "logs")
    server.start()
    yield server
    server.stop()
