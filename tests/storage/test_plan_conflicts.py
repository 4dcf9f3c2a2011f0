"""The policy runs outside any lock, and a plan the search outran is redone (every database).

Two repositories on one database stand for two server processes.
"""

from __future__ import annotations

from morphnas.core.records import NewTrial, SearchSnapshot
from morphnas.server.service import suggest_trials as suggest
from morphnas.storage import Repository
from tests.storage.conftest import make_config
from tests.storage.test_repository_contract import Proposer


def _two_repositories(url: str) -> tuple[Repository, Repository]:
    return Repository.from_url(url), Repository.from_url(url, create=False)


def test_a_plan_outrun_by_another_process_is_redone(db_url: str) -> None:
    mine, theirs = _two_repositories(db_url)
    search = mine.create_search(make_config())
    inner = Proposer()
    seen: list[int] = []

    def policy(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
        seen.append(len(snapshot.observations))
        if len(seen) == 1:  # another server process asks while this policy thinks
            suggest(theirs, search.id, "theirs", 1, Proposer())
        return inner(snapshot, n)

    (trial,) = suggest(mine, search.id, "mine", 1, policy)
    assert seen == [0, 1]  # planned again, now seeing their trial
    assert trial.number == 1
    assert trial.architecture == '{"arch": "2-0"}'  # the second plan's proposal was stored
    numbers = [t.number for t in mine.list_trials(search.id)[0]]
    assert numbers == [0, 1]
    mine.close()
    theirs.close()


def test_after_repeated_conflicts_the_last_plan_is_stored(db_url: str) -> None:
    mine, theirs = _two_repositories(db_url)
    search = mine.create_search(make_config())
    inner = Proposer()
    calls: list[int] = []

    def policy(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
        calls.append(len(snapshot.observations))
        if len(calls) <= 3:  # outrun every optimistic attempt
            suggest(theirs, search.id, "", 1, Proposer())
        return inner(snapshot, n)

    (trial,) = suggest(mine, search.id, "mine", 1, policy)
    assert calls == [0, 1, 2, 3] and trial.number == 3
    assert [t.number for t in mine.list_trials(search.id)[0]] == [0, 1, 2, 3]
    mine.close()
    theirs.close()
