"""Extreme values in every field of every RPC's request get a deliberate answer.

Each case is the table's valid minimal request with one field at an extreme of its type (see
:func:`~.cases.extreme_requests`). The answer may be OK or any deliberate refusal, never INTERNAL
or UNKNOWN, and its message quotes at most a short prefix of what was sent. Whatever was
accepted is stored in a form every listing can still show.
"""

from __future__ import annotations

import grpc
import pytest

from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.hostile.cases import extreme_requests
from tests.reliability.hostile.rpcs import RPCS, Rpc
from tests.reliability.hostile.world import MAX_DETAILS_CHARS, World


def listings_work(world: World) -> list[str]:
    """The listings a stored row could break, each asked once (empty: all answered OK)."""
    broken = []
    for method, request in (
        ("ListSearches", pb.ListSearchesRequest(page_size=1000)),
        ("ListTrials", pb.ListTrialsRequest(search_id=world.search_id, page_size=1000)),
        ("ListDatasets", pb.ListDatasetsRequest()),
    ):
        try:
            getattr(world.client.stub, method)(request, timeout=60)
        except grpc.RpcError as error:
            broken.append(f"{method}: {error.code().name} {error.details()[:200]}")
    return broken


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_extreme_values_get_a_deliberate_answer(world: World, rpc: Rpc) -> None:
    template = rpc.build(world)
    problems = []
    for label, request in extreme_requests(template[0]):
        messages = [request, *template[1:]]
        if rpc.name in ("ReportTrial", "ReportProgress", "Heartbeat", "UploadWeights"):
            messages = [request]  # these use up their trial: fresh ids below
            fresh = rpc.build(world)[0]
            if not any(label.startswith(f"{n}=") for n in ("trial_id",)):
                request.trial_id = fresh.trial_id  # type: ignore[attr-defined]
        # A watch from past the last event of a stopped search waits for events to come.
        timeout = 3.0 if rpc.name == "WatchSearch" else 60.0
        outcome = world.call(rpc.path, rpc.kind, messages, timeout=timeout)
        # "metadata size exceeds hard limit": a status message too long for gRPC to send
        if outcome.is_bug or "metadata" in outcome.details.lower():
            problems.append(f"{label}: {outcome.code.name} {outcome.details[:200]}")
        if len(outcome.details) > MAX_DETAILS_CHARS:
            problems.append(f"{label}: a status message of {len(outcome.details):,} characters")
    assert problems == []
    assert listings_work(world) == []
