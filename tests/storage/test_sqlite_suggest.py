"""SQLite only: the policy runs outside the write lock, and a plan the search outran is redone."""

from __future__ import annotations

from pathlib import Path

from morphnas.core.records import NewTrial, SearchSnapshot
from morphnas.storage import Repository
from tests.storage.conftest import make_config
from tests.storage.test_repository_contract import Proposer


def _two_repositories(tmp_path: Path) -> tuple[Repository, Repository]:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    return Repository.from_url(url), Repository.from_url(url, create=False)


def test_a_plan_outrun_by_another_process_is_redone(tmp_path: Path) -> None:
    mine, theirs = _two_repositories(tmp_path)
    search = mine.create_search(make_config())
    inner = Proposer()
    seen: list[int] = []

    def policy(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
        seen.append(len(snapshot.observations))
        if len(seen) == 1:  # another server process asks while this policy thinks
            theirs.suggest(search.id, "theirs", 1, Proposer())
        return inner(snapshot, n)

    (trial,) = mine.suggest(search.id, "mine", 1, policy)
    assert seen == [0, 1]  # planned again, now seeing their trial
    assert trial.number == 1
    assert trial.architecture == '{"arch": "2-0"}'  # the second plan's proposal was stored
    numbers = [t.number for t in mine.list_trials(search.id)[0]]
    assert numbers == [0, 1]
    mine.close()
    theirs.close()


def test_after_repeated_conflicts_the_policy_runs_under_the_lock(tmp_path: Path) -> None:
    mine, theirs = _two_repositories(tmp_path)
    search = mine.create_search(make_config())
    inner = Proposer()
    calls: list[int] = []

    def policy(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
        calls.append(len(snapshot.observations))
        if len(calls) <= 3:  # outrun every optimistic attempt
            theirs.suggest(search.id, "", 1, Proposer())
        return inner(snapshot, n)

    (trial,) = mine.suggest(search.id, "mine", 1, policy)
    assert calls == [0, 1, 2, 3] and trial.number == 3
    assert [t.number for t in mine.list_trials(search.id)[0]] == [0, 1, 2, 3]
    mine.close()
    theirs.close()
