"""The repository contract, run on every database (SQLite and PostgreSQL).

Time is passed explicitly (``now=``) wherever leases matter, so expiry is tested without sleeping.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence

import pytest

from morphnas.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from morphnas.core.records import NewTrial, Policy, SearchSnapshot, Trial, TrialState
from morphnas.server.service import suggest_trials as suggest
from morphnas.storage import Repository
from tests.storage.conftest import make_config

COMPLETED, FAILED, STALE, ACTIVE = (
    TrialState.COMPLETED,
    TrialState.FAILED,
    TrialState.STALE,
    TrialState.ACTIVE,
)


class Proposer:
    """A stand-in policy: numbered architectures; remembers what it was shown."""

    def __init__(self, parent_id: str | None = None) -> None:
        self.calls: list[tuple[SearchSnapshot, int]] = []
        self.parent_id = parent_id
        self.lock = threading.Lock()

    def __call__(self, snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
        with self.lock:
            self.calls.append((snapshot, n))
            made = len(self.calls)
        return [
            NewTrial(
                architecture=f'{{"arch": "{made}-{i}"}}',
                arch_hash=f"hash-{made}-{i}",
                parent_id=self.parent_id,
                operations=({"op": "widen", "layer": "dense1", "units": 2 * i + 2},),
                initial_weights=f"weights-{made}-{i}".encode(),
            )
            for i in range(n)
        ]


def _numbers(trials: Sequence[Trial]) -> list[int]:
    return [t.number for t in trials]


# ---------------------------------------------------------------------- searches
def test_create_and_get_a_search(repo: Repository) -> None:
    config = make_config(input_shape=(3, 8, 8), policy=Policy.RANDOM, max_params=1234, seed=7)
    created = repo.create_search(config)
    assert len(created.id) == 32 and int(created.id, 16) >= 0
    fetched = repo.get_search(created.id)
    assert fetched == created
    assert fetched.config == config and fetched.config.input_shape == (3, 8, 8)
    assert fetched.size_cap_params == 1234 and fetched.trial_count == 0 and not fetched.stopped


def test_unknown_ids_are_not_found(repo: Repository) -> None:
    with pytest.raises(NotFoundError, match="no search 'abc'"):
        repo.get_search("abc")
    with pytest.raises(NotFoundError, match="no trial 'abc'"):
        repo.get_trial("abc")
    with pytest.raises(NotFoundError):
        repo.delete_search("abc")
    with pytest.raises(NotFoundError):
        suggest(repo, "abc", "w", 1, Proposer())
    with pytest.raises(NotFoundError):
        repo.heartbeat("abc")
    with pytest.raises(NotFoundError):
        repo.load_weights("abc", "initial")
    with pytest.raises(NotFoundError):
        repo.list_trials("abc")


def test_list_searches_pages_in_creation_order(repo: Repository) -> None:
    times = [100.0, 100.0, 100.0, 200.5, 300.25]  # ties are broken by id
    made = [repo.create_search(make_config(name=f"s{i}"), now=t) for i, t in enumerate(times)]
    expected = sorted(made, key=lambda s: (s.created_at, s.id))
    seen, token, pages = [], "", 0
    while True:
        page, token = repo.list_searches(page_size=2, page_token=token)
        seen += page
        pages += 1
        if not token:
            break
    assert seen == expected and pages == 3
    with pytest.raises(InvalidArgumentError, match="page_token"):
        repo.list_searches(page_token="not a token")


def test_delete_search_removes_trials_weights_and_measurements(repo: Repository) -> None:
    search = repo.create_search(make_config())
    other = repo.create_search(make_config(name="other"))
    (trial,) = suggest(repo, search.id, "w", 1, Proposer())
    (kept,) = suggest(repo, other.id, "w", 1, Proposer())
    repo.add_measurement(trial.id, 0, 0.5)
    repo.report(trial.id, state=COMPLETED, score=0.5, weights=b"trained")
    repo.delete_search(search.id)
    with pytest.raises(NotFoundError):
        repo.get_search(search.id)
    with pytest.raises(NotFoundError):
        repo.get_trial(trial.id)
    with pytest.raises(NotFoundError):
        repo.load_weights(trial.id, "trained")
    assert repo.get_trial(kept.id) == kept
    assert repo.load_weights(kept.id, "initial") == b"weights-1-0"
    with pytest.raises(NotFoundError):
        repo.delete_search(search.id)


def test_stop_search_and_lower_size_cap_persist(repo: Repository) -> None:
    search = repo.create_search(make_config(max_params=1000))
    assert repo.lower_size_cap(search.id, 600).size_cap_params == 600
    assert repo.lower_size_cap(search.id, 900).size_cap_params == 600  # never raised
    assert repo.get_search(search.id).size_cap_params == 600
    with pytest.raises(InvalidArgumentError):
        repo.lower_size_cap(search.id, 0)
    assert repo.stop_search(search.id).stopped
    assert repo.get_search(search.id).stopped
    with pytest.raises(FailedPreconditionError, match="stopped"):
        suggest(repo, search.id, "w", 1, Proposer())


# ---------------------------------------------------------------------- suggest
def test_suggest_numbers_trials_gaplessly(repo: Repository) -> None:
    search = repo.create_search(make_config())
    propose = Proposer()
    got = suggest(repo, search.id, "a", 3, propose)
    got += suggest(repo, search.id, "b", 2, propose)
    got += suggest(repo, search.id, "", 1, propose)
    assert _numbers(got) == [0, 1, 2, 3, 4, 5]
    assert all(t.state is ACTIVE for t in got)
    assert repo.get_search(search.id).trial_count == 6
    assert repo.count_trials(search.id) == 6
    stored = repo.get_trial(got[0].id)
    assert stored == got[0]
    assert stored.worker_id == "a" and stored.operations == (
        {"op": "widen", "layer": "dense1", "units": 2},
    )
    assert repo.load_weights(got[0].id, "initial") == b"weights-1-0"
    assert repo.load_weights(got[0].id, "trained") is None
    # The policy saw every earlier trial, without blobs.
    snapshot, n = propose.calls[-1]
    assert n == 1 and [o.number for o in snapshot.observations] == [0, 1, 2, 3, 4]
    assert len(snapshot.pending) == 5 and snapshot.search.trial_count == 5


def test_suggest_is_idempotent_per_worker(repo: Repository) -> None:
    search = repo.create_search(make_config())
    propose = Proposer()
    first = suggest(repo, search.id, "w1", 2, propose, now=1000.0)
    again = suggest(repo, search.id, "w1", 2, propose, now=1001.0)
    assert again == first and len(propose.calls) == 1
    assert _numbers(suggest(repo, search.id, "w2", 1, propose, now=1001.0)) == [2]
    # Anonymous workers always get new trials.
    assert _numbers(suggest(repo, search.id, "", 1, propose, now=1001.0)) == [3]
    assert _numbers(suggest(repo, search.id, "", 1, propose, now=1001.0)) == [4]
    # Once w1's trials are final, it gets new ones.
    for t in first:
        repo.report(t.id, state=COMPLETED, score=0.1)
    assert _numbers(suggest(repo, search.id, "w1", 1, propose, now=1002.0)) == [5]


def test_expired_lease_goes_stale_and_is_reissued_exactly_once(repo: Repository) -> None:
    search = repo.create_search(make_config(lease_seconds=60.0))
    propose = Proposer()
    (parent,) = suggest(repo, search.id, "p", 1, propose, now=0.0)
    repo.report(parent.id, state=COMPLETED, score=0.5)
    child_policy = Proposer(parent_id=parent.id)
    (lost,) = suggest(repo, search.id, "w1", 1, child_policy, now=10.0)
    assert lost.lease_expires_at == 70.0

    # Before expiry: nothing is reissued.
    (fresh,) = suggest(repo, search.id, "w2", 1, propose, now=69.0)
    assert fresh.number == 2
    repo.report(fresh.id, state=COMPLETED, score=0.3)

    # After expiry: the next suggest marks it STALE and hands out the same architecture again.
    (copy,) = suggest(repo, search.id, "w3", 1, propose, now=71.0)
    assert repo.get_trial(lost.id).state is STALE
    assert copy.number == 3 and copy.id != lost.id and copy.worker_id == "w3"
    assert (copy.architecture, copy.arch_hash, copy.parent_id, copy.operations) == (
        lost.architecture,
        lost.arch_hash,
        parent.id,
        lost.operations,
    )
    assert repo.load_weights(copy.id, "initial") == repo.load_weights(lost.id, "initial")
    assert len(propose.calls) == 2  # the copy did not ask the policy

    # It is not handed out a second time.
    (next_one,) = suggest(repo, search.id, "w4", 1, propose, now=72.0)
    assert next_one.architecture != lost.architecture and len(propose.calls) == 3
    assert repo.count_trials(search.id, [STALE]) == 1


def test_idempotent_suggest_respects_expiry(repo: Repository) -> None:
    search = repo.create_search(make_config(lease_seconds=10.0))
    propose = Proposer()
    (first,) = suggest(repo, search.id, "w", 1, propose, now=0.0)
    (renewed,) = suggest(repo, search.id, "w", 1, propose, now=5.0)
    assert renewed == first
    # After expiry the same worker gets the reissued copy, not its expired trial.
    (copy,) = suggest(repo, search.id, "w", 1, propose, now=11.0)
    assert copy.id != first.id and copy.architecture == first.architecture


def test_expire_leases_sweeps_every_search(repo: Repository) -> None:
    a = repo.create_search(make_config(lease_seconds=10.0))
    b = repo.create_search(make_config(lease_seconds=100.0))
    suggest(repo, a.id, "w", 2, Proposer(), now=0.0)
    suggest(repo, b.id, "w", 1, Proposer(), now=0.0)
    assert repo.expire_leases(now=50.0) == 2
    assert repo.expire_leases(now=50.0) == 0
    assert repo.count_trials(a.id, [STALE]) == 2 and repo.count_trials(b.id, [ACTIVE]) == 1
    assert repo.expire_leases(200.0) == 1


def test_suggest_respects_max_trials(repo: Repository) -> None:
    search = repo.create_search(make_config(max_trials=3))
    assert _numbers(suggest(repo, search.id, "", 2, Proposer())) == [0, 1]
    assert _numbers(suggest(repo, search.id, "", 5, Proposer())) == [2]  # cut to what is left
    with pytest.raises(ResourceExhaustedError, match="3 trials"):
        suggest(repo, search.id, "", 1, Proposer())
    # At the limit, a worker asking again still gets what it holds.
    full = repo.create_search(make_config(max_trials=1))
    held = suggest(repo, full.id, "w", 1, Proposer())
    assert suggest(repo, full.id, "w", 1, Proposer()) == held


def test_a_failing_policy_stores_nothing(repo: Repository) -> None:
    search = repo.create_search(make_config())
    with pytest.raises(InvalidArgumentError, match="not a trial of search"):
        suggest(repo, search.id, "w", 1, Proposer(parent_id="f" * 32))

    def broken(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
        raise InvalidArgumentError("no idea")

    with pytest.raises(InvalidArgumentError, match="no idea"):
        suggest(repo, search.id, "w", 1, broken)
    assert repo.count_trials(search.id) == 0
    assert _numbers(suggest(repo, search.id, "w", 1, Proposer())) == [0]


def test_a_policy_may_read_the_repository(repo: Repository) -> None:
    search = repo.create_search(make_config())
    (parent,) = suggest(repo, search.id, "", 1, Proposer())
    repo.report(parent.id, state=COMPLETED, score=0.9, weights=b"trained!")
    seen: list[bytes | None] = []
    inner = Proposer(parent_id=parent.id)

    def reading(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
        seen.append(repo.load_weights(parent.id, "trained"))
        return inner(snapshot, n)

    (child,) = suggest(repo, search.id, "", 1, reading)
    assert seen == [b"trained!"] and child.parent_id == parent.id


def test_bad_suggest_arguments(repo: Repository) -> None:
    search = repo.create_search(make_config())
    with pytest.raises(InvalidArgumentError):
        suggest(repo, search.id, "w", 0, Proposer())
    with pytest.raises(InvalidArgumentError):
        suggest(repo, search.id, "w", 1, Proposer(), lease_seconds=-1.0)


# ---------------------------------------------------------------------- report
def test_report_rules(repo: Repository) -> None:
    search = repo.create_search(make_config())
    done, failed, other = suggest(repo, search.id, "w", 3, Proposer(), now=5.0)
    for bad in (math.nan, math.inf, None):
        with pytest.raises(InvalidArgumentError, match="finite score"):
            repo.report(done.id, state=COMPLETED, score=bad)
    with pytest.raises(InvalidArgumentError):
        repo.report(done.id, state=ACTIVE, score=0.1)
    with pytest.raises(NotFoundError, match="no trial"):
        repo.report("0" * 32, state=COMPLETED, score=0.1)

    trial, changed = repo.report(done.id, state=COMPLETED, score=0.75, weights=b"trained", now=20.0)
    assert changed and trial.state is COMPLETED and trial.score == 0.75
    assert trial.lease_expires_at is None and trial.updated_at == 20.0
    assert trial.has_trained_weights
    assert trial.weights_sha256 == hashlib.sha256(b"trained").hexdigest()
    assert repo.get_trial(done.id) == trial
    assert repo.load_weights(done.id, "trained") == b"trained"

    again, changed = repo.report(done.id, state=COMPLETED, score=0.75, weights=b"trained")
    assert again == trial and not changed
    with pytest.raises(FailedPreconditionError, match="already COMPLETED with score 0.75"):
        repo.report(done.id, state=COMPLETED, score=0.8, weights=b"trained")
    with pytest.raises(FailedPreconditionError):
        repo.report(done.id, state=COMPLETED, score=0.75, weights=b"other")
    with pytest.raises(FailedPreconditionError):
        repo.report(done.id, state=FAILED, score=None)

    lost, changed = repo.report(failed.id, state=FAILED, score=None, reason="CUDA out of memory")
    assert changed and lost.state is FAILED and lost.score is None
    assert lost.reason == "CUDA out of memory" and not lost.has_trained_weights
    assert not repo.report(failed.id, state=FAILED, score=None, reason="CUDA out of memory")[1]
    with pytest.raises(FailedPreconditionError, match="already FAILED"):
        repo.report(failed.id, state=FAILED, score=None, reason="something else")

    with pytest.raises(FailedPreconditionError, match="leased to worker 'w'"):
        repo.report(other.id, state=COMPLETED, score=0.1, worker_id="intruder")
    assert repo.report(other.id, state=TrialState.INFEASIBLE, score=None, worker_id="w")[1]


def test_a_late_report_on_a_stale_trial_counts_and_its_copy_yields(repo: Repository) -> None:
    """A proposal has one result, the first to arrive: a late report is kept and closes the
    copy handed out in its place (the copy's worker is then told its trial is over)."""
    search = repo.create_search(make_config(lease_seconds=10.0))
    propose = Proposer()
    (late,) = suggest(repo, search.id, "slow", 1, propose, now=0.0)
    (copy,) = suggest(repo, search.id, "fast", 1, propose, now=20.0)
    assert repo.get_trial(late.id).state is STALE and copy.architecture == late.architecture
    trial, changed = repo.report(late.id, state=COMPLETED, score=0.4, worker_id="slow", now=21.0)
    assert changed and trial.state is COMPLETED and trial.score == 0.4
    # The retry of a lost reply is a no-op; the copy is closed, not counted.
    assert not repo.report(late.id, state=COMPLETED, score=0.4, worker_id="slow", now=22.0)[1]
    closed = repo.get_trial(copy.id)
    assert closed.state is FAILED and closed.score is None
    assert closed.reason.startswith(f"superseded: trial {late.number}")
    assert repo.count_trials(search.id, [COMPLETED]) == 1
    with pytest.raises(FailedPreconditionError, match="already FAILED"):
        repo.report(copy.id, state=COMPLETED, score=0.5, worker_id="fast", now=23.0)
    assert repo.add_measurement(copy.id, 0, 0.5, now=23.0)[1]  # should_stop
    # Nothing is handed out again: the architecture has its result.
    (fresh,) = suggest(repo, search.id, "fast", 1, propose, now=24.0)
    assert fresh.architecture != late.architecture


def test_a_late_report_after_its_copy_reported_is_refused(repo: Repository) -> None:
    search = repo.create_search(make_config(lease_seconds=10.0))
    propose = Proposer()
    (late,) = suggest(repo, search.id, "slow", 1, propose, now=0.0)
    (copy,) = suggest(repo, search.id, "fast", 1, propose, now=20.0)
    repo.report(copy.id, state=COMPLETED, score=0.7, worker_id="fast", now=21.0)
    with pytest.raises(
        FailedPreconditionError, match=f"as trial {copy.number} .its lease ran out., which reported"
    ):
        repo.report(late.id, state=COMPLETED, score=0.4, worker_id="slow", now=22.0)
    assert repo.get_trial(late.id).state is STALE  # rolled back: nothing counted twice
    assert repo.get_trial(copy.id).score == 0.7
    assert repo.count_trials(search.id, [COMPLETED]) == 1


def test_a_late_report_closes_a_chain_of_copies(repo: Repository) -> None:
    """A copy whose lease ran out too was handed out again: the late report closes both."""
    search = repo.create_search(make_config(lease_seconds=10.0))
    propose = Proposer()
    (late,) = suggest(repo, search.id, "a", 1, propose, now=0.0)
    (copy,) = suggest(repo, search.id, "b", 1, propose, now=20.0)
    (copy_of_copy,) = suggest(repo, search.id, "c", 1, propose, now=40.0)
    assert copy_of_copy.architecture == late.architecture
    assert repo.report(late.id, state=COMPLETED, score=0.4, now=41.0)[1]
    assert repo.get_trial(copy.id).state is FAILED  # was STALE
    assert repo.get_trial(copy_of_copy.id).state is FAILED  # was ACTIVE
    assert repo.count_trials(search.id, [ACTIVE, STALE]) == 0


def test_a_stale_trial_reported_before_reissue_is_not_reissued(repo: Repository) -> None:
    search = repo.create_search(make_config(lease_seconds=10.0))
    propose = Proposer()
    (late,) = suggest(repo, search.id, "slow", 1, propose, now=0.0)
    assert repo.expire_leases(now=20.0) == 1
    repo.report(late.id, state=COMPLETED, score=0.4, now=21.0)
    (fresh,) = suggest(repo, search.id, "other", 1, propose, now=22.0)
    assert fresh.architecture != late.architecture


def test_staged_weights(repo: Repository) -> None:
    search = repo.create_search(make_config())
    (trial,) = suggest(repo, search.id, "w", 1, Proposer())
    blob = b"uploaded weights"
    sha = hashlib.sha256(blob).hexdigest()
    assert repo.load_staged_weights(trial.id, sha) is None
    repo.stage_weights(trial.id, sha, blob)
    repo.stage_weights(trial.id, sha, blob)  # idempotent
    assert repo.load_staged_weights(trial.id, sha) == blob
    with pytest.raises(InvalidArgumentError):
        repo.stage_weights(trial.id, "0" * 64, blob)
    with pytest.raises(NotFoundError):
        repo.stage_weights("f" * 32, sha, blob)
    repo.report(trial.id, state=COMPLETED, score=0.5, weights=blob)
    assert repo.load_weights(trial.id, "trained") == blob
    assert repo.load_staged_weights(trial.id, sha) is None  # consumed by the report


def test_uploads_a_report_did_not_use_are_dropped_by_the_sweep(repo: Repository) -> None:
    search = repo.create_search(make_config())
    running, failed = suggest(repo, search.id, "w", 2, Proposer())
    blob = b"uploaded, then the trial failed"
    sha = hashlib.sha256(blob).hexdigest()
    for trial in (running, failed):
        repo.stage_weights(trial.id, sha, blob)
    repo.report(failed.id, state=FAILED, score=None, reason="diverged")
    assert repo.load_staged_weights(failed.id, sha) == blob  # the report did not name it
    assert repo.drop_spent_staged_weights() == 1
    assert repo.load_staged_weights(failed.id, sha) is None
    assert repo.load_staged_weights(running.id, sha) == blob  # still ACTIVE: kept
    assert repo.drop_spent_staged_weights() == 0


# ---------------------------------------------------------------------- leases, measurements
def test_heartbeat_renews_an_active_lease(repo: Repository) -> None:
    search = repo.create_search(make_config(lease_seconds=30.0))
    (trial,) = suggest(repo, search.id, "w", 1, Proposer(), now=0.0)
    assert repo.heartbeat(trial.id, now=25.0).lease_expires_at == 55.0
    assert repo.get_trial(trial.id).lease_expires_at == 55.0
    assert repo.expire_leases(now=40.0) == 0
    repo.report(trial.id, state=COMPLETED, score=1.0)
    with pytest.raises(FailedPreconditionError, match="COMPLETED"):
        repo.heartbeat(trial.id, now=41.0)


def test_measurements_and_should_stop(repo: Repository) -> None:
    search = repo.create_search(make_config(lease_seconds=30.0))
    (trial, other) = suggest(repo, search.id, "w", 2, Proposer(), now=0.0)
    renewed, stop = repo.add_measurement(trial.id, 0, 0.25, now=10.0)
    assert not stop and renewed.lease_expires_at == 40.0
    assert repo.add_measurement(trial.id, 1, 0.5, now=11.0)[1] is False
    assert repo.add_measurement(trial.id, 1, 0.5, now=12.0)[1] is False  # repeat is fine
    repo.add_measurement(trial.id, 0, 1.5, name="loss", now=12.0)
    with pytest.raises(AlreadyExistsError, match="step 1"):
        repo.add_measurement(trial.id, 1, 0.6)
    with pytest.raises(InvalidArgumentError):
        repo.add_measurement(trial.id, 2, math.nan)
    with pytest.raises(InvalidArgumentError):
        repo.add_measurement(trial.id, -1, 0.1)
    with pytest.raises(NotFoundError):
        repo.add_measurement("f" * 32, 0, 0.1)
    listed = repo.list_measurements(trial.id)
    assert [(m.name, m.step, m.value) for m in listed] == [
        ("loss", 0, 1.5),
        ("objective", 0, 0.25),
        ("objective", 1, 0.5),
    ]
    assert listed[1].created_at == 10.0 and listed[1].trial_id == trial.id

    repo.report(trial.id, state=COMPLETED, score=0.5)
    assert repo.add_measurement(trial.id, 2, 0.6)[1] is True  # no longer active
    assert repo.add_measurement(other.id, 0, 0.1, now=13.0)[1] is False
    repo.stop_search(search.id)
    assert repo.add_measurement(other.id, 1, 0.2, now=14.0)[1] is True  # search stopped


# ---------------------------------------------------------------------- listing
def test_list_trials_filters_and_pages(repo: Repository) -> None:
    search = repo.create_search(make_config())
    made = suggest(repo, search.id, "", 7, Proposer())
    for t in made[::2]:
        repo.report(t.id, state=COMPLETED, score=float(t.number))
    page, token = repo.list_trials(search.id, page_size=3)
    assert _numbers(page) == [0, 1, 2] and token
    page, token = repo.list_trials(search.id, page_size=3, page_token=token)
    assert _numbers(page) == [3, 4, 5] and token
    page, token = repo.list_trials(search.id, page_size=3, page_token=token)
    assert _numbers(page) == [6] and token == ""
    done, _ = repo.list_trials(search.id, states=[COMPLETED])
    assert _numbers(done) == [0, 2, 4, 6]
    newer, _ = repo.list_trials(search.id, states=[COMPLETED, ACTIVE], newer_than=3)
    assert _numbers(newer) == [4, 5, 6]
    assert repo.count_trials(search.id, [ACTIVE]) == 3
    assert repo.count_trials(search.id) == 7


def test_ping(repo: Repository) -> None:
    repo.ping()


# ---------------------------------------------------------------------- concurrency
THREADS, CYCLES = 8, 25


def test_concurrent_suggest_and_report_keep_numbers_gapless(db_url: str) -> None:
    """8 threads × 25 suggest+report cycles on one search, over one shared repository."""
    repo = Repository.from_url(db_url)
    try:
        search = repo.create_search(make_config())
        propose = Proposer()
        reported: list[str] = []
        errors: list[BaseException] = []
        guard = threading.Lock()

        def worker(index: int) -> None:
            try:
                for cycle in range(CYCLES):
                    (trial,) = suggest(repo, search.id, f"worker-{index}", 1, propose)
                    _, changed = repo.report(
                        trial.id,
                        state=COMPLETED,
                        score=index + cycle / 100,
                        worker_id=f"worker-{index}",
                    )
                    assert changed
                    with guard:
                        reported.append(trial.id)
            except BaseException as error:  # noqa: BLE001 - surfaced below
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        total = THREADS * CYCLES
        trials, _ = repo.list_trials(search.id, page_size=1000)
        assert _numbers(trials) == list(range(total))
        assert len(set(reported)) == total
        assert all(t.state is COMPLETED for t in trials)
        assert repo.get_search(search.id).trial_count == total
        assert repo.count_trials(search.id, [COMPLETED]) == total
    finally:
        repo.close()


def test_concurrent_repositories_on_one_database(db_url: str) -> None:
    """Like separate server replicas: each thread opens its own repository (own engine)."""
    setup = Repository.from_url(db_url)
    search = setup.create_search(make_config())
    repos = [Repository.from_url(db_url, create=False) for _ in range(4)]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        repo = repos[index]
        try:
            for _ in range(10):
                for trial in suggest(repo, search.id, "", 2, Proposer()):
                    assert repo.report(trial.id, state=COMPLETED, score=0.5)[1]
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(repos))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        trials, _ = setup.list_trials(search.id, page_size=1000)
        assert _numbers(trials) == list(range(80))
        assert setup.count_trials(search.id, [COMPLETED]) == 80
    finally:
        for repo in [setup, *repos]:
            repo.close()


def test_snapshots_follow_every_state_change(repo: Repository) -> None:
    """The policy's view stays exact across reports, expiry and late reports (cache included)."""
    search = repo.create_search(make_config(lease_seconds=10.0))
    propose = Proposer()
    a, b, c = suggest(repo, search.id, "", 3, propose, now=0.0)
    repo.report(a.id, state=COMPLETED, score=0.9, now=1.0)
    repo.report(b.id, state=FAILED, score=None, reason="oom", now=1.0)
    suggest(repo, search.id, "", 1, propose, now=2.0)  # d; c is still ACTIVE
    seen = {o.number: (o.state, o.score) for o in propose.calls[-1][0].observations}
    assert seen == {0: (COMPLETED, 0.9), 1: (FAILED, None), 2: (ACTIVE, None)}

    suggest(repo, search.id, "", 2, propose, now=30.0)  # c and d expire: both copies, no policy
    assert len(propose.calls) == 2
    repo.report(c.id, state=COMPLETED, score=0.1, now=31.0)  # late report on a STALE trial
    suggest(repo, search.id, "", 1, propose, now=32.0)
    seen = {o.number: (o.state, o.score) for o in propose.calls[-1][0].observations}
    assert seen == {
        0: (COMPLETED, 0.9),
        1: (FAILED, None),
        2: (COMPLETED, 0.1),
        3: (STALE, None),
        4: (FAILED, None),  # c's copy, closed by c's late report
        5: (ACTIVE, None),
    }
    assert repo.observations(search.id).observations[:6] == propose.calls[-1][0].observations


def test_a_slow_policy_does_not_hold_up_reports(repo: Repository) -> None:
    """While a policy thinks, other workers' reports go through (no database-wide lock held)."""
    search = repo.create_search(make_config())
    (running,) = suggest(repo, search.id, "a", 1, Proposer())
    inner = Proposer()
    finished = threading.Event()

    def slow_policy(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
        def report() -> None:
            repo.report(running.id, state=COMPLETED, score=0.5, worker_id="a")
            finished.set()

        thread = threading.Thread(target=report)
        thread.start()
        thread.join(timeout=10)
        assert finished.is_set(), "a report waited for the policy"
        return inner(snapshot, n)

    (trial,) = suggest(repo, search.id, "b", 1, slow_policy)
    assert trial.number == 1 and repo.get_trial(running.id).state is COMPLETED
