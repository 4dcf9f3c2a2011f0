"""Storage fixtures: one repository per test, on SQLite and on PostgreSQL.

SQLite gets a file in ``tmp_path``. PostgreSQL gets one fresh database per test session, created
from MORPHNAS_TEST_POSTGRES_URL (default: the local server, database ``test``) and dropped at the
end, and one schema per test inside it (``search_path`` set in the URL), so parallel runs and
tests never see each other's rows. When MORPHNAS_TEST_POSTGRES_URL is set, an unreachable server
fails the Postgres tests; when it is not set, they skip with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from morphnas.core.records import SearchConfig
from morphnas.storage import Repository
from tests.dbs import fresh_postgres_database

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a database created for this test session (dropped afterwards)."""
    yield from fresh_postgres_database()


def postgres_schema(database_url: str) -> Iterator[str]:
    """A fresh schema in the session database; yields a URL whose search_path is that schema."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = sa.make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'morphnas.db'}"
        return
    yield from postgres_schema(request.getfixturevalue("postgres_database"))


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repository = Repository.from_url(db_url)
    yield repository
    repository.close()


def make_config(**overrides: object) -> SearchConfig:
    values: dict[str, object] = {"name": "test", "input_shape": (40,), "num_classes": 10}
    values.update(overrides)
    return SearchConfig(**values)  # type: ignore[arg-type]
