"""The SDK hands out its own frozen records (morphnas.client.records), never protobuf messages."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
import pytest
from google.protobuf.message import Message

from morphnas.client import (
    Client,
    DatasetInfo,
    SearchEvent,
    SearchInfo,
    TrainingBudgetInfo,
    TrainingRunInfo,
    TrialInfo,
)
from morphnas.client.records import search_from_pb, trial_from_pb
from morphnas.v1 import morphnas_pb2 as pb


def _no_protobuf(value: Any) -> bool:
    """True when nothing inside ``value`` (a record, its fields, containers) is a message."""
    if isinstance(value, Message):
        return False
    if dataclasses.is_dataclass(value):
        return all(_no_protobuf(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return all(_no_protobuf(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_no_protobuf(v) for v in value)
    return True


def test_every_answer_is_a_plain_frozen_record(client: Client) -> None:
    search = client.create_search(
        name="records", input_shape=(1, 8, 8), num_classes=10, policy="random"
    )
    assert isinstance(search.info, SearchInfo)
    assert (search.info.policy, search.info.input_shape, search.info.stopped) == (
        "random",
        (1, 8, 8),
        False,
    )
    [seed] = search.suggest(worker_id="w")
    assert isinstance(seed.info, TrialInfo)
    assert (seed.state, seed.parent_id, seed.score, seed.operations) == ("ACTIVE", None, None, [])
    assert seed.info.lease_expires_at is not None and seed.info.num_params > 0
    seed.report(score=0.5, weights=seed.initial_weights())
    assert (seed.state, seed.score, seed.info.lease_expires_at) == ("COMPLETED", 0.5, None)
    assert seed.info.has_trained_weights
    [child] = search.suggest(worker_id="w")
    assert child.parent_id == seed.id and child.operations  # a morph of the seed
    assert isinstance(child.info.operations, tuple)

    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((20, 1, 8, 8), np.float32), y=np.arange(20) % 10)
    dataset = client.upload_dataset(buffer.getvalue(), name="zeros")
    assert isinstance(dataset, DatasetInfo) and dataset.input_shape == (1, 8, 8)
    assert client.list_datasets() == [dataset]

    child.fail("not needed")
    run = search.train("digits", 1, epochs=1, device="cpu")
    assert isinstance(run, TrainingRunInfo) and isinstance(run.budget, TrainingBudgetInfo)
    assert (run.state, run.finished_at, run.best_trial_id, run.test_accuracy) == (
        "RUNNING",
        None,
        None,
        None,
    )
    assert run.budget.epochs == 1 and run.budget.device == "cpu"
    assert search.training_run() == run
    search.stop()
    assert search.info.stopped
    events = list(search.watch(timeout=30))
    assert all(isinstance(e, SearchEvent) and e.search_id == search.id for e in events)
    assert [e.kind for e in events] == ["run_started", "search_stopped"]
    assert events[0].payload["run_id"] == run.id
    stopped = search.training_run()
    assert stopped.state == "STOPPED" and stopped.finished_at is not None

    for record in (search.info, seed.info, child.info, dataset, run, stopped, *events):
        assert _no_protobuf(record), record
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.id = "changed"  # type: ignore[misc]


def test_an_unknown_enum_value_from_the_server_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown trial state 99"):
        trial_from_pb(pb.Trial(id="t", state=99))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown policy 7"):
        search_from_pb(pb.Search(id="s", policy=7))  # type: ignore[arg-type]
    assert search_from_pb(pb.Search(id="s")).policy == "bayesian"  # the server's default
