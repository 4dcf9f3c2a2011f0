"""Ray Tune runs through MorphnasSearcher on a local Ray cluster (slow: a cluster, real trials).

Every trial's first forward pass is compared with its parent's trained model inside the
trainable (``tests/ray/trainables.py``): the weights a child starts from came through the
searcher (the morphnas trial id in Tune's config) and the server, never through Tune."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray.tune")

from ray import tune  # noqa: E402

from morphnas.client import Client  # noqa: E402
from tests.ray.conftest import ROOT  # noqa: E402
from tests.ray.trainables import train_digits  # noqa: E402
from tests.ray.tune_driver import tuner  # noqa: E402

pytestmark = pytest.mark.slow


def small_search(client: Client, name: str, max_trials: int):
    return client.create_search(
        name, (1, 8, 8), 10, seed=0, seed_width=8, seed_depth=2, max_trials=max_trials
    )


def test_a_tune_run_of_eight_trials_reports_every_trial_and_children_inherit(
    ray_cluster, module_server, module_client, tmp_path
):
    search = small_search(module_client, "tune-8", max_trials=8)
    results = tuner(module_server.address, search.id, str(tmp_path), "eight", 8).fit()

    assert len(results) == 8 and not results.errors
    trials = search.trials()
    assert len(trials) == 8
    assert all(t.state == "COMPLETED" and t.info.has_trained_weights for t in trials)
    by_id = {t.id: t for t in trials}
    reported = {r.config["morphnas"]["trial_id"]: r.metrics for r in results}
    assert set(reported) == set(by_id)  # each Tune trial is one morphnas trial, none twice
    for trial_id, metrics in reported.items():
        assert by_id[trial_id].score == pytest.approx(metrics["val_accuracy"])
    gaps = [
        m["parent_logit_gap"] for m in reported.values() if not math.isnan(m["parent_logit_gap"])
    ]
    assert len(gaps) >= 7  # every trial after the seed is a morph of a trained parent
    assert max(gaps) < 1e-4, gaps


def test_tuner_restore_after_an_interruption_continues_the_same_search(
    ray_cluster, module_server, module_client, tmp_path
):
    searches_before = len(module_client.list_searches())
    search = small_search(module_client, "tune-restore", max_trials=5)
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.ray.tune_driver",
            ray_cluster,
            module_server.address,
            search.id,
            str(tmp_path),
            "restored",
            "5",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while len(search.trials(states=["COMPLETED"])) < 2:  # interrupt it midway
        assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the Tune run made no progress"
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)  # Tune saves its experiment state and stops
    driver.wait(60)
    done_before = len(search.trials(states=["COMPLETED"]))
    assert done_before < 5

    experiment = str(tmp_path / "restored")
    assert tune.Tuner.can_restore(experiment)
    results = tune.Tuner.restore(experiment, trainable=train_digits).fit()

    assert not results.errors
    trials = search.trials()
    assert len(trials) == 5 and all(t.state == "COMPLETED" for t in trials), [
        (t.number, t.state) for t in trials
    ]
    assert len(module_client.list_searches()) == searches_before + 1  # the same one continued
    assert {r.config["morphnas"]["trial_id"] for r in results} == {t.id for t in trials}
