"""Channel security for the client: a bearer token on every call, TLS and mutual TLS.

The token travels as ``authorization: Bearer <token>`` metadata, added by a channel interceptor
so it works on plain and TLS channels alike (gRPC's own call credentials insist on TLS; a token
over plain text is the user's choice, e.g. behind a TLS-terminating proxy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import grpc


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str | bytes]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Add ``authorization: Bearer <token>`` to every call on the channel."""

    def __init__(self, token: str) -> None:
        if not token or any(c in token for c in "\r\n"):
            raise ValueError("a bearer token must be a non-empty single line")
        self._header = ("authorization", f"Bearer {token}")

    def __repr__(self) -> str:  # never show the secret
        return "BearerToken(***)"

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def make_channel(
    address: str,
    options: Sequence[tuple[str, Any]] = (),
    *,
    token: str | None = None,
    tls_ca: str | Path | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    tls_server_name: str | None = None,
    tls: bool = False,
) -> grpc.Channel:
    """A channel to ``address``: plain, or TLS when ``tls`` or any TLS file is given.

    ``tls_ca`` trusts that CA (default: the system's roots); ``tls_cert`` + ``tls_key`` present
    a client certificate (mutual TLS); ``tls_server_name`` overrides the name checked in the
    server's certificate. ``token`` is sent as a bearer token on every call.
    """
    options = list(options)
    if tls or tls_cert or tls_key or tls_ca:
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("a client certificate needs its key (tls_cert and tls_key)")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(tls_ca),
            private_key=_read(tls_key),
            certificate_chain=_read(tls_cert),
        )
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    if token:
        channel = grpc.intercept_channel(channel, BearerToken(token))
    return channel


def _read(path: str | Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()
