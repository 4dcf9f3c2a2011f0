"""A COMPLETED observation carries what its trial cost: the seconds from suggestion to report."""

from __future__ import annotations

from morphnas.core.records import NewTrial, SearchSnapshot, TrialState
from morphnas.server.service import suggest_trials as suggest
from morphnas.storage.repository import Repository
from tests.storage.conftest import make_config


def _propose(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
    count = len(snapshot.observations)
    return [NewTrial(f"arch-{count + i}", f"hash-{count + i}", None, (), b"w") for i in range(n)]


def test_completed_observations_have_their_training_seconds(db_url: str) -> None:
    repo = Repository.from_url(db_url)
    search = repo.create_search(make_config(), now=50.0)
    trials = suggest(repo, search.id, "w", 3, _propose, now=100.0)
    repo.report(trials[0].id, state=TrialState.COMPLETED, score=0.5, now=112.5)
    repo.report(trials[1].id, state=TrialState.FAILED, score=None, reason="x", now=101.0)
    seen = repo.observations(search.id).observations
    assert [o.seconds for o in seen] == [12.5, None, None]
    repo.close()
    fresh = Repository.from_url(db_url)
    try:  # the same from a cold load
        assert [o.seconds for o in fresh.observations(search.id).observations] == [12.5, None, None]
    finally:
        fresh.close()
