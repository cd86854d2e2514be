"""The one Flask-free refusal: ``ServiceError(status, message, headers)``.

Codecs and the dataplane raise it (as ``service.codecs.image_decode`` raises ``ImageError`` and
``core.registry`` raises ``RegistryError``, both carrying their HTTP status), so none of them
needs Flask; the app factory registers one handler (``service.errors``) that turns every such
error into ``{"error": message}`` with its status.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses: the HTTP status, what was wrong and where, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class LimitExceeded(ServiceError):
    """A request over a configured size limit (rows per request): REST answers its status (422), gRPC
    ``RESOURCE_EXHAUSTED``."""


def in_context(exc: Exception, where: str) -> ServiceError:
    """``exc`` (an ``ImageError``, ``RegistryError``...) prefixed with where it happened, same status.

    A busy decoder (503) also says when to retry, so clients back off instead of failing.
    """
    status = int(getattr(exc, "status", 422))
    headers = {"Retry-After": "1"} if status == 503 else {}
    return ServiceError(status, f"{where}: {exc}", headers)
