"""The RPC table covers the service, and each of its minimal requests is answered OK."""

from __future__ import annotations

import grpc
import pytest

from tests.reliability.hostile.rpcs import RPCS, SERVICE, Rpc
from tests.reliability.hostile.world import World


def test_the_table_names_every_rpc_with_its_kind() -> None:
    def kind(method) -> str:  # type: ignore[no-untyped-def]
        return f"{'stream' if method.client_streaming else 'unary'}_" + (
            "stream" if method.server_streaming else "unary"
        )

    assert {(m.name, m.input_type.full_name, kind(m)) for m in SERVICE.methods} == {
        (r.name, r.request_type.DESCRIPTOR.full_name, r.kind) for r in RPCS
    }


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_the_minimal_request_is_valid(world: World, rpc: Rpc) -> None:
    outcome = world.call(rpc.path, rpc.kind, rpc.build(world))
    assert outcome.code == grpc.StatusCode.OK, outcome
