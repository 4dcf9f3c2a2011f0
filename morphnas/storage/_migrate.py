"""Bring a database's schema to this morphnas's revision, or say clearly why not.

The Alembic config is built in code with ``script_location`` pointing at the ``migrations``
folder next to this file, so upgrades work from an installed package, not only a checkout.
The check and the upgrade run in one transaction that serialises concurrent starts: on
PostgreSQL under a transaction-level advisory lock, on SQLite under ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from morphnas.core.errors import FailedPreconditionError
from morphnas.storage._engine import is_sqlite, transaction

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_ADVISORY_LOCK_KEY = 0x6D6F7270  # "morp"


class SchemaVersionError(FailedPreconditionError):
    """The database's schema revision is not the one this morphnas expects."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the bundled migrations (optionally bound to an open connection)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revisions(connection: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(connection).get_current_heads())


def prepare_schema(engine: Engine, *, create: bool) -> None:
    """Upgrade to the head revision (``create=True``) or check the schema is at head.

    Raises :class:`SchemaVersionError` if the database is at a revision this morphnas does not
    know (written by a newer morphnas), or, with ``create=False``, is not at head.
    """
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    with transaction(engine, write=True) as connection:
        if not is_sqlite(engine):
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
            )
        current = current_revisions(connection)
        _check_known(scripts, current, head)
        if current == (head,):
            return
        if not create:
            found = ", ".join(current) or "empty"
            raise SchemaVersionError(
                f"database schema revision {found} is older than this morphnas ({head}): "
                "open it with create=True (the default) to upgrade it"
            )
        log.info("upgrading database schema from %s to %s", current or "empty", head)
        command.upgrade(alembic_config(connection), "head")


def _check_known(scripts: ScriptDirectory, current: tuple[str, ...], head: str | None) -> None:
    for revision in current:
        if _lookup(scripts, revision) is None:
            raise SchemaVersionError(
                f"database schema revision {revision} is newer than this morphnas ({head}): "
                "upgrade morphnas"
            )


def _lookup(scripts: ScriptDirectory, revision: str) -> object | None:
    try:
        return scripts.get_revision(revision)
    except Exception:  # alembic raises several kinds for an unknown id
        return None
