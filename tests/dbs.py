"""Test databases: a SQLite file, or a fresh PostgreSQL database per test.

PostgreSQL comes from MORPHNAS_TEST_POSTGRES_URL (default: the local server on 127.0.0.1:5432,
database ``test``). When the variable is set, an unreachable server fails the test instead of
skipping it, so CI cannot pass by skipping the Postgres leg.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str:
    return os.environ.get("MORPHNAS_TEST_POSTGRES_URL", DEFAULT_POSTGRES)


def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'morphnas.db'}"
        return
    yield from fresh_postgres_database()


def fresh_postgres_database() -> Iterator[str]:
    import sqlalchemy as sa

    admin_url = postgres_admin_url()
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"morphnas_t_{uuid.uuid4().hex[:12]}"
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as err:
        engine.dispose()
        if "MORPHNAS_TEST_POSTGRES_URL" in os.environ:
            pytest.fail(f"PostgreSQL at {admin_url} is unreachable: {err}")
        pytest.skip(
            f"PostgreSQL unreachable ({err.__class__.__name__}); set MORPHNAS_TEST_POSTGRES_URL"
        )
    url = sa.engine.make_url(admin_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
