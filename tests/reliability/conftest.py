"""Fixtures of the reliability tests: a database URL per backend (a SQLite file or a fresh
PostgreSQL database), as in tests/server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dbs import database_url, fresh_postgres_database

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (tests using it carry ``@pytest.mark.postgres``)."""
    yield from fresh_postgres_database()
