"""``morphnas serve --executor ray``: server-side training by actors on a Ray cluster (slow).

The server runs as a real ``morphnas serve`` process joining the session's local cluster
(``--ray-address``), with two training actors (one CPU each, the whole cluster). The tests, in
order: a search of four trials trains; an actor killed in the middle of a trial (SIGKILL of its
process) loses the trial's lease, the trial is retried and the search completes with every trial
counted once; SIGTERM still drains the server and stops the actors although ``ray.init``
replaced the process's SIGTERM handler.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from morphnas.client import Client, SearchHandle  # noqa: E402
from morphnas.server.ray_executor import NAMESPACE, actor_name  # noqa: E402
from tests.ray.conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.slow

ACTORS = 2


@dataclass
class RayServer:
    process: subprocess.Popen[str]
    address: str

    def actors(self) -> list:
        return [
            ray.get_actor(actor_name(self.process.pid, i), namespace=NAMESPACE)
            for i in range(ACTORS)
        ]


@pytest.fixture(scope="module")
def ray_server(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayServer]:
    db = tmp_path_factory.mktemp("ray-executor") / "morphnas.db"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "morphnas.cli",
            "-v",
            "serve",
            "--db",
            f"sqlite:///{db}",
            "--port",
            "0",
            "--executor",
            "ray",
            "--ray-address",
            ray_cluster,
            "--workers",
            str(ACTORS),
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    assert line.startswith("morphnas listening on"), process.stderr.read() if process.stderr else ""
    server = RayServer(process, line.split()[-1])
    yield server
    if process.poll() is None:
        process.kill()
        process.wait()


def small_search(client: Client, name: str) -> SearchHandle:
    # A short lease, so a dead actor's trial is retried within seconds.
    return client.create_search(
        name, (1, 8, 8), 10, seed=0, seed_width=8, seed_depth=2, policy="random", lease_seconds=5
    )


def test_the_ray_executor_trains_a_search_of_four_trials(ray_server: RayServer) -> None:
    with Client(ray_server.address, timeout=60) as client:
        search = small_search(client, "four")
        search.train("digits", 4, epochs=2, device="cpu")
        events = list(search.watch(timeout=600))
        assert events[-1].kind == "search_finished", [e.kind for e in events][-5:]
        trials = search.trials()
        assert len(trials) == 4 and all(t.state == "COMPLETED" for t in trials)
        workers = {e.payload["worker"] for e in events if e.kind == "trial_started"}
        assert all(w.startswith("ray") for w in workers)  # trained by the Ray actors
        names = {info["name"] for info in ray.get([a.info.remote() for a in ray_server.actors()])}
        assert workers <= names


def test_a_ray_worker_killed_mid_trial_loses_its_lease_and_the_trial_is_retried(
    ray_server: RayServer,
) -> None:
    with Client(ray_server.address, timeout=60) as client:
        search = small_search(client, "killed")
        search.train("digits", 3, epochs=12, patience=12, device="cpu")
        pids = {
            i["name"]: i["pid"] for i in ray.get([a.info.remote() for a in ray_server.actors()])
        }
        started: dict[str, str] = {}
        victim = None
        for event in search.watch(timeout=600):
            if event.kind == "trial_started":
                started[event.payload["trial_id"]] = event.payload["worker"]
            if event.kind == "epoch_finished":  # in the middle of training: kill its actor
                victim = event.payload["trial_id"]
                os.kill(pids[started[victim]], signal.SIGKILL)
                break
        events = list(search.watch(timeout=600))
        assert events[-1].kind == "search_finished", [e.kind for e in events][-5:]
        trials = {t.id: t for t in search.trials()}
        assert trials[victim].state == "STALE"  # its lease ran out; its report never came
        retried = [
            t
            for t in trials.values()
            if t.info.architecture_hash == trials[victim].info.architecture_hash and t.id != victim
        ]
        assert [t.state for t in retried] == ["COMPLETED"]  # handed out again, once
        states = [(t.number, t.state) for t in trials.values()]
        assert sum(t.state == "COMPLETED" for t in trials.values()) == 3, states  # none twice
        assert len(ray_server.actors()) == ACTORS  # Ray restarted the killed actor
        ray.get([a.info.remote() for a in ray_server.actors()], timeout=120)


def test_sigterm_drains_the_server_and_stops_the_actors(ray_server: RayServer) -> None:
    ray_server.process.send_signal(signal.SIGTERM)
    _, stderr = ray_server.process.communicate(timeout=120)
    # Ray's own handler would exit with status 15 (sys.exit(signum)) and leave the actors running.
    assert ray_server.process.returncode == 0, stderr[-3000:]
    assert "server stopped" in stderr
    for i in range(ACTORS):
        with pytest.raises(ValueError):  # killed for good: no restart
            ray.get_actor(actor_name(ray_server.process.pid, i), namespace=NAMESPACE)


def test_the_server_database_url_is_absolute_for_the_actors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from morphnas.server.ray_executor import absolute_db_url

    monkeypatch.chdir(tmp_path)  # restored afterwards: later tests run from the repository
    assert absolute_db_url("sqlite:///m.db") == f"sqlite:///{tmp_path / 'm.db'}"
