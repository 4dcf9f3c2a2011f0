"""Engines, units of work and the translation of database errors into domain errors.

SQLite: WAL journal (readers never block the writer), a 30 s busy timeout, foreign keys on, and
``synchronous=NORMAL`` (safe with WAL: a power cut may lose the last commits, never corrupt the
file). pysqlite's own transaction handling is switched off so that we emit ``BEGIN`` ourselves:
a unit of work that writes starts with ``BEGIN IMMEDIATE``, which takes the database's write
lock up front, so writers queue on the busy timeout instead of failing half way with "database
is locked" when a read transaction tries to upgrade.

PostgreSQL: READ COMMITTED with explicit row locks (``SELECT ... FOR NO KEY UPDATE``) where an
order matters; serialization failures and deadlocks are retried a few times.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from morphnas.core.errors import (
    AlreadyExistsError,
    MorphnasError,
    NotFoundError,
    UnavailableError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
RETRY_ATTEMPTS = 5
_BEGIN_OPTION = "morphnas_sqlite_begin"
_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the pragmas and pool settings morphnas relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, memory=parsed.database in (None, "", ":memory:"))
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_engine(url: str, *, memory: bool) -> Engine:
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if memory:  # one connection, or each would see its own empty database; single-threaded use
        kwargs["poolclass"] = StaticPool
    else:
        kwargs.update(pool_size=10, max_overflow=20)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_on_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    statement = _BEGIN[mode]
    # On the DBAPI connection: ``exec_driver_sql`` would double the cost of an empty unit of
    # work. Errors are wrapped as SQLAlchemy wraps them, so ``run`` retries a locked database.
    try:
        connection.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except sqlite3.Error as error:
        raise sa_exc.DBAPIError.instance(
            statement, (), error, sqlite3.Error, dialect=connection.dialect
        ) from error


_BEGIN = {mode: f"BEGIN {mode}" for mode in ("DEFERRED", "IMMEDIATE")}


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def transaction(engine: Engine, *, write: bool) -> Iterator[Connection]:
    """One unit of work: a connection in a transaction, committed on success, rolled back on error.

    ``write=True`` on SQLite begins IMMEDIATE (take the write lock now).
    """
    with engine.connect() as connection:
        if write and is_sqlite(engine):
            connection.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with connection.begin():
            yield connection


def run(engine: Engine, work: Callable[[Connection], T], *, write: bool) -> T:
    """Run ``work`` in a unit of work; retry transient conflicts; raise only domain errors."""
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            with transaction(engine, write=write) as connection:
                return work(connection)
        except MorphnasError:
            raise
        except sa_exc.DBAPIError as error:
            if attempt < RETRY_ATTEMPTS and _is_retryable(error):
                log.info("retrying after a transient database conflict: %s", error.orig)
                time.sleep(random.uniform(0.005, 0.02) * 2**attempt)
                continue
            domain = translate(error)
            if domain is None:
                raise
            raise domain from error
        except sa_exc.TimeoutError as error:  # no pooled connection came free in time
            raise UnavailableError(f"database busy: {error}") from error
    raise AssertionError("unreachable")  # pragma: no cover


def _is_retryable(error: sa_exc.DBAPIError) -> bool:
    if getattr(error.orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    # SQLite reports SQLITE_BUSY immediately (without waiting) when waiting could deadlock.
    return "database is locked" in str(error.orig)


def translate(error: sa_exc.DBAPIError) -> MorphnasError | None:
    """The domain error for a database error; None for unexpected ones (bugs: re-raise)."""
    message = str(error.orig)
    if isinstance(error, sa_exc.IntegrityError):
        sqlstate = getattr(error.orig, "sqlstate", None)
        if sqlstate == "23503" or "FOREIGN KEY" in message:
            return NotFoundError(f"a referenced object does not exist: {_first_line(message)}")
        return AlreadyExistsError(f"already exists: {_first_line(message)}")
    if error.connection_invalidated or isinstance(
        error, sa_exc.OperationalError | sa_exc.InterfaceError
    ):
        return UnavailableError(f"database unavailable: {_first_line(message)}")
    return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
