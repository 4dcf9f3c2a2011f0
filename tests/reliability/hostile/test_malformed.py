"""Bytes that are not a request are INVALID_ARGUMENT on every RPC, never INTERNAL.

For each RPC of the table: random bytes, truncated and bit-flipped copies of a valid request, a
length prefix of 2**31 (and one that overflows 64 bits), invalid UTF-8 in a string field, groups
nested past protobuf's depth limit. In a client stream the malformed message is sent first and,
again, after a valid first message. Payloads protobuf can still parse must get a deliberate
answer (any code but INTERNAL and UNKNOWN).
"""

from __future__ import annotations

import grpc
import pytest

from tests.reliability.hostile.cases import is_malformed, malformed_payloads
from tests.reliability.hostile.rpcs import RPCS, Rpc
from tests.reliability.hostile.world import MAX_DETAILS_CHARS, World

BAD = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_malformed_bytes_are_invalid_argument(world: World, rpc: Rpc) -> None:
    valid = rpc.build(world)
    problems = []
    for label, payload in malformed_payloads(rpc.request_type, valid[0].SerializeToString()):
        sequences = [[payload]]
        if rpc.client_streaming:
            sequences.append([*rpc.build(world)[:1], payload])
        for messages in sequences:
            outcome = world.call(rpc.path, rpc.kind, messages, timeout=30)
            expected = {BAD} if is_malformed(rpc.request_type, payload) else None
            where = f"{label} as message {len(messages) - 1}"
            if outcome.is_bug or (expected is not None and outcome.code not in expected):
                problems.append(f"{where}: {outcome.code.name} {outcome.details[:200]}")
            if len(outcome.details) > MAX_DETAILS_CHARS:
                problems.append(f"{where}: a status message of {len(outcome.details):,} chars")
    assert problems == []
    assert world.serving()


def test_no_request_reached_grpcs_generic_deserialisation_path(world: World) -> None:
    """Run after the classes above (same package server): the log shows no decoding failure."""
    lines = [
        line for line in world.log_lines() if "Exception deserializing" in line or "bug in" in line
    ]
    assert lines == []
