"""Identifiers on the wire, checked in one place.

Every id morphnas hands out (searches, trials, datasets, training runs) is 32 lower-case hex
characters (a uuid4's hex); weights are named by their SHA-256, 64 lower-case hex characters.
One code per kind of bad id: anything that cannot be such an id is INVALID_ARGUMENT (the caller
must fix the request), a well-formed id that names nothing is NOT_FOUND (raised by storage).
"""

from __future__ import annotations

import re

from morphnas.core.errors import InvalidArgumentError, shown

ID_LENGTH = 32
SHA256_LENGTH = 64
_ID = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_id(value: str, field: str) -> str:
    """``value`` if it is a well-formed id, else InvalidArgumentError naming ``field``."""
    if not value:
        raise InvalidArgumentError(f"{field} is required")
    if not _ID.fullmatch(value):
        raise InvalidArgumentError(
            f"{field} must be {ID_LENGTH} lower-case hex characters, got {shown(value)}"
        )
    return value


def check_sha256(value: str, field: str) -> str:
    """``value`` if it is a well-formed SHA-256 digest (hex), else InvalidArgumentError."""
    if not _SHA256.fullmatch(value):
        raise InvalidArgumentError(
            f"{field} must be {SHA256_LENGTH} lower-case hex characters, got {shown(value)}"
        )
    return value
