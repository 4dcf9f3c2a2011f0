"""Losing the database: callers get UNAVAILABLE (retry later), health says NOT_SERVING, and the
server recovers by itself when the database is back, with no restart.

PostgreSQL: the database refuses new connections and its open ones are killed
(``pg_terminate_backend``), as when the database server restarts or fails over. SQLite: the
folder holding the file disappears (the tests run as root, so file modes would not stop them).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from morphnas.client import Client, UnavailableError
from morphnas.server.app import RunningServer, ServerOptions, build_server
from tests.dbs import DATABASES, postgres_admin_url

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@contextlib.contextmanager
def postgres_outage(url: str) -> Iterator[None]:
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            c.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
        yield
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


@contextlib.contextmanager
def sqlite_outage(folder: Path, server: RunningServer) -> Iterator[None]:
    hidden = folder.with_name(folder.name + "-gone")
    server.service.repo.close()  # drop pooled connections: the next unit of work must reopen
    folder.rename(hidden)
    try:
        yield
    finally:
        hidden.rename(folder)


@pytest.fixture(params=DATABASES)
def setup(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[RunningServer, Callable]]:
    if request.param == "sqlite":
        folder = tmp_path / "db"
        folder.mkdir()
        url = f"sqlite:///{folder / 'morphnas.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    server = build_server(ServerOptions(db_url=url, port=0, sweep_seconds=0.1))
    if request.param == "sqlite":
        outage = lambda: sqlite_outage(folder, server)  # noqa: E731
    else:
        outage = lambda: postgres_outage(url)  # noqa: E731
    try:
        yield server, outage
    finally:
        server.stop(0)


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="morphnas.v1.MorphNas")
        return stub.Check(request, timeout=5).status


def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_lost_database_is_unavailable_then_recovers(setup: tuple[RunningServer, Callable]) -> None:
    server, outage = setup
    with Client(server.address, timeout=20) as client:
        search = client.create_search("db-loss", input_shape=(8,), num_classes=3, policy="random")
        [trial] = search.suggest(worker_id="w")
        assert health(server.address) == SERVING

        with outage():
            with pytest.raises(UnavailableError):
                search.refresh()
            with pytest.raises(UnavailableError):
                trial.report(score=0.5)
            assert eventually(lambda: health(server.address) == NOT_SERVING)

        assert eventually(lambda: health(server.address) == SERVING)
        assert trial.report(score=0.5).state == "COMPLETED"  # the refused report can be retried
        assert search.refresh().info.trial_count == 1
        assert [t.score for t in search.trials()] == [0.5]


@pytest.mark.postgres
def test_killed_connections_are_replaced_unseen(postgres_url: str) -> None:
    """Pooled connections killed by the database (a restart, an idle timeout) are noticed by
    the pool's pre-ping and replaced: callers see no error at all."""
    server = build_server(ServerOptions(db_url=postgres_url, port=0))
    try:
        with Client(server.address, timeout=20) as client:
            search = client.create_search("pings", input_shape=(8,), num_classes=3, policy="random")
            for attempt in range(3):
                assert kill_connections(postgres_url) > 0
                [trial] = search.suggest(worker_id=f"w{attempt}")
                assert trial.report(score=0.5).state == "COMPLETED"
    finally:
        server.stop(0)


def kill_connections(url: str) -> int:
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            killed = c.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :n"
                ),
                {"n": name},
            ).scalar_one()
    finally:
        admin.dispose()
    return int(killed)
