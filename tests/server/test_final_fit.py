"""The final fit after a search: run option, worker, weights, events, budget, export and SDK."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from morphnas.client import (
    Client,
    FailedPreconditionError,
    FinalFitInfo,
    InvalidArgumentError,
)
from morphnas.core.records import TrainingRun
from morphnas.nn.datasets import Normalisation, builtin_dataset, dataset_split
from morphnas.nn.onnx_export import check_onnx_matches, onnx_metadata
from morphnas.server.app import RunningServer
from morphnas.server.budget import (
    FINAL_FIT_MARGIN,
    INITIAL_FINAL_FIT_SHARE,
    MAX_FINAL_FIT_SHARE,
    TrialMeter,
    final_fit_reserve,
)
from morphnas.server.training import TrainingService
from morphnas.server.worker import Worker
from morphnas.v1 import morphnas_pb2 as pb


@pytest.fixture
def worker(server: RunningServer) -> Iterator[Worker]:
    w = Worker(TrainingService(server.service), name="test-worker", poll_seconds=0.1, device="cpu")
    thread = threading.Thread(target=w.run_forever, daemon=True)
    thread.start()
    yield w
    w.stop()
    thread.join(60)


def _search(client: Client, seed: int = 0):
    return client.create_search(
        name="digits", input_shape=(1, 8, 8), num_classes=10, seed=seed, seed_width=16
    )


def test_the_run_option_is_validated(client: Client) -> None:
    search = _search(client)
    with pytest.raises(InvalidArgumentError, match="final_fit"):
        search.train("digits", 1, final_fit="always")
    # A run of only a final fit needs a trained trial to fit.
    with pytest.raises(FailedPreconditionError, match="no completed trial"):
        search.final_fit("continue", dataset="digits")
    run = search.train("digits", 1, epochs=1, final_fit="retrain")
    assert run.final_fit == "retrain" and run.final_test_accuracy is None


def test_a_run_with_a_final_fit_stores_reports_and_exports_it(
    client: Client, worker: Worker
) -> None:
    search = _search(client)
    search.train("digits", 2, epochs=2, device="cpu", final_fit="continue")
    events = list(search.watch(timeout=120))
    kinds = [e.kind for e in events]
    assert kinds[-2:] == ["final_fit_finished", "search_finished"]
    fit, finished = events[-2].payload, events[-1].payload
    best = search.best_trial()
    assert best is not None
    lineage_best_epochs = {
        e.payload["trial_id"]: e.payload["best_epoch"] for e in events if e.kind == "trial_finished"
    }
    assert fit["trial_id"] == best.id and fit["number"] == best.number
    assert fit["mode"] == "continue" and "error" not in fit
    assert fit["epochs"] == max(2, lineage_best_epochs[best.id])  # final_fit_epochs' rule
    assert fit["seconds"] > 0 and 0 <= fit["test_accuracy"] <= 1
    assert fit["best_trial_test_accuracy"] == finished["test_accuracy"]
    assert finished["final_fit"] == "continue"
    assert finished["final_test_accuracy"] == fit["test_accuracy"]
    run = search.training_run()
    assert run.final_test_accuracy == fit["test_accuracy"]
    assert run.test_accuracy == finished["test_accuracy"]

    final = client.download_weights(best.id, "final")
    trained = best.trained_weights()
    assert final.keys() == trained.keys()
    assert any(not np.array_equal(final[k], trained[k]) for k in final)

    # The final model is exported by default, the trial's own weights on request; the metadata
    # says which and carries that model's test accuracy. The file computes what torch does.
    data = builtin_dataset("digits")
    x = data.x[dataset_split(data, seed=0).test]
    blob = search.export_onnx()
    meta = onnx_metadata(blob)
    assert meta["weights"] == "final" and float(meta["test_accuracy"]) == fit["test_accuracy"]
    norm = Normalisation.from_dict(json.loads(meta["normalisation"]))
    agreement, _ = check_onnx_matches(blob, best.graph, final, norm, x)
    assert agreement == 1.0
    own = search.export_onnx(trained_weights=True)
    meta = onnx_metadata(own)
    assert meta["weights"] == "trained"
    assert float(meta["test_accuracy"]) == finished["test_accuracy"]
    assert check_onnx_matches(own, best.graph, trained, norm, x)[0] == 1.0

    # s.final_fit: a run of no trials that refits the same best trial, here from scratch; its
    # weights replace the trial's final ones.
    refit = search.final_fit("retrain", timeout=120)
    assert isinstance(refit, FinalFitInfo)
    assert (refit.trial_id, refit.mode, refit.error) == (best.id, "retrain", "")
    assert refit.epochs == max(1, sum(lineage_best_epochs[t] for t in _lineage(search, best.id)))
    assert refit.best_trial_test_accuracy == finished["test_accuracy"]  # the same model, again
    assert search.training_run().final_test_accuracy == refit.test_accuracy
    assert search.training_run().trials == 0
    refitted = client.download_weights(best.id, "final")
    assert any(not np.array_equal(refitted[k], final[k]) for k in final)
    assert len(search.trials()) == 2  # no trial was added


def _lineage(search, trial_id: str) -> list[str]:
    parents = {t.id: t.parent_id for t in search.trials()}
    ids = [trial_id]
    while parents[ids[-1]]:
        ids.append(parents[ids[-1]])
    return ids


def test_a_budget_reserves_the_final_fit_and_charges_it(client: Client, worker: Worker) -> None:
    search = _search(client)
    search.train("digits", 0, budget_seconds=6, epochs=3, device="cpu", final_fit="continue")
    events = list(search.watch(timeout=120))
    finished = events[-1].payload
    fit = next(e.payload for e in events if e.kind == "final_fit_finished")
    run = search.training_run()
    assert finished["reason"] == "budget spent" and run.final_fit == "continue"
    assert 0 < run.reserved_seconds <= MAX_FINAL_FIT_SHARE * 6
    trial_seconds = sum(
        e.payload.get("seconds") or 0.0 for e in events if e.kind == "trial_finished"
    )
    # The trials stopped at the budget less the reservation (plus the meter's small overshoot,
    # see morphnas.server.budget), and the final fit's seconds are charged to the run too.
    assert trial_seconds <= 6 - run.reserved_seconds + 1.0
    assert run.spent_seconds == pytest.approx(finished["spent_seconds"])
    assert run.spent_seconds >= fit["seconds"]
    assert fit["reserved_seconds"] == run.reserved_seconds


def test_final_fit_reserve_scales_the_measured_throughput_and_is_capped() -> None:
    reserve = final_fit_reserve(
        samples_per_second=1000.0, final_epochs=4, examples=2000, budget_seconds=100.0
    )
    assert reserve == pytest.approx(FINAL_FIT_MARGIN * 4 * 2000 / 1000)
    capped = final_fit_reserve(
        samples_per_second=10.0, final_epochs=4, examples=2000, budget_seconds=100.0
    )
    assert capped == MAX_FINAL_FIT_SHARE * 100.0
    assert final_fit_reserve(
        samples_per_second=0.0, final_epochs=4, examples=2000, budget_seconds=100.0
    ) == pytest.approx(MAX_FINAL_FIT_SHARE * 100.0)


def test_a_run_with_a_budget_and_a_final_fit_starts_with_a_share_reserved(
    client: Client,
) -> None:
    search = _search(client)
    run = search.train("digits", 0, budget_seconds=100, final_fit="continue")
    assert run.reserved_seconds == pytest.approx(INITIAL_FINAL_FIT_SHARE * 100)
    other = _search(client, seed=1).train("digits", 0, budget_seconds=100)
    assert other.reserved_seconds == 0.0


def test_a_trial_meter_leaves_the_reservation_to_the_final_fit() -> None:
    from morphnas.core.records import RunState, TrainingBudget

    run = TrainingRun(
        id="r",
        search_id="s",
        dataset="digits",
        trials=10,
        claimed=1,
        budget=TrainingBudget(),
        state=RunState.RUNNING,
        first_number=0,
        created_at=0.0,
        budget_seconds=10.0,
        spent_seconds=4.0,
        final_fit="continue",
        reserved_seconds=3.0,
    )
    now = [0.0]
    meter = TrialMeter(lambda run_id, seconds: run, run, clock=lambda: now[0])
    assert meter.max_seconds(60.0) == pytest.approx(3.0)  # 10 − 3 reserved − 4 spent
    now[0] = 2.9
    assert not meter.exhausted()
    now[0] = 3.0
    assert meter.exhausted() and meter.cause == "budget"
    assert run.seconds_left == pytest.approx(3.0)
    # Even a reservation of the whole budget leaves the meter limited (not "no budget").
    whole = TrialMeter(lambda r, s: run, dataclasses.replace(run, reserved_seconds=10))
    assert whole.exhausted()


def test_an_unknown_final_fit_option_is_refused_by_the_record() -> None:
    from morphnas.core.errors import InvalidArgumentError as DomainError
    from morphnas.core.records import RunState, TrainingBudget

    with pytest.raises(DomainError, match="final_fit"):
        TrainingRun(
            id="r",
            search_id="s",
            dataset="digits",
            trials=1,
            claimed=0,
            budget=TrainingBudget(),
            state=RunState.RUNNING,
            first_number=0,
            created_at=0.0,
            final_fit="maybe",
        )


@pytest.mark.slow
def test_morphnas_run_does_a_final_fit_by_default_and_exports_it(tmp_path) -> None:
    """`morphnas run` end to end: the default final fit, both test accuracies in the summary,
    and the exported file holds the final model."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "morphnas.cli", "run", "--dataset", "digits"]
    command += ["--trials", "2", "--epochs", "2", "--quiet", "--export", "m.onnx"]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "final fit of trial" in done.stdout and "(retrain," in done.stdout
    summary = next(line for line in done.stdout.splitlines() if line.startswith("best: trial"))
    assert "test accuracy" in summary and "final model (retrain) test accuracy" in summary
    meta = onnx_metadata((tmp_path / "m.onnx").read_bytes())
    assert meta["weights"] == "final"
    assert f"{float(meta['test_accuracy']):.4f}" in summary.split("final model")[1]


def test_a_resumed_run_keeps_the_final_fit_of_the_run_it_continues(client: Client) -> None:
    search = _search(client)
    search.train("digits", 2, epochs=1, budget_seconds=100, final_fit="retrain")
    search.stop()  # no worker: nothing trained, all of it is owed
    with pytest.raises(InvalidArgumentError, match="final_fit"):
        client.call(
            "StartTraining",
            pb.StartTrainingRequest(search_id=search.id, resume=True, final_fit="continue"),
        )
    resumed = search.resume()
    assert (resumed.trials, resumed.budget_seconds) == (2, 100)
    assert resumed.final_fit == "retrain"
    assert resumed.reserved_seconds == INITIAL_FINAL_FIT_SHARE * 100
