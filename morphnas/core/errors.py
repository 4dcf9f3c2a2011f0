"""Domain errors of morphnas.

Every failure a user can cause has a class here. The server maps each class to one gRPC status
code in exactly one table (``morphnas/server/errors.py``) and the client maps the codes back, so a
caller catches the same exception whether it runs in-process or over the wire.
"""

from __future__ import annotations


class MorphnasError(Exception):
    """Base of every error morphnas raises on purpose."""


class InvalidArgumentError(MorphnasError, ValueError):
    """The request is malformed: fix the named field and try again."""


class InvalidGraphError(InvalidArgumentError):
    """An architecture graph is not valid. ``layer`` names the offending layer when there is one."""

    def __init__(self, message: str, layer: str | None = None) -> None:
        self.layer = layer
        super().__init__(f"layer {layer!r}: {message}" if layer else message)


class CycleError(InvalidGraphError):
    """The graph has a cycle."""


class DanglingLayerError(InvalidGraphError):
    """A layer reads an unknown input, or its output reaches nothing."""


class UnknownLayerKindError(InvalidGraphError):
    """A layer names a kind that is not in the layer registry."""


class ShapeMismatchError(InvalidGraphError):
    """A layer receives a tensor of the wrong rank or size (Add/Concat mismatch, Dense on a map...)."""


class SizeLimitError(InvalidGraphError):
    """A size is absurd: too many units, a kernel larger than its input, a collapsed map..."""


class InvalidMorphError(InvalidArgumentError):
    """A morph operation cannot be applied to this graph."""


class WeightsError(InvalidArgumentError):
    """Weights do not match the architecture (missing, extra, wrong shape or dtype, not finite)."""


class NotFoundError(MorphnasError, LookupError):
    """The named search, trial or dataset does not exist."""


class AlreadyExistsError(MorphnasError):
    """Something with that identity exists already."""


class FailedPreconditionError(MorphnasError):
    """The object is not in a state that allows this call (e.g. reporting a finished trial)."""


class ResourceExhaustedError(MorphnasError):
    """A size or count limit was reached (upload too large, too many trials...)."""


class UnauthenticatedError(MorphnasError):
    """No valid credentials were given."""


class PermissionDeniedError(MorphnasError):
    """The credentials do not allow this call."""


class UnavailableError(MorphnasError):
    """A dependency (the database) is unreachable for now; retrying later may work."""


#: How many characters of a caller's value an error message quotes.
SHOWN_CHARS = 64


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr`` of a caller's value for an error message: at most ``limit`` characters of it.

    A message that quoted a whole 1 MB id would come back to the caller as RESOURCE_EXHAUSTED
    (gRPC's limit on status metadata) instead of the real error.
    """
    text = value if isinstance(value, str | bytes) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"
