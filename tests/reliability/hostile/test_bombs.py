"""Bombs and ceilings at the server's default limits: refused with RESOURCE_EXHAUSTED or
INVALID_ARGUMENT before they cost memory, and the server keeps serving.

The suite's memory bound (``test_zz_memory_bound.py``) covers what these cost.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.hostile.bombs import (
    MIB,
    declared_header,
    deep_header,
    header_bomb,
    zip_bomb,
)
from tests.reliability.hostile.world import World

REFUSED = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT}
WEIGHTS = "/morphnas.v1.MorphNas/UploadWeights"
DATASET = "/morphnas.v1.MorphNas/UploadDataset"


def weights_stream(trial_id: str, blob: bytes) -> Iterator[pb.UploadWeightsRequest]:
    yield pb.UploadWeightsRequest(trial_id=trial_id, total_size=len(blob), data=blob[:MIB])
    for start in range(MIB, len(blob), MIB):
        yield pb.UploadWeightsRequest(data=blob[start : start + MIB])


def dataset_stream(name: str, blob: bytes) -> Iterator[pb.UploadDatasetRequest]:
    yield pb.UploadDatasetRequest(name=name, total_size=len(blob), data=blob[:MIB])
    for start in range(MIB, len(blob), MIB):
        yield pb.UploadDatasetRequest(data=blob[start : start + MIB])


def upload_weights(world: World, blob: bytes) -> grpc.StatusCode:
    outcome = world.call(WEIGHTS, "stream_unary", list(weights_stream(world.active_trial(), blob)))
    return outcome.code


@pytest.mark.parametrize(
    ("label", "blob", "says"),
    [
        ("20,000 zero-size tensors", header_bomb(20_000), "tensors"),
        ("a header declared 1 GB long", declared_header(10**9), "header declares"),
        ("a header declared 2^64-1 long", b"\xff" * 8 + b"{}", "header declares"),
        ("a header 100,000 brackets deep", deep_header(100_000), "tensors"),
    ],
)
def test_safetensors_header_bombs_are_refused_before_parsing(
    world: World, label: str, blob: bytes, says: str
) -> None:
    outcome = world.call(WEIGHTS, "stream_unary", list(weights_stream(world.active_trial(), blob)))
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, label
    assert says in outcome.details
    assert world.serving()


@pytest.mark.slow
def test_the_79_mb_header_of_issue_17_is_refused_at_once(world: World) -> None:
    """1.35 M zero-size tensors used to hold 3.1 GB for 22 s: now the 8-byte length prefix is
    enough to refuse them (the bytes are spooled to disk as they arrive, never parsed)."""
    blob = header_bomb(1_350_000)
    assert len(blob) > 75 * 10**6
    assert upload_weights(world, blob) == grpc.StatusCode.INVALID_ARGUMENT
    assert world.serving()


def test_a_zip_bomb_is_refused_while_it_inflates(world: World) -> None:
    """64 MiB of zeros deflate to about 64 KB: past 16 MiB inflated, the member's ratio
    (~1,000) is over the ceiling of 100, so inflation stops there."""
    blob = zip_bomb(64 * MIB)
    assert len(blob) < MIB
    outcome = world.call(DATASET, "stream_unary", list(dataset_stream("bomb", blob)))
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "zip bomb" in outcome.details
    assert world.serving()


@pytest.mark.slow
def test_the_561_mib_zip_bomb_of_issue_17_is_refused(world: World) -> None:
    blob = zip_bomb(561 * MIB)
    outcome = world.call(DATASET, "stream_unary", list(dataset_stream("bomb", blob)))
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert world.serving()


def test_an_upload_announced_over_the_limit_is_refused_before_its_bytes(world: World) -> None:
    request = pb.UploadDatasetRequest(name="big", total_size=10**12, data=b"PK\x03\x04")
    outcome = world.call(DATASET, "stream_unary", [request])
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    request = pb.UploadWeightsRequest(trial_id=world.active_trial(), total_size=2**62)
    assert world.call(WEIGHTS, "stream_unary", [request]).code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("label", "fields"),
    [
        # Issue 17: the API server built a 164 M-parameter seed and stored 655 MB of weights.
        (
            "the 164 M-parameter seed",
            {"input_shape": [40000], "seed_width": 4096, "max_params": 10**9},
        ),
        ("max_params over the ceiling", {"input_shape": [8], "max_params": 10**9}),
        ("max_memory_bytes over the ceiling", {"input_shape": [8], "max_memory_bytes": 2**40}),
        ("an input of 3,000,000 values", {"input_shape": [3, 1000, 1000], "seed_width": 8}),
    ],
)
def test_a_client_cannot_raise_the_server_ceilings(
    world: World, label: str, fields: dict[str, object]
) -> None:
    request = pb.CreateSearchRequest(name="huge", num_classes=3, **fields)  # type: ignore[arg-type]
    outcome = world.call("/morphnas.v1.MorphNas/CreateSearch", "unary_unary", [request])
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, (label, outcome)
    assert "ceiling" in outcome.details


def test_a_seed_over_the_clients_own_max_params_is_refused(world: World) -> None:
    request = pb.CreateSearchRequest(
        name="big seed", num_classes=3, input_shape=[40000], seed_width=4096
    )
    outcome = world.call("/morphnas.v1.MorphNas/CreateSearch", "unary_unary", [request])
    assert outcome.code in REFUSED
