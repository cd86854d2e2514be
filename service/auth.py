"""Bearer-token checks: ``Authorization: Bearer <API_KEY>``.

Endpoints that change what is served (promotion, retraining) always need the key, and are
refused (403) when the deployment configured none, rather than silently opening up. Other
endpoints need it only when ``REQUIRE_KEY_FOR_ALL`` is on.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from flask import Blueprint, request

from core.settings import Settings
from service.service_error import ServiceError
from service.state import get_state

F = TypeVar("F", bound=Callable[..., object])


def check_api_key(always: bool) -> None:
    """Raise 401/403 unless the request carries the configured key (or no key is needed)."""
    settings = get_state().settings
    if not always and not settings.require_key_for_all:
        return
    check_authorization(settings, request.headers.get("Authorization", ""))


def check_authorization(settings: Settings, header: str) -> None:
    """Raise 401/403 unless ``header`` (an ``Authorization`` value: HTTP's header, gRPC's metadata)
    is ``Bearer <API_KEY>``, or 403 when the deployment has no key."""
    if not settings.api_key:
        raise ServiceError(403, "this endpoint is disabled: the server has no API_KEY configured")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ServiceError(401, "missing 'Authorization: Bearer <API_KEY>' header")
    if not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
        raise ServiceError(403, "invalid API key")


def require_api_key(always: bool = True) -> Callable[[F], F]:
    """Decorator form of ``check_api_key``."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: object, **kwargs: object) -> object:
            check_api_key(always)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def guard_blueprint(blueprint: Blueprint, open_endpoints: frozenset[str] = frozenset()) -> None:
    """With ``REQUIRE_KEY_FOR_ALL`` on, every view of ``blueprint`` but ``open_endpoints`` needs the key.

    A hook on the blueprint rather than a decorator per view, so a route added later cannot
    forget it. Health probes stay open: orchestrators call them without credentials.
    """

    @blueprint.before_request
    def _require_key() -> None:
        if request.endpoint not in open_endpoints:
            check_api_key(always=False)
