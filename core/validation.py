"""One way to say what a pydantic ``ValidationError`` found: ``field.path: message``, joined by "; ".

The HTTP service (422 bodies), the job parameters and the trainer CLI all report invalid input
through ``describe_validation``, so a wrong field reads the same wherever it was sent. Pydantic
only: no Flask here, callers wrap the text in their own error (a ``ServiceError``, an exit code).
"""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation(exc: ValidationError, *, prefix: str = "", whole: str = "request body",
                        limit: int | None = None) -> str:
    """``'config.hidden.0: Input should be ...; promote: ...'`` for the first ``limit`` problems.

    ``prefix`` goes before every field path (the name of the object that was validated, when it
    sits inside a larger body); ``whole`` names a problem of the object itself (a model-level
    check, whose location is empty).
    """
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        parts.append(f"{where or whole}: {error['msg']}")
    return "; ".join(parts)
