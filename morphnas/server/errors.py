"""The one table from domain errors to gRPC status codes, and the handler decorator using it.

UNKNOWN and INTERNAL mean a bug in morphnas: any exception not in the table is logged with its
traceback and reported as INTERNAL without leaking details to the caller. A call the caller
cancelled, or whose deadline passed, that ends in a domain error or in the RpcError of its
request stream is no bug: it is logged at debug level. Status messages are at most
MAX_MESSAGE_CHARS long.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from morphnas.core import errors

log = logging.getLogger(__name__)

#: Most specific classes first: the first match wins.
STATUS_BY_ERROR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
)


def status_for(error: BaseException) -> grpc.StatusCode | None:
    for cls, code in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return code
    return None


F = TypeVar("F", bound=Callable[..., Any])


#: The longest status message sent: messages quote a short prefix of a caller's values
#: (:func:`morphnas.core.errors.shown`); this bounds any that does not, well under gRPC's limit
#: on status metadata (a longer one reaches the caller as RESOURCE_EXHAUSTED instead).
MAX_MESSAGE_CHARS = 1000


def _abort(context: grpc.ServicerContext, error: Exception, method: str) -> None:
    code = status_for(error)
    if not context.is_active() and (code is not None or isinstance(error, grpc.RpcError)):
        # The caller cancelled or its deadline passed (a client stream then raises RpcError):
        # nobody is left to answer, and it is no fault of the server's.
        log.debug("%s ended by the caller (cancelled or deadline passed): %r", method, error)
        context.abort(grpc.StatusCode.CANCELLED, "the caller cancelled or its deadline passed")
    if code is None:
        log.exception("bug in %s", method)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see server log")
    message = str(error)
    if len(message) > MAX_MESSAGE_CHARS:
        message = f"{message[: MAX_MESSAGE_CHARS - 30]}... ({len(message):,} characters)"
    log.info("%s -> %s: %s", method, code.name, message)  # type: ignore[union-attr]
    context.abort(code, message)  # type: ignore[arg-type]


def handles_errors(method: F) -> F:
    """Turn domain errors raised by a unary or server-streaming handler into status codes."""

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext, *rest: Any) -> Any:
        try:
            return method(self, request, context, *rest)
        except Exception as error:  # noqa: BLE001 - mapped through the table above
            _abort(context, error, method.__name__)

    return unary  # type: ignore[return-value]


def handles_stream_errors(method: F) -> F:
    """The same for handlers that yield (server streaming)."""

    @functools.wraps(method)
    def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            yield from method(self, request, context)
        except Exception as error:  # noqa: BLE001
            _abort(context, error, method.__name__)

    return streaming  # type: ignore[return-value]
