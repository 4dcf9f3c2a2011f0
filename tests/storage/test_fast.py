"""FastStatement: the hot statements on SQLite's DBAPI cursor give what SQLAlchemy gives.

Each statement the ask/tell path runs through a FastStatement is run both ways on the same
rows — through ``Connection.execute`` and on the cursor — and the results must be equal, value
for value and type for type (the Boolean column comes back as ``bool`` both ways). Errors must
arrive wrapped as SQLAlchemy wraps them, so the unit of work still retries a locked database and
translates a duplicate into ``AlreadyExistsError``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, select
from sqlalchemy import exc as sa_exc

from morphnas.core.errors import AlreadyExistsError
from morphnas.core.records import TrialState
from morphnas.storage import Repository, _engine, _observations, _rows, _suggest
from morphnas.storage import repository as repository_module
from morphnas.storage._fast import FastStatement
from morphnas.storage._tables import trials
from tests.storage.conftest import make_config


@pytest.fixture
def sqlite_repo(tmp_path: Path):
    repo = Repository.from_url(f"sqlite:///{tmp_path / 'fast.db'}")
    yield repo
    repo.close()


def _filled(repo: Repository, n: int = 6) -> tuple[str, list[str]]:
    """A search with ``n`` trials: COMPLETED, FAILED and ACTIVE ones."""
    search = repo.create_search(make_config())
    ids = []
    for i in range(n):
        [trial] = repo.suggest(search.id, f"w{i}", 1, _one_proposal)
        ids.append(trial.id)
        if i % 3 == 0:
            repo.report(trial.id, state=TrialState.COMPLETED, score=i / 10)
        elif i % 3 == 1:
            repo.report(trial.id, state=TrialState.FAILED, score=None, reason="out of memory")
    return search.id, ids


def _one_proposal(snapshot: Any, n: int) -> list[Any]:
    from morphnas.core.records import NewTrial

    return [
        NewTrial(
            architecture=f'{{"n":{len(snapshot.observations)}}}',
            arch_hash=uuid.uuid4().hex,
            parent_id=None,
            operations=({"op": "deeper", "after": "dense0"},),
            initial_weights=b"\x00" * 64,
            num_params=123,
        )
    ]


def _both_ways(repo: Repository, fast: FastStatement, params: dict[str, Any]) -> tuple[Any, Any]:
    with _engine.transaction(repo._engine, write=False) as c:
        via_core = [tuple(row) for row in c.execute(fast.statement, params)]
        via_cursor = [tuple(row) for row in fast.rows(c, params)]
    return via_core, via_cursor


def _assert_same(via_core: list[tuple], via_cursor: list[tuple]) -> None:
    assert via_cursor == via_core
    for a, b in zip(via_core, via_cursor, strict=True):
        assert [type(v) for v in a] == [type(v) for v in b]


def test_reads_of_the_ask_path_match_sqlalchemy(sqlite_repo: Repository) -> None:
    search_id, ids = _filled(sqlite_repo)
    cases = [
        (_rows._SEARCH, {"search_id": search_id}),
        (_rows._LOCK_SEARCH, {"search_id": search_id}),
        (_rows._TRIAL, {"trial_id": ids[2]}),
        (_suggest._OPEN_TRIALS, {"search_id": search_id}),
        (_observations._FAST_NEWER, {"search_id": search_id, "count": 2}),
        (
            _observations._newer_or_reopened(2),
            {"search_id": search_id, "count": 4, "id0": ids[1], "id1": ids[2]},
        ),
    ]
    for fast, params in cases:
        via_core, via_cursor = _both_ways(sqlite_repo, fast, params)
        assert via_core, fast.sql
        _assert_same(via_core, via_cursor)
    # The Boolean column is processed as SQLAlchemy processes it.
    with _engine.transaction(sqlite_repo._engine, write=False) as c:
        row = _rows._SEARCH.first(c, {"search_id": search_id})
    assert row is not None and row.stopped is False and row.id == search_id


def test_open_trials_are_the_active_and_unreissued_stale_ones(sqlite_repo: Repository) -> None:
    search_id, ids = _filled(sqlite_repo)
    with _engine.transaction(sqlite_repo._engine, write=False) as c:
        open_ids = sorted(row.id for row in _suggest._OPEN_TRIALS.rows(c, {"search_id": search_id}))
    assert open_ids == sorted([ids[2], ids[5]])  # the ACTIVE ones (every third from the third)


def test_report_update_returning_matches_and_counts(sqlite_repo: Repository) -> None:
    search_id, ids = _filled(sqlite_repo)
    params = {
        "trial_id": ids[5],
        "reporting_worker": "w5",
        "any_worker": False,
        "new_state": "COMPLETED",
        "new_score": 0.75,
        "new_reason": "",
        "new_lease_expires_at": None,
        "new_updated_at": 123.0,
        "new_weights_sha256": "",
    }
    with _engine.transaction(sqlite_repo._engine, write=True) as c:
        row = repository_module._REPORT_OPEN.first(c, params)
        assert row is not None and row.state == "COMPLETED" and row.score == 0.75
        assert row.updated_at == 123.0 and isinstance(row.number, int)
        again = repository_module._REPORT_OPEN.first(c, params)  # no longer open
        assert again is None
        changed = _suggest._SAVE_COUNT.run(c, {"search_id": search_id, "trial_count": 6})
        assert changed == 1
    assert sqlite_repo.get_trial(ids[5]).score == 0.75


def test_parameters_are_bound_as_sqlalchemy_binds_them() -> None:
    """Each hot statement's positional values, defaults and type processing (an int for a
    Double column becomes a float, a bool becomes 0/1) equal what SQLAlchemy's own execution
    would send to the driver for the same parameters."""
    from sqlalchemy.dialects.sqlite import pysqlite

    report = {
        "trial_id": "t",
        "reporting_worker": "w",
        "any_worker": True,
        "new_state": "COMPLETED",
        "new_score": 1,
        "new_reason": "",
        "new_lease_expires_at": None,
        "new_updated_at": 5,
        "new_weights_sha256": "",
    }
    insert = dict.fromkeys(_suggest._TRIAL_COLUMNS, 7) | {"id": "t", "operations": "[]"}
    cases = [
        (repository_module._REPORT_OPEN, report, None),
        (_suggest._INSERT_TRIAL, insert, _suggest._TRIAL_COLUMNS),
        (_suggest._OPEN_TRIALS, {"search_id": "s"}, None),
        (_suggest._SAVE_COUNT, {"search_id": "s", "trial_count": 3}, None),
        (_rows._LOCK_SEARCH, {"search_id": "s"}, None),
    ]
    dialect = pysqlite.dialect()
    for fast, params, keys in cases:
        compiled = fast.statement.compile(
            dialect=dialect, column_keys=list(keys) if keys is not None else None
        )
        bound = compiled.construct_params(params)
        processors = compiled._bind_processors
        expected = [
            processors[name](bound[name]) if name in processors else bound[name]
            for name in compiled.positiontup
        ]
        got = fast._positional(params)
        assert got == expected and [type(v) for v in got] == [type(v) for v in expected]
    assert isinstance(repository_module._REPORT_OPEN._positional(report)[2], float)


def test_a_missing_parameter_is_refused_not_bound_as_null(sqlite_repo: Repository) -> None:
    search_id, _ = _filled(sqlite_repo, n=1)
    with _engine.transaction(sqlite_repo._engine, write=True) as c:
        with pytest.raises(sa_exc.ArgumentError, match="trial_count"):
            _suggest._SAVE_COUNT.run(c, {"search_id": search_id})
        # Values the statement holds itself (the states an open trial has) need not be passed.
        assert _suggest._OPEN_TRIALS.rows(c, {"search_id": search_id}) == []


def test_a_duplicate_insert_is_an_already_exists_error(sqlite_repo: Repository) -> None:
    _, ids = _filled(sqlite_repo, n=1)

    def insert_again(c: Connection) -> None:
        _rows.insert_weights(c, ids[0], "initial", b"x", "0" * 64)

    with pytest.raises(AlreadyExistsError):
        _engine.run(sqlite_repo._engine, insert_again, write=True)


def test_errors_are_wrapped_as_sqlalchemy_wraps_them(sqlite_repo: Repository) -> None:
    broken = FastStatement(select(trials.c.id).where(trials.c.id == bindparam("trial_id")))
    broken.sql = "SELECT id FROM no_such_table WHERE id = ?"
    with _engine.transaction(sqlite_repo._engine, write=False) as c:
        with pytest.raises(sa_exc.OperationalError) as caught:
            broken.rows(c, {"trial_id": "x"})
    assert isinstance(caught.value.orig, sqlite3.OperationalError)
    assert "no_such_table" in str(caught.value)


def test_a_locked_database_is_waited_for_then_the_unit_proceeds(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE runs on the cursor too: a writer holding the lock delays, not fails, us."""
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    repo = Repository.from_url(url)
    search = repo.create_search(make_config())
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        time.sleep(0.3)
        other.execute("COMMIT")
        released.set()

    threading.Thread(target=release).start()
    stopped = repo.stop_search(search.id)  # a writing unit of work
    assert released.is_set() and stopped.stopped
    other.close()
    repo.close()


def test_expanding_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="expanding"):
        FastStatement(select(trials.c.id).where(trials.c.id.in_(bindparam("ids", expanding=True))))


def test_both_databases_give_the_same_rows(repo: Repository) -> None:
    """On SQLite the cursor path, on PostgreSQL plain SQLAlchemy: the same answers."""
    search_id, ids = _filled(repo)
    with _engine.transaction(repo._engine, write=False) as c:
        rows = _suggest._OPEN_TRIALS.rows(c, {"search_id": search_id})
        search = _rows._SEARCH.first(c, {"search_id": search_id})
    assert sorted(row.id for row in rows) == sorted([ids[2], ids[5]])
    assert search is not None and search.stopped is False
