"""Server reflection on both of its protocol versions: ``grpc.reflection.v1`` and ``v1alpha``.

grpcio-reflection (1.85) ships only ``v1alpha``, while current tools (grpcurl, Postman, recent
grpc-js and grpc-java reflection clients) ask ``grpc.reflection.v1`` first. The two protocols
are the same messages with the same field numbers under another package name (``v1`` was
published as a copy of ``v1alpha``), so one :class:`ReflectionServicer` answers both: ``v1``
is registered as a generic handler that reads and writes the ``v1alpha`` messages.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

#: The v1alpha service (grpcio-reflection's own) and the v1 one answered by the same servicer.
V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
#: Full method names of both, for metrics labels.
METHODS = tuple(f"/{name}/ServerReflectionInfo" for name in (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME))


def enable_reflection(service_names: Iterable[str], server: grpc.Server) -> None:
    """Serve reflection (both versions) for ``service_names`` and for reflection itself."""
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = reflection.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": handler}),)
    )
