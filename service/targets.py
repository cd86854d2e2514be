"""URL pieces shared by the V1 and V2 blueprints: the model name, a version number, an alias."""

from __future__ import annotations

from core.registry import is_decimal
from service.errors import ApiError
from service.state import get_state


def check_model_name(name: str) -> str:
    """404 unless ``name`` is the model this deployment serves."""
    served = get_state().settings.model_name
    if name != served:
        raise ApiError(404, f"unknown model {name!r}: this server serves {served!r}")
    return name


def parse_version(text: str) -> int:
    """A version from the URL: a positive integer, else 404 (no such version can exist)."""
    if not is_decimal(text) or int(text) < 1:
        raise ApiError(404, f"model has no version {text!r}: versions are positive integers")
    return int(text)
