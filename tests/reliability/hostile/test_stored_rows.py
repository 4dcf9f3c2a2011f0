"""Values that fit the wire but not the server are refused before anything is stored, and a row
stored by an older server cannot break a listing.

Found by an outside probe: a dataset with one label 2**31 - 1 was stored (num_classes 2**31),
its upload answered INTERNAL without an id, and from then on every ListDatasets answered
INTERNAL; a search with seed -2**63 was accepted and every SuggestTrials on it failed.
"""

from __future__ import annotations

import json

import grpc
import pytest
import sqlalchemy as sa

from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.hostile.world import World, small_dataset

BAD = grpc.StatusCode.INVALID_ARGUMENT


def _code(call: object, request: object) -> grpc.StatusCode:
    try:
        call(request, timeout=60)  # type: ignore[operator]
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _dataset_ids(world: World) -> set[str]:
    return {d.id for d in world.client.stub.ListDatasets(pb.ListDatasetsRequest()).datasets}


@pytest.mark.parametrize(
    ("label", "dtype"),
    [(2**31 - 1, "int64"), (2**63 - 1, "int64"), (2**64 - 1, "uint64"), (100_000, "int64")],
)
def test_a_label_beyond_the_class_limit_stores_nothing(
    world: World, label: int, dtype: str
) -> None:
    before = _dataset_ids(world)
    blob = small_dataset(labels=(0, 1, label), dtype=dtype)
    upload = iter([pb.UploadDatasetRequest(name="labels", total_size=len(blob), data=blob)])
    with pytest.raises(grpc.RpcError) as caught:
        world.client.stub.UploadDataset(upload, timeout=60)
    assert caught.value.code() == BAD and "label" in caught.value.details()
    assert _dataset_ids(world) == before


def test_the_largest_label_allowed_is_stored_and_listed(world: World) -> None:
    dataset_id = world.upload_dataset("many classes", small_dataset(labels=(0, 1, 99_999)))
    [listed] = [
        d
        for d in world.client.stub.ListDatasets(pb.ListDatasetsRequest()).datasets
        if d.id == dataset_id
    ]
    assert listed.num_classes == 100_000


def test_a_stored_row_beyond_the_message_does_not_break_the_listing(world: World) -> None:
    """A row an older server stored with num_classes 2**31 (SQLite takes it; PostgreSQL's
    INTEGER column cannot, its JSON input shape can): still listed, still deletable."""
    dataset_id = world.upload_dataset("legacy")
    classes = 3 if world.db_url.startswith("postgresql") else 2**31
    engine = sa.create_engine(world.db_url)
    with engine.begin() as c:
        c.execute(
            sa.text("UPDATE datasets SET num_classes = :n, input_shape = :s WHERE id = :id"),
            {"n": classes, "s": f"[{2**40}]", "id": dataset_id},
        )
    engine.dispose()
    [listed] = [
        d
        for d in world.client.stub.ListDatasets(pb.ListDatasetsRequest()).datasets
        if d.id == dataset_id
    ]
    assert (listed.num_classes, list(listed.input_shape)) == (classes % 2**31, [0])
    world.client.stub.DeleteDataset(pb.DeleteDatasetRequest(dataset_id=dataset_id), timeout=60)
    assert dataset_id not in _dataset_ids(world)


@pytest.mark.parametrize("seed", [-(2**63), -1])
def test_a_negative_seed_is_refused(world: World, seed: int) -> None:
    request = pb.CreateSearchRequest(name="seed", input_shape=[8], num_classes=3, seed=seed)
    assert _code(world.client.stub.CreateSearch, request) == BAD


@pytest.mark.parametrize("seed", [0, 2**63 - 1])
def test_the_seed_range_is_usable(world: World, seed: int) -> None:
    request = pb.CreateSearchRequest(
        name="seed", input_shape=[8], num_classes=3, seed=seed, policy=pb.POLICY_RANDOM
    )
    search = world.client.stub.CreateSearch(request, timeout=60)
    ask = pb.SuggestTrialsRequest(search_id=search.id, count=2, worker_id="seed")
    assert len(world.client.stub.SuggestTrials(ask, timeout=60).trials) == 2


def test_a_search_stored_with_a_negative_seed_still_suggests(world: World) -> None:
    search_id = world.new_search("legacy seed")
    engine = sa.create_engine(world.db_url)
    with engine.begin() as c:
        query = sa.text("SELECT config FROM searches WHERE id = :id")
        config = json.loads(c.execute(query, {"id": search_id}).scalar_one())
        config["seed"] = -(2**63)
        c.execute(
            sa.text("UPDATE searches SET config = :c WHERE id = :id"),
            {"c": json.dumps(config), "id": search_id},
        )
    engine.dispose()
    got = world.client.stub.GetSearch(pb.GetSearchRequest(search_id=search_id), timeout=60)
    assert got.seed == -(2**63)
    ask = pb.SuggestTrialsRequest(search_id=search_id, count=1, worker_id="legacy")
    [trial] = world.client.stub.SuggestTrials(ask, timeout=60).trials
    assert world.initial_weights(trial.id)
