"""Request decoding for every RPC, in one place: bytes that are not a request are INVALID_ARGUMENT.

The generated ``add_MorphNasServicer_to_server`` hands gRPC each request type's ``FromString``;
when it raises, gRPC answers INTERNAL "Exception deserializing request!", the code that means a
bug, for what is the caller's mistake. :func:`add_service` registers a service's methods
instead with a decoder that never raises: bytes that do not parse as the method's request type
(random bytes, a truncated or bit-flipped message, a length prefix past the end, invalid UTF-8 in
a string field, nesting past protobuf's recursion limit) decode to a :class:`Malformed` value.
The handler wrapper answers it with INVALID_ARGUMENT before the servicer sees anything; in a
client stream the stream ends with INVALID_ARGUMENT at the message that is malformed (raised as
:class:`InvalidArgumentError` from the request iterator, so the servicer's error table maps it).

After decoding, the wrapper runs :func:`morphnas.server.validation.check_request`: the few
range checks no use case makes (see that module). A message larger than the server's message
limit never reaches the decoder: gRPC answers RESOURCE_EXHAUSTED itself.

The handlers keep gRPC's non-blocking stream protocol (``experimental_non_blocking``) where the
servicer asks for it, so an open ``WatchSearch`` or health ``Watch`` still holds no thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from morphnas.core.errors import InvalidArgumentError
from morphnas.server.validation import check_request

log = logging.getLogger(__name__)

#: How much of protobuf's own explanation a status message quotes.
_REASON_CHARS = 200


@dataclass(frozen=True)
class Malformed:
    """What a decoder returns for bytes that are not a valid request: why, in a short message."""

    message: str


def decoder(request_type: type[Message]) -> Callable[[bytes], Message | Malformed]:
    """``request_type.FromString`` that returns :class:`Malformed` instead of raising."""
    name = request_type.DESCRIPTOR.full_name

    def decode(data: bytes) -> Message | Malformed:
        try:
            return request_type.FromString(data)
        except (DecodeError, RecursionError, ValueError, TypeError) as error:
            reason = str(error)[:_REASON_CHARS] or type(error).__name__
            return Malformed(f"the request is not a valid {name} ({len(data):,} bytes): {reason}")

    return decode


def add_service(servicer: Any, service: ServiceDescriptor, server: grpc.Server) -> None:
    """Serve every method of ``service`` from the servicer's method of the same name."""
    handlers = {
        method.name: method_handler(getattr(servicer, method.name), method)
        for method in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)


def method_handler(behavior: Callable[..., Any], method: MethodDescriptor) -> grpc.RpcMethodHandler:
    """The gRPC handler of one method: safe decoding, the edge checks, then ``behavior``."""
    request_type = GetMessageClass(method.input_type)
    response_type = GetMessageClass(method.output_type)
    decode, encode = decoder(request_type), response_type.SerializeToString
    if method.client_streaming:
        make = (
            grpc.stream_stream_rpc_method_handler
            if method.server_streaming
            else grpc.stream_unary_rpc_method_handler
        )
        return make(  # type: ignore[no-any-return, operator]
            _stream_request(behavior), request_deserializer=decode, response_serializer=encode
        )
    make = (
        grpc.unary_stream_rpc_method_handler
        if method.server_streaming
        else grpc.unary_unary_rpc_method_handler
    )
    return make(  # type: ignore[no-any-return, operator]
        _unary_request(behavior, method.name),
        request_deserializer=decode,
        response_serializer=encode,
    )


def _unary_request(behavior: Callable[..., Any], name: str) -> Callable[..., Any]:
    def handle(request: Message | Malformed, context: grpc.ServicerContext, *rest: Any) -> Any:
        problem = request.message if isinstance(request, Malformed) else _problem(request)
        if problem is not None:
            log.info("%s -> INVALID_ARGUMENT: %s", name, problem)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        return behavior(request, context, *rest)

    # A non-blocking stream is called with a send callback instead of on a handler thread.
    for attribute in ("experimental_non_blocking", "experimental_thread_pool"):
        if hasattr(behavior, attribute):
            setattr(handle, attribute, getattr(behavior, attribute))
    return handle


def _stream_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    def handle(requests: Iterator[Message | Malformed], context: grpc.ServicerContext) -> Any:
        return behavior(checked_stream(requests), context)

    return handle


def checked_stream(requests: Iterator[Message | Malformed]) -> Iterator[Message]:
    """The messages of a client stream; a malformed one raises InvalidArgumentError."""
    for index, request in enumerate(requests):
        problem = request.message if isinstance(request, Malformed) else _problem(request)
        if problem is not None:
            raise InvalidArgumentError(f"message {index} of the stream: {problem}")
        yield request  # type: ignore[misc]


def _problem(request: Message) -> str | None:
    try:
        check_request(request)
    except InvalidArgumentError as error:
        return str(error)
    return None
