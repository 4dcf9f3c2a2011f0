"""Bearer-token authentication and TLS credentials of the server.

Tokens come from a file (one a line; blank lines and ``#`` comments ignored) and/or the
``MORPHNAS_TOKENS`` environment variable (comma-separated). A call must carry the metadata
``authorization: Bearer <token>``; the token is compared with every configured one in constant
time (:func:`hmac.compare_digest`), so timing tells an attacker nothing about how much of a guess
was right. Health checks stay open, so load balancers and orchestrators need no secret.

Secrets are never logged: a refusal names the method and why (missing or wrong), not the token.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger(__name__)

TOKENS_ENV = "MORPHNAS_TOKENS"
AUTH_HEADER = "authorization"
BEARER = "bearer "
#: Methods anyone may call: health checks (liveness probes carry no secrets).
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


def load_tokens(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The accepted tokens: those in ``path`` (if given) plus those in ``$MORPHNAS_TOKENS``.

    An empty result means authentication is off.
    """
    env = os.environ if env is None else env
    tokens: list[str] = []
    if path is not None:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                tokens.append(line)
    tokens += [t.strip() for t in env.get(TOKENS_ENV, "").split(",") if t.strip()]
    return tuple(dict.fromkeys(tokens))


def token_matches(presented: str, tokens: Iterable[str]) -> bool:
    """Whether ``presented`` equals one of ``tokens``; every token is compared, in constant time."""
    given = presented.encode("utf-8")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given, token.encode("utf-8"))
    return found


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, or None."""
    for key, value in metadata or ():
        if key.lower() != AUTH_HEADER or not isinstance(value, str):
            continue
        if value.lower().startswith(BEARER):
            return value[len(BEARER) :].strip()
    return None


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Refuse every call without a valid bearer token with UNAUTHENTICATED (health stays open)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens:
            raise ValueError("TokenAuthInterceptor needs at least one token")
        self._tokens = tuple(tokens)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if method.startswith(OPEN_PREFIXES):
            return continuation(handler_call_details)
        token = bearer_token(handler_call_details.invocation_metadata)  # type: ignore[attr-defined]
        if token is not None and token_matches(token, self._tokens):
            return continuation(handler_call_details)
        why = "no bearer token" if token is None else "a wrong bearer token"
        log.warning("refused a call to %s: %s", method, why)
        handler = continuation(handler_call_details)
        return refusal(handler, f"{method} needs a valid bearer token (got {why})")


def refusal(handler: grpc.RpcMethodHandler | None, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that aborts with UNAUTHENTICATED."""

    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is None or not (handler.request_streaming or handler.response_streaming):
        return grpc.unary_unary_rpc_method_handler(abort)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    return grpc.unary_stream_rpc_method_handler(abort)


def server_credentials(
    cert: str | Path, key: str | Path, client_ca: str | Path | None = None
) -> grpc.ServerCredentials:
    """TLS credentials from PEM files; with ``client_ca``, clients must present a certificate
    signed by it (mutual TLS)."""
    pair = [(Path(key).read_bytes(), Path(cert).read_bytes())]
    if client_ca is None:
        return grpc.ssl_server_credentials(pair)
    return grpc.ssl_server_credentials(
        pair, root_certificates=Path(client_ca).read_bytes(), require_client_auth=True
    )
