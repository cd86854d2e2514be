"""What can go wrong in the registry, with the HTTP status an API answers, and the name rules.

Kept apart from ``core.registry`` so the API can map errors and validate names from one place;
``core.registry`` re-exports everything here.
"""

from __future__ import annotations

import re

# ASCII only: str.isalnum/isdigit accept other scripts' letters and digits ("²", "٣"), which
# int() and file systems then treat differently. \Z, not $: "$" also matches before a final newline.
_ALIAS = re.compile(r"(?!\d+\Z)[A-Za-z0-9_-]{1,64}\Z")


class RegistryError(Exception):
    """Base for registry problems; ``status`` is the HTTP status an API should answer with."""

    status = 500


class ModelNotFound(RegistryError):
    status = 404


class VersionNotFound(RegistryError):
    status = 404


class ModelUnloaded(RegistryError):
    """The model was unloaded (``core.unloading``) and serves nothing until it is loaded again: a
    404, as TF Serving and Triton answer for a model they do not hold."""

    status = 404


class NoModelPublished(RegistryError):
    """The name exists (or not) but holds no version yet: a service is not ready, not broken."""

    status = 503


class DigestMismatch(RegistryError):
    status = 500


class InvalidName(RegistryError):
    """A malformed alias (or other name) given by a caller: bad input, not a broken registry."""

    status = 422


class AliasChanged(RegistryError):
    """A compare-and-set alias update found the alias no longer pointing where the caller expected."""

    status = 409


class PromotionRefused(RegistryError):
    """The version exists but cannot be served (bad digest, unusable weights or architecture)."""

    status = 409


class Unchecked:
    """Type of ``UNCHECKED``: ``set_alias`` without a compare-and-set condition."""


UNCHECKED = Unchecked()


def is_decimal(text: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is True, yet ``int("²")`` raises."""
    return text.isascii() and text.isdigit()


def check_alias(alias: str) -> str:
    """The one alias rule for the API, the CLI and the registry: 1-64 ASCII letters, digits, '-', '_'."""
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidName(f"invalid alias {alias!r}: use 1-64 ASCII letters, digits, '-' or '_', not only digits")
    return alias


class CorruptVersion(DigestMismatch):
    """A version whose files pass (or lack) the digest check yet cannot be used: unreadable JSON,
    a weights archive with pickled objects or wrong shapes. A subclass of ``DigestMismatch`` so
    callers that keep the previous model serving on a bad digest do the same here."""


