"""Units of work: retries of transient conflicts and the database → domain error table."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from morphnas.core.errors import AlreadyExistsError, NotFoundError, UnavailableError
from morphnas.storage import Repository, _engine


class FakeDriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _error(kind: type[sa_exc.DBAPIError], message: str, sqlstate: str | None = None):
    return kind("SELECT 1", {}, FakeDriverError(message, sqlstate))


@pytest.fixture
def engine(tmp_path: Path):
    engine = _engine.make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    "error",
    [
        _error(sa_exc.OperationalError, "could not serialize access", "40001"),
        _error(sa_exc.OperationalError, "deadlock detected", "40P01"),
        _error(sa_exc.OperationalError, "database is locked"),
    ],
)
def test_transient_conflicts_are_retried(engine, error: sa_exc.DBAPIError) -> None:
    calls: list[int] = []

    def work(c: Connection) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise error
        return "done"

    assert _engine.run(engine, work, write=True) == "done" and len(calls) == 3


def test_retries_give_up(engine) -> None:
    calls: list[int] = []

    def work(c: Connection) -> None:
        calls.append(1)
        raise _error(sa_exc.OperationalError, "deadlock detected", "40P01")

    with pytest.raises(UnavailableError):
        _engine.run(engine, work, write=True)
    assert len(calls) == _engine.RETRY_ATTEMPTS


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_error(sa_exc.IntegrityError, "UNIQUE constraint failed: trials.id"), AlreadyExistsError),
        (_error(sa_exc.IntegrityError, "duplicate key value", "23505"), AlreadyExistsError),
        (_error(sa_exc.IntegrityError, "FOREIGN KEY constraint failed"), NotFoundError),
        (_error(sa_exc.IntegrityError, "violates foreign key", "23503"), NotFoundError),
        (_error(sa_exc.OperationalError, "server closed the connection"), UnavailableError),
        (_error(sa_exc.InterfaceError, "connection already closed"), UnavailableError),
    ],
)
def test_database_errors_become_domain_errors(engine, error, expected) -> None:
    def work(c: Connection) -> None:
        raise error

    with pytest.raises(expected):
        _engine.run(engine, work, write=False)


def test_bugs_are_not_disguised(engine) -> None:
    def work(c: Connection) -> None:
        raise _error(sa_exc.ProgrammingError, "syntax error")

    with pytest.raises(sa_exc.ProgrammingError):
        _engine.run(engine, work, write=False)


def test_a_failed_unit_of_work_rolls_back(tmp_path: Path) -> None:
    repo = Repository.from_url(f"sqlite:///{tmp_path / 'r.db'}")
    engine = repo._engine

    def work(c: Connection) -> None:
        c.exec_driver_sql("DELETE FROM alembic_version")
        raise NotFoundError("nope")

    with pytest.raises(NotFoundError):
        _engine.run(engine, work, write=True)
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
    repo.close()


def test_ping_on_a_database_that_is_down() -> None:
    repo = Repository(
        _engine.make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    )
    with pytest.raises(UnavailableError):
        repo.ping()
    repo.close()
