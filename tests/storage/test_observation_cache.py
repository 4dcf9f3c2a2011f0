"""Incremental observation loading sees every change made elsewhere (another process, replica)."""

from __future__ import annotations

from morphnas.core.records import NewTrial, SearchSnapshot, TrialState
from morphnas.server.service import suggest_trials as suggest
from morphnas.storage.repository import Repository
from tests.storage.conftest import make_config


def _propose(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
    count = len(snapshot.observations)
    return [NewTrial(f"arch-{count + i}", f"hash-{count + i}", None, (), b"w") for i in range(n)]


def test_a_second_repository_sees_reports_and_new_trials(db_url: str) -> None:
    here, there = Repository.from_url(db_url), Repository.from_url(db_url)
    try:
        search = here.create_search(make_config())
        first = suggest(here, search.id, "a", 3, _propose)
        assert [o.state for o in here.observations(search.id).observations] == [
            TrialState.ACTIVE
        ] * 3

        there.report(first[1].id, state=TrialState.COMPLETED, score=0.75)
        there.report(first[2].id, state=TrialState.FAILED, score=None, reason="diverged")
        more = suggest(there, search.id, "b", 2, _propose)

        seen = here.observations(search.id).observations
        assert [o.number for o in seen] == [0, 1, 2, 3, 4]
        assert [o.state for o in seen] == [
            TrialState.ACTIVE,
            TrialState.COMPLETED,
            TrialState.FAILED,
            TrialState.ACTIVE,
            TrialState.ACTIVE,
        ]
        assert seen[1].score == 0.75
        assert [o.trial_id for o in seen[3:]] == [t.id for t in more]

        there.report(first[0].id, state=TrialState.COMPLETED, score=0.5)
        assert here.observations(search.id).observations[0].score == 0.5
    finally:
        here.close()
        there.close()


def test_many_open_trials_reported_elsewhere_are_all_seen(db_url: str) -> None:
    """More open trials than the fixed-size query holds take the general path; none is missed."""
    here, there = Repository.from_url(db_url), Repository.from_url(db_url)
    try:
        search = here.create_search(make_config())
        issued = suggest(here, search.id, "a", 12, _propose)
        assert len(here.observations(search.id).index.open_ids) == 12  # type: ignore[union-attr]
        for i, trial in enumerate(issued):
            there.report(trial.id, state=TrialState.COMPLETED, score=i / 100)
        seen = here.observations(search.id).observations
        assert [o.score for o in seen] == [i / 100 for i in range(12)]
        # And with a few (the fixed-size path): report three of three new ones.
        fresh = suggest(here, search.id, "a", 3, _propose)
        here.observations(search.id)
        for trial in fresh:
            there.report(trial.id, state=TrialState.FAILED, score=None, reason="x")
        states = [o.state for o in here.observations(search.id).observations[12:]]
        assert states == [TrialState.FAILED] * 3
    finally:
        here.close()
        there.close()
