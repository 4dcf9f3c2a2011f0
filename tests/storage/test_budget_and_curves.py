"""Run budgets (charge, claim gate) and the learning curves behind early stopping across trials,
on every database; and SearchService.progress answering should_stop over a real repository."""

from __future__ import annotations

import math

import pytest

from morphnas.core.errors import InvalidArgumentError, NotFoundError
from morphnas.core.records import RunState, TrainingBudget, TrialState
from morphnas.search.stopping import StoppingRule
from morphnas.server.service import SearchService, ServiceLimits
from morphnas.server.service import suggest_trials as suggest
from morphnas.storage import Repository
from tests.storage.conftest import make_config
from tests.storage.test_repository_contract import Proposer

COMPLETED = TrialState.COMPLETED


# ---------------------------------------------------------------------- budgets
def test_a_run_stores_its_budget_and_the_seconds_charged(repo: Repository) -> None:
    search = repo.create_search(make_config())
    run = repo.create_training_run(
        search.id, dataset="digits", trials=10_000, budget=TrainingBudget(), budget_seconds=10.0
    )
    assert run.budget_seconds == 10.0 and run.spent_seconds == 0.0
    # Its run_started event is written with it, so no worker's event can come first.
    [started] = repo.list_events(search.id)
    assert started.kind == "run_started" and started.payload == {
        "run_id": run.id,
        "dataset": "digits",
        "trials": 10_000,
        "budget_seconds": 10.0,
    }
    assert run.seconds_left == 10.0 and not run.budget_spent
    assert repo.charge_training_run(run.id, 2.5).spent_seconds == 2.5
    assert repo.charge_training_run(run.id, 0.0).spent_seconds == 2.5
    again = repo.get_training_run(run.id)
    assert again.spent_seconds == 2.5 and again.budget_seconds == 10.0
    assert repo.latest_training_run(search.id) == again
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(InvalidArgumentError):
            repo.charge_training_run(run.id, bad)
    with pytest.raises(NotFoundError):
        repo.charge_training_run("f" * 32, 1.0)


def test_without_a_budget_the_trial_count_alone_gates_claims(repo: Repository) -> None:
    search = repo.create_search(make_config())
    run = repo.create_training_run(search.id, dataset="digits", trials=1, budget=TrainingBudget())
    assert run.budget_seconds == 0.0 and run.seconds_left is None
    repo.charge_training_run(run.id, 1e6)
    assert not repo.get_training_run(run.id).budget_spent
    assert repo.claim_training_slot() is not None
    assert repo.claim_training_slot() is None


def test_a_spent_budget_frees_no_slot_and_is_handed_out_to_be_closed(repo: Repository) -> None:
    search = repo.create_search(make_config())
    run = repo.create_training_run(
        search.id, dataset="digits", trials=10_000, budget=TrainingBudget(), budget_seconds=10.0
    )
    claimed = repo.claim_training_slot()
    assert claimed is not None and claimed.id == run.id and claimed.claimed == 1
    (trial,) = suggest(repo, search.id, "w", 1, Proposer())
    assert repo.charge_training_run(run.id, 6.0).seconds_left == 4.0
    assert repo.claim_training_slot().claimed == 2  # type: ignore[union-attr]  # 4 s left
    assert repo.charge_training_run(run.id, 4.5).budget_spent
    assert repo.claim_training_slot() is None  # spent, and a trial is still training
    repo.report(trial.id, state=COMPLETED, score=0.5)
    handed = repo.claim_training_slot()  # nothing ACTIVE: handed out to be closed
    assert handed is not None and handed.budget_spent and handed.claimed == 2
    assert repo.finish_training_run(
        run.id, state=RunState.DONE, best_trial_id=trial.id, test_accuracy=None
    )
    assert repo.claim_training_slot() is None


# ---------------------------------------------------------------------- learning curves
def _completed_with_curve(
    repo: Repository, search_id: str, values: list[float], parent_id: str | None = None
) -> str:
    (trial,) = suggest(repo, search_id, "done", 1, Proposer(parent_id))
    for step, value in enumerate(values, start=1):
        repo.add_measurement(trial.id, step, value, "val_accuracy")
    repo.report(trial.id, state=COMPLETED, score=max(values))
    return trial.id


def test_learning_curves_of_a_trial_and_its_completed_peers(repo: Repository) -> None:
    search = repo.create_search(make_config())
    other = repo.create_search(make_config(name="other"))
    seed = _completed_with_curve(repo, search.id, [0.5, 0.7, 0.8])
    peer = _completed_with_curve(repo, search.id, [0.6], parent_id=seed)
    _completed_with_curve(repo, other.id, [0.9, 0.9])  # another search
    (failed, active, child) = suggest(repo, search.id, "open", 3, Proposer(seed))
    repo.add_measurement(failed.id, 1, 0.99, "val_accuracy")
    repo.report(failed.id, state=TrialState.FAILED, score=None, reason="x")
    repo.add_measurement(active.id, 1, 0.98, "val_accuracy")  # still training: not a peer
    repo.add_measurement(child.id, 1, 0.1, "val_accuracy")
    repo.add_measurement(child.id, 2, 0.2, "val_accuracy")
    repo.add_measurement(child.id, 1, 5.0, "loss")  # another name
    assert repo.learning_curves(child.id, "val_accuracy", 2) == {
        seed: [(1, 0.5), (2, 0.7)],
        peer: [(1, 0.6)],
        child.id: [(1, 0.1), (2, 0.2)],
    }
    assert repo.learning_curves(child.id, "val_accuracy", 0) == {}
    assert repo.learning_curves(child.id, "loss", 9) == {child.id: [(1, 5.0)]}


def test_progress_answers_should_stop_for_a_clearly_bad_child(repo: Repository) -> None:
    service = SearchService(repo)
    search = repo.create_search(make_config())
    seed = _completed_with_curve(repo, search.id, [0.50, 0.70, 0.80, 0.85])
    for values in ([0.80, 0.85, 0.88], [0.82, 0.86, 0.90], [0.70, 0.80, 0.84]):
        _completed_with_curve(repo, search.id, values, parent_id=seed)
    (bad, good, late) = suggest(repo, search.id, "open", 3, Proposer(seed))
    answers = [service.progress(bad.id, s, 0.2, "val_accuracy")[1] for s in (1, 2, 3)]
    assert answers == [False, False, True]  # warm-up of 3 epochs, then clearly below
    assert repo.get_trial(bad.id).state is TrialState.ACTIVE  # told, not stopped by the server
    assert [service.progress(good.id, s, 0.86, "val_accuracy")[1] for s in (1, 2, 3)] == [False] * 3
    assert service.progress(late.id, 3, 0.2, "objective")[1] is False  # no peers for this name

    (seed2,) = suggest(repo, search.id, "seed", 1, Proposer(None))  # a seed is never stopped
    assert service.progress(seed2.id, 5, 0.0, "val_accuracy")[1] is False

    quiet = SearchService(repo, ServiceLimits(early_stopping=None))
    assert quiet.progress(late.id, 4, 0.2, "val_accuracy")[1] is False
    strict = SearchService(repo, ServiceLimits(early_stopping=StoppingRule(warmup_steps=5)))
    assert strict.progress(late.id, 4, 0.2, "val_accuracy")[1] is False
    assert strict.progress(late.id, 5, 0.2, "val_accuracy")[1] is True
