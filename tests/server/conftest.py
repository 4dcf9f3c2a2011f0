"""Fixtures: a real server on a free port over SQLite or PostgreSQL (``db_url``, see
``tests/conftest.py``), and a connected client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from morphnas.client import Client
from morphnas.server.app import RunningServer, ServerOptions, build_server
from morphnas.server.service import ServiceLimits


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'morphnas.db'}"


def start_server(url: str, **limits: object) -> RunningServer:
    options = ServerOptions(
        db_url=url,
        port=0,
        sweep_seconds=0.2,
        limits=ServiceLimits(**limits),  # type: ignore[arg-type]
    )
    return build_server(options)


@pytest.fixture
def server(db_url: str) -> Iterator[RunningServer]:
    running = start_server(db_url)
    yield running
    running.stop(0)


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.address, timeout=30) as c:
        yield c
