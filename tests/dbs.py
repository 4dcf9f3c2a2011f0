"""Test databases: a SQLite file, or an empty PostgreSQL schema of the test's own.

This module and the fixtures in ``tests/conftest.py`` (``postgres_database``, ``postgres_url``,
``db_url``) are the one way tests reach PostgreSQL. Each test session creates one database from
MORPHNAS_TEST_POSTGRES_URL (default: the local server on 127.0.0.1:5432, database ``test``) and
drops it at the end; each test gets a fresh schema inside it (``search_path`` set in the URL), so
tests never see each other's rows, and two sessions (two engineers, two CI jobs) never meet.
A schema costs a few catalog rows; a database per test cost a checkpoint on every drop. Tests
that take the database down (``tests/reliability/test_database_loss.py``) take down only this
session's database. When MORPHNAS_TEST_POSTGRES_URL is set, an unreachable server fails the tests
instead of skipping them, so CI cannot pass by skipping the Postgres leg.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: The parameters of a test that runs on every backend (see the ``db_url`` fixture).
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_admin_url() -> str:
    return os.environ.get("MORPHNAS_TEST_POSTGRES_URL", DEFAULT_POSTGRES)


def fresh_postgres_database() -> Iterator[str]:
    """URL of a newly created database; dropped when the generator is resumed or closed."""
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


def fresh_schema(database_url: str) -> Iterator[str]:
    """URL of a new, empty schema in ``database_url`` (its ``search_path``); dropped afterwards.

    The engine keeps no connection between the two statements (NullPool): a test may kill every
    connection to the database meanwhile.
    """
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = sa.make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
