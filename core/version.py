"""The package's version, written once: in pyproject.toml, read here from the installed metadata.

Where the package is not installed (a checkout run without ``pip install -e .``), the version comes
from the pyproject.toml beside the code; failing both, a PEP 440 local version that says it is
unknown rather than a made-up number.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DISTRIBUTION = "mnist-serve"
UNKNOWN = "0+unknown"


def package_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        pass
    try:
        with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as fh:
            project = tomllib.load(fh)["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return UNKNOWN
    return str(project.get("version", UNKNOWN)) if project.get("name") == DISTRIBUTION else UNKNOWN


VERSION = package_version()
