"""Server-side training: runs, workers, events, datasets and ONNX export through the API."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from morphnas.client import (
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from morphnas.nn.datasets import Normalisation, builtin_dataset, dataset_split
from morphnas.nn.onnx_export import check_onnx_matches, onnx_metadata, run_onnx
from morphnas.server.app import RunningServer
from morphnas.server.training import TrainingService
from morphnas.server.worker import Worker
from tests.server.conftest import start_server


@pytest.fixture
def worker(server: RunningServer) -> Iterator[Worker]:
    """One in-process worker on the server's database (a thread standing in for a process)."""
    w = Worker(TrainingService(server.service), name="test-worker", poll_seconds=0.1, device="cpu")
    thread = threading.Thread(target=w.run_forever, daemon=True)
    thread.start()
    yield w
    w.stop()
    thread.join(60)


def _small_search(client: Client, **options: object):
    return client.create_search(
        name="digits", input_shape=(1, 8, 8), num_classes=10, seed=0, seed_width=16, **options
    )


def test_a_run_trains_reports_and_exports(client: Client, worker: Worker) -> None:
    search = _small_search(client, policy="random")
    run = search.train("digits", 3, epochs=3, max_seconds=60, device="cpu")
    assert run.trials == 3 and run.dataset == "digits"
    events = list(search.watch(timeout=300))
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "search_finished"
    assert kinds.count("trial_started") == 3 and kinds.count("trial_finished") == 3
    assert kinds.count("epoch_finished") >= 3
    epochs = [e.payload for e in events if e.kind == "epoch_finished"]
    assert all(0.0 <= p["val_accuracy"] <= 1.0 and p["val_loss"] > 0 for p in epochs)

    trials = search.trials()
    assert [t.state for t in trials] == ["COMPLETED"] * 3
    assert all(t.info.has_trained_weights for t in trials)
    measurements = [
        e.payload["epoch"]
        for e in events
        if e.kind == "epoch_finished" and e.payload["number"] == 0
    ]
    assert measurements == sorted(measurements)

    scores = {t.id: t.score for t in trials}
    parents = {t.id: t.parent_id for t in trials}
    for p in (e.payload for e in events if e.kind == "trial_finished"):
        parent_score = scores[parents[p["trial_id"]]] if parents[p["trial_id"]] else None
        assert p["parent_score"] == parent_score
        assert p["beat_parent"] == (parent_score is not None and p["score"] > parent_score)

    finished = events[-1].payload
    best = search.best_trial()
    assert finished["best_trial_id"] == best.id
    run = search.training_run()
    assert run.state == "DONE" and run.best_trial_id == best.id
    assert 0.5 < run.test_accuracy <= 1.0

    blob = search.export_onnx()
    meta = onnx_metadata(blob)
    assert meta["search"] == search.id and meta["trial"] == best.id
    assert float(meta["test_accuracy"]) == pytest.approx(run.test_accuracy)
    data = builtin_dataset("digits")
    test = dataset_split(data, seed=0).test
    x, y = data.x[test], data.y[test]
    onnx_accuracy = float((run_onnx(blob, x).argmax(1) == y).mean())
    assert round(onnx_accuracy * len(test)) == round(
        run.test_accuracy * len(test)
    )  # same examples right
    norm = Normalisation.from_dict(__import__("json").loads(meta["normalisation"]))
    agreement, diff = check_onnx_matches(blob, best.graph, best.trained_weights(), norm, x)
    assert agreement == 1.0 and diff < 1e-4


def test_stop_search_ends_the_watch(client: Client, worker: Worker) -> None:
    search = _small_search(client, policy="random")
    search.train("digits", 50, epochs=50, max_seconds=600, device="cpu")
    for event in search.watch(timeout=120):
        if event.kind == "epoch_finished":
            search.stop()
        if event.kind == "search_stopped":
            break
    else:
        pytest.fail("the watch ended without search_stopped")
    deadline = time.time() + 60
    while any(t.state == "ACTIVE" for t in search.trials()) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(t.state == "ACTIVE" for t in search.trials())
    assert search.refresh().info.stopped
    with pytest.raises(FailedPreconditionError):
        search.train("digits", 1)


@pytest.mark.parametrize(
    ("dataset", "error", "words"),
    [
        ("nope", NotFoundError, "no dataset"),
        ("", InvalidArgumentError, "dataset"),
        ("mnist1d", InvalidArgumentError, "shape"),  # (1, 40) sequences for an (1, 8, 8) search
    ],
)
def test_bad_training_requests(client: Client, dataset: str, error: type, words: str) -> None:
    search = _small_search(client)
    with pytest.raises(error, match=words):
        search.train(dataset, 1)


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


GOOD_X = np.random.default_rng(0).normal(size=(40, 1, 8, 8)).astype(np.float32)
GOOD_Y = np.arange(40) % 10


@pytest.mark.parametrize(
    ("blob", "words"),
    [
        (b"not a zip file", "npz"),
        (_npz(x=GOOD_X), "y"),
        (_npz(y=GOOD_Y), "x"),
        (_npz(x=GOOD_X, y=GOOD_Y[:5]), "examples"),
        (_npz(x=GOOD_X, y=GOOD_Y.astype(np.float32) + 0.5), "integer"),
        (_npz(x=GOOD_X, y=-GOOD_Y - 1), "label"),
        (_npz(x=np.where(GOOD_X > 2, np.nan, GOOD_X), y=GOOD_Y), "finite"),
        (_npz(x=np.array(["a"] * 40), y=GOOD_Y), "dtype"),
        (_npz(x=np.array([{"evil": 1}] * 40, dtype=object), y=GOOD_Y), "pickle"),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(client: Client, blob: bytes, words: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.upload_dataset(blob, name="bad")
    assert words in str(info.value).lower()
    assert client.list_datasets() == []


def test_oversized_upload(db_url: str) -> None:
    server = start_server(db_url, max_dataset_bytes=10_000)
    try:
        with Client(server.address) as c:
            with pytest.raises(ResourceExhaustedError, match="limit"):
                c.upload_dataset(_npz(x=GOOD_X, y=GOOD_Y), name="big")
            assert c.list_datasets() == []
    finally:
        server.stop(0)


def test_upload_list_train_delete(client: Client, worker: Worker) -> None:
    info = client.upload_dataset(_npz(x=GOOD_X, y=GOOD_Y), name="tiny")
    assert (
        tuple(info.input_shape) == (1, 8, 8) and info.num_classes == 10 and info.num_examples == 40
    )
    assert [d.id for d in client.list_datasets()] == [info.id]
    search = _small_search(client, policy="random")
    search.train(info.id, 1, epochs=1, device="cpu")
    assert [e.kind for e in search.watch(timeout=120)][-1] == "search_finished"
    client.delete_dataset(info.id)
    assert client.list_datasets() == []
    with pytest.raises(NotFoundError):
        client.delete_dataset(info.id)


def _start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "morphnas.cli", "worker", "--db", url, "--device", "cpu"], env=env
    )


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_search_completes(db_url: str) -> None:
    server = start_server(db_url)
    first = _start_worker(db_url)
    try:
        with Client(server.address) as c:
            search = _small_search(c, policy="random", lease_seconds=3.0)
            search.train("digits", 3, epochs=30, patience=30, device="cpu")
            victim = None
            for event in search.watch(timeout=300):
                if event.kind == "epoch_finished":
                    victim = event.payload["trial_id"]
                    first.send_signal(signal.SIGKILL)
                    break
            first.wait(30)
            second = _start_worker(db_url)
            try:
                kinds = [e.kind for e in search.watch(timeout=600)]
                assert kinds[-1] == "search_finished"
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(60)
            trials = {t.id: t for t in search.trials()}
            assert trials[victim].state == "STALE"
            retried = [
                t
                for t in trials.values()
                if t.info.architecture_hash == trials[victim].info.architecture_hash
            ]
            assert any(t.state == "COMPLETED" for t in retried)
            states = [(t.number, t.state, t.info.reason[:300]) for t in trials.values()]
            assert sum(t.state == "COMPLETED" for t in trials.values()) == 3, states
    finally:
        if first.poll() is None:
            first.kill()
        server.stop(0)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_postgres_never_train_the_same_trial(postgres_url: str) -> None:
    url = postgres_url
    server = start_server(url)
    workers = [_start_worker(url), _start_worker(url)]
    try:
        with Client(server.address) as c:
            search = _small_search(c, policy="random")
            search.train("digits", 6, epochs=2, device="cpu")
            events = list(search.watch(timeout=600))
        started = [e.payload for e in events if e.kind == "trial_started"]
        assert len(started) == 6
        assert len({p["trial_id"] for p in started}) == 6  # no trial trained twice
        assert len({p["worker"] for p in started}) == 2  # both workers took part
        assert [e.kind for e in events].count("trial_finished") == 6
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(60)
        server.stop(0)


def test_an_ask_tell_search_exports_with_identity_normalisation(client: Client) -> None:
    search = client.create_search(name="remote", input_shape=(12,), num_classes=3, policy="random")
    [trial] = search.suggest(worker_id="w")
    weights = trial.initial_weights()
    trial.report(score=0.9, weights=weights)
    blob = search.export_onnx(softmax=True)
    meta = onnx_metadata(blob)
    assert meta["trial"] == trial.id and "test_accuracy" not in meta
    norm = Normalisation.from_dict(__import__("json").loads(meta["normalisation"]))
    assert set(norm.mean) == {0.0} and set(norm.std) == {1.0}
    x = np.random.default_rng(1).normal(size=(5, 12)).astype(np.float32)
    probabilities = run_onnx(blob, x)
    assert probabilities.shape == (5, 3) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def test_export_needs_trained_weights(client: Client) -> None:
    search = client.create_search(name="remote", input_shape=(12,), num_classes=3, policy="random")
    [trial] = search.suggest(worker_id="w")
    trial.report(score=0.9)
    with pytest.raises(FailedPreconditionError, match="trained weights"):
        search.export_onnx()


def test_concurrent_exports(client: Client) -> None:
    search = client.create_search(name="remote", input_shape=(12,), num_classes=3, policy="random")
    [trial] = search.suggest(worker_id="w")
    trial.report(score=0.9, weights=trial.initial_weights())
    results: list[object] = []

    def export() -> None:
        try:
            results.append(len(search.export_onnx()))
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            results.append(err)

    threads = [threading.Thread(target=export) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(isinstance(r, int) and r > 0 for r in results), results


def test_the_dataset_cache_is_bounded_and_owned_by_its_service(sqlite_url: str) -> None:
    """Parsed datasets are kept per TrainingService, at most DATASET_CACHE_SIZE of them, and the
    repository can be collected once closed: no module-level cache holds it."""
    import gc
    import weakref

    from morphnas.server.blobs import spooled
    from morphnas.server.service import SearchService
    from morphnas.server.training import DATASET_CACHE_SIZE
    from morphnas.storage.repository import Repository

    repo = Repository.from_url(sqlite_url)
    training = TrainingService(SearchService(repo))
    ids = []
    for i in range(DATASET_CACHE_SIZE + 2):
        buffer = io.BytesIO()
        x = np.full((20, 1, 2, 2), float(i), np.float32)
        np.savez(buffer, x=x, y=np.arange(20) % 2)
        with spooled(buffer.getvalue(), training.service.uploads) as upload:
            ids.append(training.upload_dataset(f"d{i}", upload).id)
    first = training.dataset(ids[0])
    assert training.dataset(ids[0]) is first  # a hit returns the parsed object
    for number, dataset_id in enumerate(ids):
        assert float(training.dataset(dataset_id).x[0, 0, 0, 0]) == number
    assert len(training._datasets) == DATASET_CACHE_SIZE
    assert training.dataset(ids[0]) is not first  # evicted, parsed again
    repo.close()
    gone = weakref.ref(repo)
    del training, first, repo
    gc.collect()
    assert gone() is None


@pytest.mark.slow
def test_a_default_search_improves_on_its_seed(client: Client, worker: Worker) -> None:
    """The main job in small: MNIST-1D, default search and `morphnas run`'s budget, 5 trials.
    Children inherit trained weights and train with the child recipe; the best trial is not the
    seed and at least a third of the children beat their parent (issue 15): a higher validation
    accuracy, or the same accuracy and a lower validation loss (the score's tie-break). (Digits is
    no test of this: its seed already scores 268 of 270 validation examples.)"""
    search = client.create_search(name="mnist1d", input_shape=(1, 40), num_classes=10, seed=0)
    search.train("mnist1d", 5, epochs=8, max_seconds=600, device="cpu")  # `morphnas run`'s
    events = list(search.watch(timeout=900))
    assert events[-1].kind == "search_finished"
    finished = [e.payload for e in events if e.kind == "trial_finished"]
    assert [p["state"] for p in finished] == ["COMPLETED"] * 5
    children = [p for p in finished if p["parent_score"] is not None]
    assert len(children) == 4
    assert search.best_trial().number != 0
    assert 3 * sum(p["beat_parent"] for p in children) >= len(children)


def test_a_score_breaks_accuracy_ties_by_validation_loss_only() -> None:
    """Equal accuracy: the lower validation loss scores higher (and beats its parent); the loss
    never outweighs one more correct example, even on a split of ten million."""
    from morphnas.nn.recipe import validation_score

    tied = [validation_score(0.9963, loss) for loss in (0.02, 0.01, 0.0)]
    assert tied == sorted(tied) and len(set(tied)) == 3
    assert validation_score(0.5 + 1e-7, 1e9) > validation_score(0.5, 0.0)
    assert validation_score(0.9, float("nan")) == validation_score(0.9, float("inf")) == 0.9
    assert round(validation_score(0.9963, 0.01), 6) == 0.9963  # what a report prints
