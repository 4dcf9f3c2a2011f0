"""The training job queue's contract, run on every database (SQLite and PostgreSQL).

A worker claims a *slot* of a running run (``claim_training_slot``: PostgreSQL ``FOR UPDATE
SKIP LOCKED``, SQLite the IMMEDIATE write lock), then asks the search for a trial. See
:mod:`morphnas.storage.training`. Time is passed explicitly (``now=``), so leases expire without
sleeping.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from morphnas.core.errors import FailedPreconditionError
from morphnas.core.records import RunState, TrainingBudget, TrainingRun, Trial, TrialState
from morphnas.server.service import suggest_trials as suggest
from morphnas.storage import Repository
from tests.storage.conftest import make_config
from tests.storage.test_repository_contract import Proposer

T0 = 1_000_000.0  # the clock of these tests (seconds)
LEASE = 10.0
BUDGET = TrainingBudget(epochs=2, max_seconds=30.0, device="cpu")


def _run(repo: Repository, trials: int, *, at: float = T0, name: str = "queue") -> TrainingRun:
    search = repo.create_search(make_config(name=name, lease_seconds=LEASE))
    return repo.create_training_run(
        search.id, dataset="digits", trials=trials, budget=BUDGET, now=at
    )


def _hand_out(repo: Repository, search_id: str, worker: str, n: int = 1, at: float = T0):
    """What a worker does after a claim: ask the search for trials (the only call of suggest
    here, so a change of its signature is made in one place)."""
    return suggest(repo, search_id, worker, n, Proposer(), lease_seconds=LEASE, now=at)


def _claim(repo: Repository, at: float = T0) -> TrainingRun | None:
    return repo.claim_training_slot(now=at)


# ---------------------------------------------------------------------- claiming
def test_claims_take_the_oldest_running_run_first_one_slot_at_a_time(repo: Repository) -> None:
    later = _run(repo, 1, at=T0 + 5, name="later")
    first = _run(repo, 2, at=T0, name="first")
    claims = [_claim(repo) for _ in range(4)]
    assert [(c.id, c.claimed) if c else None for c in claims] == [
        (first.id, 1),
        (first.id, 2),
        (later.id, 1),
        None,
    ]
    assert repo.get_training_run(first.id).claimed == 2
    assert repo.get_training_run(later.id).claimed == 1


def test_runs_that_are_not_running_are_never_claimed(repo: Repository) -> None:
    done = _run(repo, 3, name="done")
    stopped = _run(repo, 3, at=T0 + 1, name="stopped")
    assert repo.finish_training_run(
        done.id, state=RunState.DONE, best_trial_id=None, test_accuracy=None, now=T0
    )
    assert repo.stop_training(stopped.search_id, now=T0) == 1
    assert _claim(repo, T0 + 2) is None
    assert repo.get_training_run(done.id).claimed == 0


@pytest.mark.parametrize("claimers", [8])
def test_concurrent_claimers_never_get_the_same_slot(
    db_url: str, repo: Repository, claimers: int
) -> None:
    """Workers with their own connections claim at once: every slot goes to exactly one."""
    runs = [_run(repo, 10, at=T0 + i, name=f"run{i}") for i in range(2)]
    got: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(claimers)
    errors: list[BaseException] = []

    def claimer() -> None:
        own = Repository.from_url(db_url, create=False)  # a worker: its own pool
        try:
            start.wait()
            for _ in range(6):  # 8 x 6 attempts for 20 slots: some find none (or skip a lock)
                run = _claim(own)
                if run is not None:
                    with lock:
                        got.append((run.id, run.claimed))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            own.close()

    threads = [threading.Thread(target=claimer) for _ in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    # SKIP LOCKED lets a claimer pass a run another one holds, so slots may be left: drain them.
    while (run := _claim(repo)) is not None:
        got.append((run.id, run.claimed))
    assert len(got) == len(set(got)) == 20  # no slot twice, none lost
    for run in runs:
        assert sorted(n for rid, n in got if rid == run.id) == list(range(1, 11))
        assert repo.get_training_run(run.id).claimed == 10


# ---------------------------------------------------------------------- retries
def test_an_expired_lease_frees_a_slot_that_takes_no_new_claim(repo: Repository) -> None:
    run = _run(repo, 1)
    assert _claim(repo).claimed == 1
    [trial] = _hand_out(repo, run.search_id, "w1")
    assert _claim(repo, T0 + LEASE / 2) is None  # the trial is still ACTIVE and leased
    retry = _claim(repo, T0 + LEASE + 1)  # the claim itself expires the lease
    assert retry is not None and retry.id == run.id and retry.claimed == 1
    assert repo.get_trial(trial.id).state == TrialState.STALE
    [again] = _hand_out(repo, run.search_id, "w2", at=T0 + LEASE + 1)
    assert again.architecture == trial.architecture and again.id != trial.id
    assert _claim(repo, T0 + LEASE + 2) is None  # re-issued once: no slot left
    assert repo.get_training_run(run.id).claimed == 1


def test_a_released_trial_is_claimable_at_once(repo: Repository) -> None:
    run = _run(repo, 1)
    assert _claim(repo) is not None
    [trial] = _hand_out(repo, run.search_id, "w1")
    repo.release_trial(trial.id, now=T0 + 1)  # a worker shutting down
    assert repo.get_trial(trial.id).state == TrialState.STALE
    retry = _claim(repo, T0 + 1)
    assert retry is not None and retry.claimed == 1


def test_releasing_a_finished_trial_changes_nothing(repo: Repository) -> None:
    run = _run(repo, 1)
    assert _claim(repo) is not None
    [trial] = _hand_out(repo, run.search_id, "w1")
    repo.report(trial.id, state=TrialState.COMPLETED, score=0.5, now=T0 + 1)
    repo.release_trial(trial.id, now=T0 + 2)
    assert repo.get_trial(trial.id).state == TrialState.COMPLETED
    assert _claim(repo, T0 + 2) is None


# ---------------------------------------------------------------------- stopping and finishing
def test_stop_training_stops_the_running_run_once(repo: Repository) -> None:
    run = _run(repo, 5)
    assert _claim(repo) is not None
    assert repo.stop_training(run.search_id, now=T0 + 3) == 1
    stopped = repo.get_training_run(run.id)
    assert stopped.state == RunState.STOPPED and stopped.finished_at == T0 + 3
    assert _claim(repo, T0 + 4) is None
    assert repo.stop_training(run.search_id, now=T0 + 5) == 0  # nothing running any more
    assert repo.get_training_run(run.id).finished_at == T0 + 3
    # A stopped run no longer blocks a new one on the search.
    again = repo.create_training_run(
        run.search_id, dataset="digits", trials=1, budget=BUDGET, now=T0 + 6
    )
    assert _claim(repo, T0 + 7).id == again.id


def test_one_running_run_per_search(repo: Repository) -> None:
    run = _run(repo, 2)
    with pytest.raises(FailedPreconditionError, match="already has a running training run"):
        repo.create_training_run(run.search_id, dataset="digits", trials=1, budget=BUDGET)


def test_finish_training_run_is_idempotent_and_the_first_close_wins(repo: Repository) -> None:
    run = _run(repo, 1)
    assert _claim(repo) is not None
    [trial] = _hand_out(repo, run.search_id, "w1")
    repo.report(trial.id, state=TrialState.COMPLETED, score=0.75, now=T0 + 1)
    first = repo.finish_training_run(
        run.id, state=RunState.DONE, best_trial_id=trial.id, test_accuracy=0.7, now=T0 + 2
    )
    second = repo.finish_training_run(
        run.id, state=RunState.DONE, best_trial_id=None, test_accuracy=0.1, now=T0 + 3
    )
    assert (first, second) == (True, False)
    done = repo.get_training_run(run.id)
    assert (done.state, done.best_trial_id, done.test_accuracy, done.finished_at) == (
        RunState.DONE,
        trial.id,
        0.7,
        T0 + 2,
    )
    assert not repo.finish_training_run(
        run.id, state=RunState.STOPPED, best_trial_id=None, test_accuracy=None
    )


def test_two_workers_finishing_at_once_close_the_run_once(db_url: str, repo: Repository) -> None:
    run = _run(repo, 1)
    results: list[bool] = []
    start = threading.Barrier(4)

    def finisher(accuracy: float) -> None:
        own = Repository.from_url(db_url, create=False)
        try:
            start.wait()
            results.append(
                own.finish_training_run(
                    run.id, state=RunState.DONE, best_trial_id=None, test_accuracy=accuracy
                )
            )
        finally:
            own.close()

    threads = [threading.Thread(target=finisher, args=(i / 10,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False, False, False, True]


# ---------------------------------------------------------------------- counts
def test_run_counts_cover_the_runs_trials_only(repo: Repository) -> None:
    search = repo.create_search(make_config(lease_seconds=LEASE))
    [before] = _hand_out(repo, search.id, "early")  # an ask/tell trial before the run
    repo.report(before.id, state=TrialState.COMPLETED, score=0.1, now=T0)
    run = repo.create_training_run(search.id, dataset="digits", trials=4, budget=BUDGET, now=T0 + 1)
    assert run.first_number == 1
    assert repo.run_counts(run) == {}
    trials: list[Trial] = []
    for worker in ("w1", "w2", "w3", "w4"):
        assert _claim(repo, T0 + 2) is not None
        trials += _hand_out(repo, search.id, worker, at=T0 + 2)
    repo.report(trials[0].id, state=TrialState.COMPLETED, score=0.9, now=T0 + 3)
    repo.report(trials[1].id, state=TrialState.FAILED, score=None, reason="boom", now=T0 + 3)
    repo.report(trials[2].id, state=TrialState.INFEASIBLE, score=None, now=T0 + 3)
    assert repo.run_counts(run) == {
        TrialState.COMPLETED: 1,
        TrialState.FAILED: 1,
        TrialState.INFEASIBLE: 1,
        TrialState.ACTIVE: 1,
    }
    assert _claim(repo, T0 + 3 + LEASE) is not None  # the ACTIVE one expired: a retry slot
    assert Counter(repo.run_counts(run)) == Counter(
        {
            TrialState.COMPLETED: 1,
            TrialState.FAILED: 1,
            TrialState.INFEASIBLE: 1,
            TrialState.STALE: 1,
        }
    )


def test_a_stopped_search_gets_a_run_again_only_when_resumed(repo: Repository) -> None:
    run = _run(repo, 3)
    repo.stop_training(run.search_id, now=T0 + 1)
    repo.stop_search(run.search_id)
    with pytest.raises(FailedPreconditionError, match="is stopped"):
        repo.create_training_run(run.search_id, dataset="digits", trials=2, budget=BUDGET)
    assert _claim(repo, at=T0 + 2) is None  # a stopped search's run is never claimed
    resumed = repo.create_training_run(
        run.search_id, dataset="digits", trials=2, budget=BUDGET, resume=True, now=T0 + 3
    )
    assert not repo.get_search(run.search_id).stopped
    assert resumed.state is RunState.RUNNING and resumed.trials == 2
    claimed = _claim(repo, at=T0 + 4)
    assert claimed is not None and claimed.id == resumed.id
    started = [e for e in repo.list_events(run.search_id) if e.kind == "run_started"]
    assert [e.payload.get("resumed", False) for e in started] == [False, True]
