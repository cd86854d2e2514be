"""URL pieces shared by the V1 and V2 blueprints: the model name, a version number, an alias."""

from __future__ import annotations

import contextlib
from typing import Any

from core.registry import RegistryError, is_decimal
from core.serving import Predictor
from service.service_error import ServiceError
from service.state import get_state


def check_model_name(name: str) -> str:
    """404 unless this deployment serves ``name`` (the message names the models it serves)."""
    predictor_of(name)
    return name


def predictor_of(name: str) -> Predictor:
    """The served model's predictor; a ``ServiceError`` 404 naming the served models otherwise."""
    return get_state().dataplane.predictor(name)


def parse_version(text: str) -> int:
    """A version from the URL: a positive integer, else 404 (no such version can exist)."""
    if not is_decimal(text) or int(text) < 1:
        raise ServiceError(404, f"model has no version {text!r}: versions are positive integers")
    return int(text)


def described_manifest(name: str, version: int) -> dict[str, Any]:
    """The manifest a description (metadata, configuration) reads: the version's, or ``{}`` when it
    cannot be read, so the answer falls back to what every model has rather than failing."""
    with contextlib.suppress(RegistryError):
        return get_state().registry.manifest(name, version)
    return {}
