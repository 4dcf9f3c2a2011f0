"""ObservationIndex kept up to date from changes equals one built from scratch."""

from __future__ import annotations

import random

from morphnas.core.records import Observation, ObservationIndex, SearchSnapshot, TrialState


def _obs(number: int, state: TrialState, score: float | None = None) -> Observation:
    return Observation(f"t{number}", number, "{}", f"h{number % 7}", state, score, None)


def _same(a: ObservationIndex, b: ObservationIndex) -> None:
    assert a.observations == b.observations
    assert a.completed == b.completed
    assert a.ranked == b.ranked
    assert dict(a.by_id) == dict(b.by_id)
    assert a.arch_hashes == b.arch_hashes
    assert a.open_ids == b.open_ids


def test_incremental_updates_match_a_fresh_index() -> None:
    rng = random.Random(0)
    trials: list[Observation] = []
    index = ObservationIndex.of([])
    assert index is not None
    for _ in range(300):
        changed: list[Observation] = []
        for _ in range(rng.randint(0, 3)):  # new trials
            new = _obs(len(trials), TrialState.ACTIVE)
            trials.append(new)
            changed.append(new)
        open_numbers = [
            o.number for o in trials if o.state in (TrialState.ACTIVE, TrialState.STALE)
        ]
        for number in rng.sample(open_numbers, k=min(len(open_numbers), rng.randint(0, 2))):
            state = rng.choice(
                [TrialState.COMPLETED, TrialState.FAILED, TrialState.STALE, TrialState.INFEASIBLE]
            )
            score = rng.random() if state is TrialState.COMPLETED else None
            trials[number] = _obs(number, state, score)
            changed = [o for o in changed if o.number != number] + [trials[number]]
        updated = index.updated(changed)
        assert updated is not None
        index = updated
        fresh = ObservationIndex.of(trials)
        assert fresh is not None
        _same(index, fresh)
    assert any(o.state is TrialState.COMPLETED for o in index.completed)


def test_gaps_and_changed_final_observations_are_refused() -> None:
    index = ObservationIndex.of([_obs(0, TrialState.COMPLETED, 0.5), _obs(1, TrialState.ACTIVE)])
    assert index is not None
    assert index.updated([_obs(3, TrialState.ACTIVE)]) is None  # number 2 is missing
    assert index.updated([_obs(0, TrialState.FAILED)]) is None  # a final trial never changes
    assert ObservationIndex.of([_obs(1, TrialState.ACTIVE)]) is None


def test_a_snapshot_without_an_index_builds_the_same_lookups() -> None:
    trials = [
        _obs(0, TrialState.COMPLETED, 0.1),
        _obs(1, TrialState.ACTIVE),
        _obs(2, TrialState.STALE),
    ]
    snapshot = SearchSnapshot(None, tuple(trials))  # type: ignore[arg-type]
    assert snapshot.completed == (trials[0],)
    assert snapshot.pending == (trials[1],)
    assert snapshot.by_id["t2"] is trials[2]
    assert snapshot.arch_hashes == {"h0", "h1", "h2"}
