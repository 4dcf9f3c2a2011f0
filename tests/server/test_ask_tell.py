"""The ask/tell loop over a real socket, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from morphnas.client import Client, FailedPreconditionError
from morphnas.core.graph import Graph
from morphnas.core.morphs import apply_path, morph_from_dict
from morphnas.core.weights import init_weights
from tests.server.conftest import start_server


def test_first_suggestion_is_the_seed_with_its_weights(client: Client) -> None:
    search = client.create_search(name="digits", input_shape=(1, 8, 8), num_classes=10, seed=0)
    [trial] = search.suggest(count=1, worker_id="w1")
    assert trial.number == 0
    assert trial.parent_id is None and trial.operations == []
    assert trial.architecture["input_shape"] == [1, 8, 8]
    weights = trial.initial_weights()
    assert set(weights) == set(trial.graph.weight_shapes())
    expected = init_weights(trial.graph, 0)
    assert all(np.array_equal(weights[k], expected[k]) for k in expected)


def test_suggest_is_idempotent_per_worker(client: Client) -> None:
    search = client.create_search(name="s", input_shape=(16,), num_classes=3, policy="random")
    first = search.suggest(count=1, worker_id="w1")
    again = search.suggest(count=1, worker_id="w1")
    assert [t.id for t in first] == [t.id for t in again]
    other = search.suggest(count=1, worker_id="w2")
    assert other[0].id != first[0].id


def test_children_inherit_reported_weights(client: Client) -> None:
    search = client.create_search(
        name="s", input_shape=(16,), num_classes=3, policy="random", seed=3
    )
    [seed] = search.suggest(worker_id="w")
    trained = {k: v + 0.01 for k, v in seed.initial_weights().items()}
    seed.report(score=0.5, weights=trained)
    [child] = search.suggest(worker_id="w")
    assert child.parent_id == seed.id and child.operations
    ops = [morph_from_dict(op) for op in child.operations]
    graph, expected = apply_path(seed.graph, ops, trained)
    assert graph.content_hash == child.graph.content_hash
    got = child.initial_weights()
    assert all(np.allclose(got[k], expected[k]) for k in expected)


def test_report_is_idempotent_and_conflicts_fail(client: Client) -> None:
    search = client.create_search(name="s", input_shape=(8,), num_classes=2, policy="random")
    [trial] = search.suggest(worker_id="w")
    weights = trial.initial_weights()
    trial.report(score=0.7, weights=weights)
    again = client.get_trial(trial.id).report(score=0.7, weights=weights)
    assert again.state == "COMPLETED" and again.score == pytest.approx(0.7)
    with pytest.raises(FailedPreconditionError, match="already"):
        client.get_trial(trial.id).report(score=0.8)


def test_lease_expiry_hands_the_architecture_out_again(client: Client) -> None:
    search = client.create_search(
        name="s", input_shape=(8,), num_classes=2, policy="random", lease_seconds=1.0
    )
    [lost] = search.suggest(worker_id="dead-worker")
    time.sleep(1.6)
    assert lost.refresh().state == "STALE"
    [again] = search.suggest(worker_id="w2")
    assert again.id != lost.id
    assert again.info.architecture_hash == lost.info.architecture_hash
    assert again.number == lost.number + 1


def test_heartbeat_and_progress_renew_the_lease(client: Client) -> None:
    search = client.create_search(
        name="s", input_shape=(8,), num_classes=2, policy="random", lease_seconds=1.0
    )
    [trial] = search.suggest(worker_id="w")
    for step in range(4):
        time.sleep(0.4)
        assert trial.progress(step, 0.1 * step) is False
    trial.heartbeat()
    assert trial.refresh().state == "ACTIVE"


def test_many_workers_lose_nothing(db_url: str) -> None:
    """16 threads × 25 ask/tell cycles: numbers unique and gapless, every report counted once."""
    server = start_server(db_url)
    try:
        with Client(server.address, timeout=60) as c:
            search = c.create_search(name="load", input_shape=(8,), num_classes=2, policy="random")
        errors: list[BaseException] = []
        reported: list[tuple[str, float]] = []
        lock = threading.Lock()

        def worker(i: int) -> None:
            try:
                with Client(server.address, timeout=60) as c:
                    handle = c.get_search(search.id)
                    for j in range(25):
                        [t] = handle.suggest(worker_id=f"w{i}")
                        score = i + j / 100
                        t.report(score=score)
                        with lock:
                            reported.append((t.id, score))
            except BaseException as err:  # noqa: BLE001
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        with Client(server.address) as c:
            trials = c.get_search(search.id).trials()
        assert sorted(t.number for t in trials) == list(range(400))
        assert len({t.id for t in trials}) == 400
        by_id = {t.id: t for t in trials}
        assert len(reported) == 400 and len({tid for tid, _ in reported}) == 400
        for tid, score in reported:
            assert by_id[tid].state == "COMPLETED" and by_id[tid].score == pytest.approx(score)
    finally:
        server.stop(0)


def test_restart_keeps_history(sqlite_url: str) -> None:
    server = start_server(sqlite_url)
    with Client(server.address) as c:
        search = c.create_search(name="s", input_shape=(8,), num_classes=2, policy="random", seed=5)
        for i in range(3):
            [t] = search.suggest(worker_id="w")
            t.report(score=0.1 * i, weights=t.initial_weights())
    server.stop(0)

    server = start_server(sqlite_url)
    try:
        with Client(server.address) as c:
            again = c.get_search(search.id)
            trials = again.trials()
            assert [t.number for t in trials] == [0, 1, 2]
            assert [t.score for t in trials] == pytest.approx([0.0, 0.1, 0.2])
            [next_trial] = again.suggest(worker_id="w")
            assert next_trial.number == 3
            assert next_trial.parent_id in {t.id for t in trials}
    finally:
        server.stop(0)


def test_operations_replay_to_the_architecture(client: Client) -> None:
    search = client.create_search(
        name="s", input_shape=(1, 8, 8), num_classes=4, policy="random", seed_width=8
    )
    parent = None
    for _ in range(4):
        [t] = search.suggest(worker_id="w")
        if t.parent_id is not None:
            parent = client.get_trial(t.parent_id)
            ops = [morph_from_dict(op) for op in t.operations]
            child, _ = apply_path(parent.graph, ops)
            assert child == Graph.from_json(t.info.architecture_json)
        t.report(score=float(t.number), weights=t.initial_weights())
    assert parent is not None
