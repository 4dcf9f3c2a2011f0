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
from morphnas.storage._checkpoint import BACKSTOP_PAGES, WalCheckpointer

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
RETRY_ATTEMPTS = 5
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
    # A pool event only: a connection event (such as "begin") would make SQLAlchemy dispatch
    # events around every statement and transaction of the engine.
    event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see transaction)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    # Checkpoints run in the background (see _checkpoint.py); a commit does one only past this.
    cursor.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
    cursor.close()


_BEGIN = {True: "BEGIN IMMEDIATE", False: "BEGIN DEFERRED"}


def _sqlite_begin(connection: Connection, *, write: bool) -> None:
    """Open the SQLite transaction that SQLAlchemy's ``begin()`` stands for.

    pysqlite's own transaction handling is off (it would begin only before the first write),
    and SQLAlchemy's ``begin()`` emits nothing on SQLite: the BEGIN is ours, on the DBAPI
    connection (through ``exec_driver_sql`` it would double the cost of an empty unit of work).
    Errors are wrapped as SQLAlchemy wraps them, so ``run`` retries a locked database.
    """
    statement = _BEGIN[write]
    try:
        connection.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except sqlite3.Error as error:
        raise sa_exc.DBAPIError.instance(
            statement, (), error, sqlite3.Error, dialect=connection.dialect
        ) from error


def background_checkpoints(engine: Engine) -> WalCheckpointer | None:
    """A WAL checkpointer for a SQLite file engine (None for other databases and in-memory)."""
    if not is_sqlite(engine) or engine.url.database in (None, "", ":memory:"):
        return None
    return WalCheckpointer(engine.url.database)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def transaction(engine: Engine, *, write: bool) -> Iterator[Connection]:
    """One unit of work: a connection in a transaction, committed on success, rolled back on error.

    ``write=True`` on SQLite begins IMMEDIATE (take the write lock now); reads begin DEFERRED,
    so that all of a unit's reads see one snapshot.
    """
    with engine.connect() as connection:
        with connection.begin():
            if is_sqlite(engine):
                _sqlite_begin(connection, write=write)
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
