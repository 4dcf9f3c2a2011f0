"""The audit of the chaos, replica and load runs notices every kind of loss it claims to check.

A few real ask/tell cycles fill the ledger; then the database is damaged one way at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from morphnas.client import Client
from morphnas.server.app import RunningServer, ServerOptions, build_server
from tests.reliability.harness import Ledger, Worker, audit


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[str, str, Ledger]]:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    server: RunningServer = build_server(ServerOptions(db_url=url, port=0))
    try:
        with Client(server.address) as client:
            search = client.create_search("a", input_shape=(8,), num_classes=3, policy="random")
        ledger = Ledger()
        worker = Worker("w", lambda: server.address, search.id, ledger, threading.Event())
        for _ in range(3):
            worker.one_cycle()
        worker.die_rate = 1.0
        worker.one_cycle()  # abandons a fourth trial: still ACTIVE, not reclaimed
    finally:
        server.stop(0)
    yield url, search.id, ledger


def damage(url: str, sql: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text(sql))
    engine.dispose()


def test_an_intact_run_passes_except_the_unreclaimed_trial(run: tuple[str, str, Ledger]) -> None:
    url, search_id, ledger = run
    result = audit(url, search_id, ledger)
    assert (result.trials, result.completed) == (4, 3)
    assert len(result.problems) == 1 and "was not reclaimed" in result.problems[0]


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("UPDATE trials SET score = score + 1 WHERE number = 0", "acked"),
        ("UPDATE trials SET weights_sha256 = '' WHERE number = 1", "weights"),
        (
            "DELETE FROM measurements WHERE step = 0 AND value = (SELECT MIN(value) FROM measurements)",
            "measurement",
        ),
        ("UPDATE trials SET number = 7 WHERE number = 2", "numbers"),
        ("UPDATE trials SET state = 'ACTIVE', score = NULL WHERE number = 0", "acked"),
    ],
)
def test_damage_is_reported(run: tuple[str, str, Ledger], sql: str, words: str) -> None:
    url, search_id, ledger = run
    damage(url, sql)
    problems = audit(url, search_id, ledger).problems
    assert any(words in p for p in problems), problems
