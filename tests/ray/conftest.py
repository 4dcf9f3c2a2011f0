"""One local Ray cluster for all the Ray tests of a session (2 CPUs, no dashboard: about 7 s
and 0.9 GB to start), and a morphnas server per test module for them to talk to.

The cluster's worker processes must import ``morphnas`` and ``tests`` as this process does:
``PYTHONPATH`` names the repository root before the cluster starts (its processes inherit it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from morphnas.client import Client
from morphnas.server.app import RunningServer
from tests.server.conftest import start_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address of the session's Ray cluster (other processes join it with this)."""
    ray = pytest.importorskip("ray")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), before) if p)
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace="morphnas-tests",
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server on a SQLite file of this module's own."""
    path = tmp_path_factory.mktemp("morphnas") / "morphnas.db"
    running = start_server(f"sqlite:///{path}")
    yield running
    running.stop(0)


@pytest.fixture(scope="module")
def module_client(module_server: RunningServer) -> Iterator[Client]:
    with Client(module_server.address, timeout=60) as client:
        yield client
