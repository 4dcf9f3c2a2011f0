"""MorphnasSearcher without a Ray cluster: Tune's calls made by hand against a real server, so the
mapping between Tune trials and morphnas trials is checked step by step (fast). The same
searcher under a real Tune run is in ``test_tune.py`` (slow)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("ray.tune")

from ray.tune.search import Searcher  # noqa: E402

from morphnas.client import Client  # noqa: E402
from morphnas.integrations.ray import (  # noqa: E402
    CONFIG_KEY,
    WEIGHTS_KEY,
    MorphnasSearcher,
    inherited_model,
    upload_trained_weights,
)
from morphnas.server.app import RunningServer  # noqa: E402
from tests.server.conftest import start_server  # noqa: E402


@pytest.fixture
def server(tmp_path) -> Iterator[RunningServer]:
    running = start_server(f"sqlite:///{tmp_path / 'morphnas.db'}")
    yield running
    running.stop(0)


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.address, timeout=30) as c:
        yield c


def new_searcher(server: RunningServer, client: Client, **kwargs) -> MorphnasSearcher:
    search = client.create_search(
        "tune", (1, 8, 8), 10, seed=0, seed_width=8, seed_depth=2, max_trials=4
    )
    return MorphnasSearcher(search.id, server.address, metric="acc", mode="max", **kwargs)


def complete(searcher: MorphnasSearcher, tune_id: str, acc: float, *, upload: bool = True) -> None:
    """What Tune and a trainable do for one trial: results, weights, completion."""
    config = searcher.suggest(tune_id)
    assert isinstance(config, dict)
    model = inherited_model(config)
    searcher.on_trial_result(tune_id, {"acc": acc / 2, "training_iteration": 1})
    result = {"acc": acc, "training_iteration": 2}
    if upload:
        result[WEIGHTS_KEY] = upload_trained_weights(config, model)
    searcher.on_trial_result(tune_id, result)
    searcher.on_trial_complete(tune_id, result)


def test_a_config_carries_the_trial_and_a_retried_suggest_gets_the_same_one(server, client):
    searcher = new_searcher(server, client)
    config = searcher.suggest("t1")
    assert isinstance(config, dict)
    trial = config[CONFIG_KEY]
    assert trial["number"] == 0 and trial["parent_id"] == ""  # the seed
    assert trial["server"] == server.address and '"layers"' in trial["architecture"]
    assert not any("weights" in key for key in trial)  # weights never travel through Tune
    # A fresh searcher (a retry after a driver crash) asking for the same Tune trial id gets
    # the same morphnas trial: the worker id is derived from the Tune trial id.
    again = MorphnasSearcher(searcher.search_id, server.address, metric="acc", mode="max")
    assert again.suggest("t1") == config
    assert searcher.suggest("t1") == config
    assert client.get_search(searcher.search_id).refresh().info.trial_count == 1


def test_suggest_waits_for_the_seed_then_children_inherit_its_trained_weights(server, client):
    searcher = new_searcher(server, client)
    assert isinstance(searcher.suggest("t1"), dict)
    assert searcher.suggest("t2") is None  # the seed trains: the search waits for its result
    complete(searcher, "t1", 0.5)
    config = searcher.suggest("t2")
    assert isinstance(config, dict)
    child = config[CONFIG_KEY]
    seed = client.get_trial(child["parent_id"])
    assert seed.state == "COMPLETED" and seed.score == 0.5 and seed.info.has_trained_weights
    # The child's first forward pass computes what its trained parent computes.
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    import torch

    with torch.no_grad():
        parent_model = seed.build_model("trained").eval()
        child_model = inherited_model(config).eval()
        expected = parent_model(torch.from_numpy(x))
        torch.testing.assert_close(child_model(torch.from_numpy(x)), expected, atol=1e-4, rtol=1e-4)


def test_progress_renews_the_lease_and_the_stopper_asks_once_per_step(server, client):
    searcher = new_searcher(server, client)
    config = searcher.suggest("t1")
    trial_id = config[CONFIG_KEY]["trial_id"]
    before = client.get_trial(trial_id).info.lease_expires_at
    stopper = searcher.stopper()
    assert stopper("t1", {"acc": 0.3, "training_iteration": 1}) is False
    searcher.on_trial_result("t1", {"acc": 0.3, "training_iteration": 1})  # not asked again
    assert client.get_trial(trial_id).info.lease_expires_at >= before
    client.get_search(searcher.search_id).stop()
    # A stopped search answers should_stop: the stopper ends the Tune trial at its next result.
    assert stopper("t1", {"acc": 0.4, "training_iteration": 2}) is True
    assert searcher.suggest("t9") == Searcher.FINISHED


def test_errors_and_missing_metrics_are_reported_failed(server, client):
    searcher = new_searcher(server, client, wait_for_seed=False)
    one = searcher.suggest("t1")[CONFIG_KEY]["trial_id"]
    two = searcher.suggest("t2")[CONFIG_KEY]["trial_id"]
    searcher.on_trial_complete("t1", None, error=True)
    searcher.on_trial_complete("t2", {"other": 1.0, "training_iteration": 1})
    assert (
        client.get_trial(one).state == "FAILED"
        and "raised an error" in client.get_trial(one).info.reason
    )
    assert client.get_trial(two).state == "FAILED" and "'acc'" in client.get_trial(two).info.reason


def test_mode_min_reports_minus_the_metric(server, client):
    search = client.create_search("min", (1, 8, 8), 10, seed_width=8, seed_depth=2)
    searcher = MorphnasSearcher(search.id, server.address, metric="loss", mode="min")
    trial_id = searcher.suggest("t1")[CONFIG_KEY]["trial_id"]
    searcher.on_trial_complete("t1", {"loss": 0.25, "training_iteration": 1})
    assert client.get_trial(trial_id).score == -0.25


def test_max_trials_finishes_the_searcher_and_max_concurrent_caps_it(server, client):
    searcher = new_searcher(server, client, wait_for_seed=False, max_concurrent=2)
    assert isinstance(searcher.suggest("t1"), dict) and isinstance(searcher.suggest("t2"), dict)
    assert searcher.suggest("t3") is None  # two in flight
    complete(searcher, "t1", 0.4)
    complete(searcher, "t2", 0.6)
    assert isinstance(searcher.suggest("t3"), dict) and isinstance(searcher.suggest("t4"), dict)
    complete(searcher, "t3", 0.5)
    assert searcher.suggest("t5") == Searcher.FINISHED  # max_trials=4 handed out


def test_save_and_restore_keep_the_mapping_without_secrets(server, client, tmp_path):
    searcher = new_searcher(server, client, token="s3cret")
    config = searcher.suggest("t1")
    searcher.on_trial_result("t1", {"acc": 0.2, "training_iteration": 1})
    path = tmp_path / "searcher.json"
    searcher.save(str(path))
    assert "s3cret" not in path.read_text() and "s3cret" not in str(pickle.dumps(searcher))
    restored = MorphnasSearcher("another-search-id", "nowhere:1", metric="acc")
    restored.restore(str(path))
    assert restored.search_id == searcher.search_id and restored.server == server.address
    assert restored.suggest("t1") == config  # the same trial, no new one
    restored.on_trial_complete("t1", {"acc": 0.7, "training_iteration": 2})
    assert client.get_trial(config[CONFIG_KEY]["trial_id"]).score == 0.7
    revived = pickle.loads(pickle.dumps(restored))  # Tune pickles its search algorithm
    assert revived.suggest("t2")[CONFIG_KEY]["parent_id"] == config[CONFIG_KEY]["trial_id"]


def test_weights_of_another_trial_are_refused_but_the_score_counts(server, client):
    searcher = new_searcher(server, client, wait_for_seed=False)
    one = searcher.suggest("t1")
    two = searcher.suggest("t2")
    sha = upload_trained_weights(two, inherited_model(two))  # uploaded for trial two
    searcher.on_trial_complete("t1", {"acc": 0.5, "training_iteration": 1, WEIGHTS_KEY: sha})
    first = client.get_trial(one[CONFIG_KEY]["trial_id"])
    assert first.state == "COMPLETED" and first.score == 0.5 and not first.info.has_trained_weights


def test_tune_trial_folders_are_named_by_the_morphnas_trial(server, client):
    from types import SimpleNamespace

    from morphnas.integrations.ray import trial_dirname

    searcher = new_searcher(server, client)
    config = searcher.suggest("abc_00001")
    assert trial_dirname(SimpleNamespace(config=config, trial_id="abc_00001")) == (
        "morphnas_0_abc_00001"
    )


def test_a_report_the_server_could_not_take_is_sent_at_the_next_suggest(
    server, client, monkeypatch
):
    from morphnas.client import TrialHandle
    from morphnas.core.errors import UnavailableError

    searcher = new_searcher(server, client)
    trial_id = searcher.suggest("t1")[CONFIG_KEY]["trial_id"]
    real_report = TrialHandle.report
    outage = [True]

    def report_during_an_outage(self, *args, **kwargs):
        if outage.pop() if outage else False:
            raise UnavailableError("connection refused")
        return real_report(self, *args, **kwargs)

    monkeypatch.setattr(TrialHandle, "report", report_during_an_outage)
    searcher.on_trial_complete("t1", {"acc": 0.8, "training_iteration": 1})
    assert client.get_trial(trial_id).state == "ACTIVE"  # not reported yet, not forgotten
    assert searcher.get_state()["live"]["t1"]["ended"] is True  # saved with the checkpoint
    config = searcher.suggest("t2")  # sends it first, so t2 is a child of the scored seed
    assert client.get_trial(trial_id).score == 0.8
    assert config[CONFIG_KEY]["parent_id"] == trial_id
