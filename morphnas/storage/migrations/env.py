"""Alembic environment for morphnas.

morphnas runs migrations from code (:mod:`morphnas.storage._migrate`), handing over an open
connection in ``config.attributes["connection"]`` whose transaction (and, on PostgreSQL, whose
advisory lock) it already holds. Run from the command line instead, ``sqlalchemy.url`` in the
config names the database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from morphnas.storage._engine import make_engine, transaction
from morphnas.storage._tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        with transaction(engine, write=True) as fresh:
            _run(fresh)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("morphnas migrations run online only")
_run_online()
