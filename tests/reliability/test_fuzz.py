"""Fuzzing: random, malformed requests to every RPC of the MorphNas service.

Requests are built from the proto descriptors, so an RPC added later is fuzzed too: random text
(or, half the time, a real id) for string fields, integers up to the type's extremes, NaN and
infinities for doubles, random bytes, out-of-range enum values, missing and repeated fields.
Whatever arrives, the server answers with a deliberate status (never INTERNAL or UNKNOWN, which
mean a bug), keeps serving, and a call it rejects leaves the database exactly as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morphnas.client import Client
from morphnas.server.app import RunningServer, ServerOptions, build_server
from morphnas.v1 import morphnas_pb2 as pb
from morphnas.v1 import morphnas_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["MorphNas"]
METHODS = sorted(SERVICE.methods, key=lambda m: m.name)
BUGS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
#: Examples per RPC: about 200 in all.
EXAMPLES = max(8, 200 // len(METHODS))
F = FieldDescriptor


class World:
    """A server on SQLite with one search and trials in several states, for requests to name."""

    def __init__(self, folder: Path) -> None:
        self.url = f"sqlite:///{folder / 'fuzz.db'}"
        self.server: RunningServer = build_server(
            ServerOptions(db_url=self.url, port=0, sweep_seconds=3600.0)
        )
        self.channel = grpc.insecure_channel(self.server.address)
        self.stub = pb_grpc.MorphNasStub(self.channel)
        self.engine = sa.create_engine(self.url)
        self.ids: list[str] = []
        self.populate()

    def populate(self) -> None:
        """(Re)create the search the requests name, e.g. after a fuzzed DeleteSearch hit it."""
        with Client(self.server.address, timeout=30) as client:
            if self.ids and any(s.id == self.ids[0] for s in client.list_searches()):
                return
            search = client.create_search("fuzz", input_shape=(8,), num_classes=3, policy="random")
            done, active = search.suggest(count=2, worker_id="w")
            done.report(score=0.5, weights=done.initial_weights())
            self.ids = [search.id, done.id, active.id]

    def dump(self) -> list[tuple[str, list[tuple]]]:
        """Every row of every table (blobs by hash), in a stable order."""
        meta = sa.MetaData()
        meta.reflect(self.engine)
        tables = []
        with self.engine.connect() as c:
            for table in sorted(meta.tables.values(), key=lambda t: t.name):
                rows = [tuple(_plain(v) for v in row) for row in c.execute(sa.select(table))]
                tables.append((table.name, sorted(rows, key=repr)))
        return tables

    def close(self) -> None:
        self.channel.close()
        self.engine.dispose()
        self.server.stop(0)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return hashlib.sha256(bytes(value)).hexdigest()
    return value


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("fuzz"))
    yield w
    w.close()


# ---------------------------------------------------------------------- request strategies
_INTS = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor, ids: list[str], depth: int) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_STRING:
        odd = st.sampled_from(["", "0" * 32, "x" * 5000, "../../etc/passwd", "'; DROP TABLE x"])
        text = st.text(max_size=80) | odd
        return st.sampled_from(ids) | text if field.name.endswith("id") else text
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=4096)
    if field.type in _INTS:
        low, high = _INTS[field.type]
        return st.integers(low, high) | st.sampled_from([0, 1, -1 if low < 0 else 2, low, high])
    if field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(width=64 if field.type == F.TYPE_DOUBLE else 32)  # NaN and ±inf too
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type == F.TYPE_ENUM:
        return st.integers(-3, 12)  # proto3 enums are open: unknown values reach the server
    if field.type == F.TYPE_MESSAGE and depth < 2 and not field.message_type.GetOptions().map_entry:
        return messages(field.message_type, ids, depth + 1)
    return st.nothing()


def _is_map(field: Any) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def messages(descriptor: Descriptor, ids: list[str], depth: int = 0) -> st.SearchStrategy[Any]:
    """Random instances of a message type: each field unset or random."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if _is_map(field):  # map<string, double>: names of any length, any float
            fields[field.name] = st.none() | st.dictionaries(
                st.text(max_size=120), st.floats(), max_size=40
            )
            continue
        value = _scalar(field, ids, depth)
        if field.is_repeated:
            value = st.lists(value, max_size=4)
        fields[field.name] = st.none() | value
    cls = GetMessageClass(descriptor)

    def build(values: dict[str, Any]) -> Any:
        message = cls()
        for name, value in values.items():
            if value is None:
                continue
            field = descriptor.fields_by_name[name]
            if _is_map(field):
                getattr(message, name).update(value)
            elif field.is_repeated:
                if field.type == F.TYPE_MESSAGE:
                    for item in value:
                        getattr(message, name).add().CopyFrom(item)
                else:
                    getattr(message, name).extend(value)
            elif field.type == F.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries(fields).map(build)


# ---------------------------------------------------------------------- the calls
def call(world: World, method: MethodDescriptor, request: Any) -> grpc.StatusCode:
    """Invoke ``method`` with ``request`` (a list of messages for client streams)."""
    rpc = getattr(world.stub, method.name)
    # A watch streams until its deadline; other calls get time to finish, so that one call's
    # work never overlaps the next one's.
    timeout = 2 if method.name.startswith("Watch") else 60
    try:
        if method.server_streaming:
            for _ in rpc(
                request if not method.client_streaming else iter(request), timeout=timeout
            ):
                pass
        else:
            rpc(iter(request) if method.client_streaming else request, timeout=timeout)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_random_requests_never_break_the_server(world: World, method: MethodDescriptor) -> None:
    world.populate()
    request = messages(method.input_type, world.ids)
    if method.client_streaming:
        request = st.lists(request, max_size=5)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request)
    def fuzz(request: Any) -> None:
        before = world.dump()
        code = call(world, method, request)
        assert code not in BUGS, f"{method.name} answered {code.name} to {request!r}"[:2000]
        if code not in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED):
            assert world.dump() == before, f"a rejected {method.name} changed the database"

    fuzz()
    world.stub.ListSearches(pb.ListSearchesRequest(), timeout=10)  # still serving
