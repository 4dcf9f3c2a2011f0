"""The `morphnas` command as a user runs it: serve prints one ready line, SIGTERM exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from morphnas.client import Client


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "morphnas.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_serve_lists_and_drains(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "morphnas.cli", "serve", "--db", db, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("morphnas listening on 127.0.0.1:"), line
        address = line.removeprefix("morphnas listening on ")
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            reflected = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            )
            names = {s.name for r in reflected for s in r.list_services_response.service}
            assert "morphnas.v1.MorphNas" in names and "grpc.health.v1.Health" in names
        with Client(address) as c:
            search = c.create_search(
                name="cli-demo", input_shape=(8,), num_classes=2, policy="random"
            )
            [t] = search.suggest(worker_id="w")
            t.report(score=0.75)
        listing = _run_cli("searches", "--server", address)
        assert listing.returncode == 0, listing.stderr
        assert "cli-demo" in listing.stdout and "0.7500" in listing.stdout
        trials = _run_cli("trials", search.id, "--server", address)
        assert trials.returncode == 0, trials.stderr
        assert "COMPLETED" in trials.stdout and "seed" in trials.stdout
        assert "beat" in trials.stdout.splitlines()[1]  # the column header
        missing = _run_cli("trials", "0" * 32, "--server", address)
        assert missing.returncode == 1 and "no search" in missing.stderr.lower()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.strip() == ""  # exactly one line was printed, and it was read above


def test_generated_code_matches_protos() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"],
        cwd=Path(__file__).resolve().parents[2],  # the repository, whatever the cwd is
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_trials_table_says_whether_a_trial_beat_its_parent() -> None:
    from types import SimpleNamespace

    from morphnas.cli import _beat_parent

    seed = SimpleNamespace(id="a", parent_id=None, score=0.9)
    better = SimpleNamespace(id="b", parent_id="a", score=0.95)
    tied = SimpleNamespace(id="c", parent_id="a", score=0.9)
    pending = SimpleNamespace(id="d", parent_id="b", score=None)
    trials = [seed, better, tied, pending]
    assert [_beat_parent(trials, t) for t in trials] == ["-", "yes", "no", "-"]
