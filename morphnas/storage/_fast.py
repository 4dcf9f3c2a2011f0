"""Prebuilt statements of the ask/tell hot path, run on SQLite's DBAPI cursor.

Why. On SQLite a statement of the ask/tell path costs SQLite 1–10 µs, while running it through
``Connection.execute`` adds about 20 µs of Python (an execution context, parameter processing,
result metadata and events) — for the seven statements of an ask and the one of a report, about
a third of the service's work (measured: ask 1.58 → 1.06 ms, report 0.32 → 0.18 ms at 1000
trials). Over gRPC, that was the larger part of the way from 4.4× to the 5× goal on ask+tell
against Optuna's RDB storage.

How. A :class:`FastStatement` wraps a SQLAlchemy Core statement built from the tables in
``_tables.py`` (SQLAlchemy still writes every statement and the schema). On SQLite it compiles
the statement once, records the order of its positional parameters, their defaults (values
written into the statement, such as the states a report may find) and the type processors
SQLAlchemy would apply to parameters and result columns, then runs the compiled SQL on the
pooled connection's DBAPI cursor inside the same transaction, applying those processors. A
DBAPI error is wrapped exactly as SQLAlchemy wraps it (``DBAPIError.instance``), so the unit of
work's retries and error translation see what they would have seen. Rows have attribute access,
like SQLAlchemy's. On every other dialect a FastStatement is plain ``Connection.execute``:
PostgreSQL's round trip dwarfs the Python, and SQLAlchemy's handling of lost connections
(invalidation) matters there.

Not for statements with expanding (``IN``-list) parameters; the constructor refuses them.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.sql.compiler import SQLCompiler

_SQLITE = pysqlite.dialect()
Processor = Callable[[Any], Any] | None


class FastStatement:
    """A Core statement compiled once for SQLite and run there on the DBAPI cursor.

    ``column_keys``: for an INSERT or UPDATE whose values come from the parameters, the keys
    every call passes (as ``Compiled`` needs them to know which columns to write).
    """

    def __init__(self, statement: Any, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        compiled = cast(
            SQLCompiler,
            statement.compile(
                dialect=_SQLITE,
                column_keys=list(column_keys) if column_keys is not None else None,
            ),
        )
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("a FastStatement cannot hold expanding (IN-list) parameters")
        self.sql: str = compiled.string
        self._names: tuple[str, ...] = tuple(compiled.positiontup or ())
        binds = compiled.binds
        # Values the statement holds itself; a parameter without one must be passed each call.
        defaults = compiled.construct_params(_check=False)
        self._defaults: dict[str, Any] = {
            name: defaults.get(name) for name in self._names if not binds[name].required
        }
        self._bind_processors: tuple[Processor, ...] = tuple(
            _bind_processor(binds[name].type) for name in self._names
        )
        self._any_bind_processor = any(p is not None for p in self._bind_processors)
        columns = _result_columns(statement)
        self._result_processors: tuple[Processor, ...] = tuple(
            _result_processor(column.type) for column in columns
        )
        self._any_result_processor = any(p is not None for p in self._result_processors)
        self._row_type: Any = namedtuple("Row", [c.key for c in columns]) if columns else None  # type: ignore[misc]  # noqa: PYI024

    # ---------------------------------------------------------------- running
    def rows(self, c: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row the statement returns."""
        if c.dialect.name != "sqlite":
            return list(c.execute(self.statement, dict(params or {})).all())
        cursor = self._run(c, params)
        return [self._row(raw) for raw in cursor.fetchall()]

    def first(self, c: Connection, params: Mapping[str, Any] | None = None) -> Any | None:
        """The first row the statement returns, or None."""
        if c.dialect.name != "sqlite":
            return c.execute(self.statement, dict(params or {})).first()
        cursor = self._run(c, params)
        raw = cursor.fetchone()
        cursor.close()  # done with it (an UPDATE ... RETURNING's statement ends here)
        return None if raw is None else self._row(raw)

    def run(self, c: Connection, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        if c.dialect.name != "sqlite":
            return int(c.execute(self.statement, dict(params or {})).rowcount)
        return int(self._run(c, params).rowcount)

    def _run(self, c: Connection, params: Mapping[str, Any] | None) -> sqlite3.Cursor:
        values = self._positional(params or {})
        driver: sqlite3.Connection = c.connection.driver_connection  # type: ignore[assignment]
        try:
            return driver.execute(self.sql, values)
        except sqlite3.Error as error:
            raise sa_exc.DBAPIError.instance(
                self.sql, values, error, sqlite3.Error, dialect=c.dialect
            ) from error

    def _positional(self, params: Mapping[str, Any]) -> list[Any]:
        defaults = self._defaults
        try:
            values = [params[name] if name in params else defaults[name] for name in self._names]
        except KeyError as missing:  # a programming error, refused as Core refuses it
            raise sa_exc.ArgumentError(f"a value is required for parameter {missing}") from None
        if self._any_bind_processor:
            values = [
                value if process is None or value is None else process(value)
                for value, process in zip(values, self._bind_processors, strict=True)
            ]
        return values

    def _row(self, raw: tuple[Any, ...]) -> Any:
        if self._any_result_processor:
            raw = tuple(
                value if process is None else process(value)
                for value, process in zip(raw, self._result_processors, strict=True)
            )
        return self._row_type._make(raw)


def _bind_processor(type_: Any) -> Processor:
    return type_.dialect_impl(_SQLITE).bind_processor(_SQLITE)  # type: ignore[no-any-return]


def _result_processor(type_: Any) -> Processor:
    return type_.dialect_impl(_SQLITE).result_processor(_SQLITE, None)  # type: ignore[no-any-return]


def _result_columns(statement: Any) -> list[Any]:
    """The columns a statement returns: a SELECT's (or UNION's), or an UPDATE's RETURNING."""
    if hasattr(statement, "selected_columns"):
        return list(statement.selected_columns)
    if getattr(statement, "_returning", ()):
        return list(statement.exported_columns)
    return []
