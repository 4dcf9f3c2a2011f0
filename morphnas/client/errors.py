"""gRPC status codes back to the morphnas exceptions the server raised (the inverse table)."""

from __future__ import annotations

import grpc

from morphnas.core import errors

ERROR_BY_STATUS: dict[grpc.StatusCode, type[errors.MorphnasError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: errors.NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: errors.UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: errors.UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.UnavailableError,
}


class ServerError(errors.MorphnasError):
    """The server failed in a way that is not the caller's fault (INTERNAL, UNKNOWN...)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        super().__init__(f"{code.name}: {message}")


def from_rpc_error(error: grpc.RpcError) -> errors.MorphnasError:
    code = error.code()  # type: ignore[attr-defined]
    message = error.details() or ""  # type: ignore[attr-defined]
    cls = ERROR_BY_STATUS.get(code)
    if cls is None:
        return ServerError(code, message)
    result = cls(message)
    result.code = code  # type: ignore[attr-defined]
    return result
