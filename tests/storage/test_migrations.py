"""The schema comes only from the Alembic migrations, and the ORM tables agree with them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from morphnas.core.errors import UnavailableError
from morphnas.storage import Repository, SchemaVersionError
from morphnas.storage._engine import make_engine
from morphnas.storage._migrate import alembic_config, head_revision
from morphnas.storage._tables import metadata

TABLES = {"searches", "trials", "trial_weights", "staged_weights", "measurements"}


def _revision(url: str) -> tuple[str, ...]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return tuple(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def test_upgrade_of_an_empty_database_reaches_head(db_url: str) -> None:
    Repository.from_url(db_url).close()
    assert _revision(db_url) == (head_revision(),)
    engine = make_engine(db_url)
    try:
        assert TABLES <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    Repository.from_url(db_url, create=False).close()  # at head: opens without upgrading


def test_tables_match_the_migrations(db_url: str) -> None:
    Repository.from_url(db_url).close()
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_downgrade_then_upgrade_round_trips(db_url: str) -> None:
    Repository.from_url(db_url).close()
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        assert not TABLES & set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    Repository.from_url(db_url).close()
    assert _revision(db_url) == (head_revision(),)


def test_a_newer_schema_is_refused_with_a_clear_message(db_url: str) -> None:
    Repository.from_url(db_url).close()
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaVersionError, match="9999_future is newer than this morphnas"):
        Repository.from_url(db_url)


def test_an_older_schema_is_refused_without_create(db_url: str) -> None:
    with pytest.raises(SchemaVersionError, match="older than this morphnas"):
        Repository.from_url(db_url, create=False)


def test_migrations_run_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    Repository.from_url(f"sqlite:///{tmp_path / 'x.db'}").close()
    assert _revision(f"sqlite:///{tmp_path / 'x.db'}") == (head_revision(),)


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    Repository.from_url(url).close()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 30_000
    finally:
        engine.dispose()


def test_an_unreachable_database_is_unavailable() -> None:
    with pytest.raises(UnavailableError):
        Repository.from_url("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")


def test_the_default_url_is_a_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Repository.from_url().close()
    assert os.path.exists(tmp_path / "morphnas.db")


def test_runs_stored_before_budgets_upgrade_with_no_budget(db_url: str) -> None:
    """A database at 0003 with a training run in it upgrades to head: the run has no budget
    (budget_seconds 0: its trial count alone ends it) and has spent 0 seconds."""
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0003")
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO searches (id, name, config, created_at, size_cap_params, "
                    "trial_count, stopped) VALUES ('s1', 'old', :config, 1.0, 100, 0, :no)"
                ),
                {
                    "config": '{"name": "old", "input_shape": [40], "num_classes": 10}',
                    "no": False,
                },
            )
            connection.execute(
                sa.text(
                    "INSERT INTO training_runs (id, search_id, dataset, trials, claimed, budget, "
                    "state, first_number, created_at) "
                    "VALUES ('r1', 's1', 'digits', 3, 1, '{}', 'RUNNING', 0, 2.0)"
                )
            )
    finally:
        engine.dispose()
    repo = Repository.from_url(db_url)
    try:
        run = repo.get_training_run("r1")
        assert (run.trials, run.claimed, run.budget_seconds, run.spent_seconds) == (3, 1, 0.0, 0.0)
        assert not run.budget_spent and run.seconds_left is None
        assert repo.charge_training_run("r1", 1.5).spent_seconds == 1.5
    finally:
        repo.close()
    assert _revision(db_url) == (head_revision(),)


def test_runs_stored_before_final_fits_upgrade_with_none(db_url: str) -> None:
    """A database at 0004 with a training run upgrades to head: the run has no final fit, no
    final test accuracy and nothing reserved; a trial's final weights can be stored after."""
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0004")
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO searches (id, name, config, created_at, size_cap_params, "
                    "trial_count, stopped) VALUES ('s1', 'old', :config, 1.0, 100, 0, :no)"
                ),
                {
                    "config": '{"name": "old", "input_shape": [40], "num_classes": 10}',
                    "no": False,
                },
            )
            connection.execute(
                sa.text(
                    "INSERT INTO training_runs (id, search_id, dataset, trials, claimed, budget, "
                    "state, first_number, created_at, budget_seconds, spent_seconds) "
                    "VALUES ('r1', 's1', 'digits', 3, 1, '{}', 'RUNNING', 0, 2.0, 10.0, 9.0)"
                )
            )
    finally:
        engine.dispose()
    repo = Repository.from_url(db_url)
    try:
        run = repo.get_training_run("r1")
        assert (run.final_fit, run.final_test_accuracy, run.reserved_seconds) == (
            "none",
            None,
            0.0,
        )
        assert not run.budget_spent
        repo.reserve_training_seconds("r1", 1.0)
        assert repo.get_training_run("r1").budget_spent  # 9 spent + 1 reserved of 10
    finally:
        repo.close()
    assert _revision(db_url) == (head_revision(),)
