"""The version is written once, in pyproject.toml, and read from there by the code."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest

import core.version
from core.version import VERSION, package_version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_version_is_pyprojects() -> None:
    with open(PYPROJECT, "rb") as fh:
        assert tomllib.load(fh)["project"]["version"] == VERSION


def test_not_installed_reads_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(core.version, "version", not_installed)
    assert package_version() == VERSION
