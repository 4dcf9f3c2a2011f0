"""``examples/ray_tune.py`` runs as a user would run it (slow): against the server named by
MORPHNAS_SERVER, joining the session's Ray cluster through RAY_ADDRESS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.ray.conftest import ROOT

pytestmark = pytest.mark.slow


def test_the_ray_tune_example_runs_a_search(ray_cluster, module_server, module_client, tmp_path):
    env = {
        **os.environ,
        "MORPHNAS_SERVER": module_server.address,
        "RAY_ADDRESS": ray_cluster,
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "ray_tune.py"),
            "--trials",
            "4",
            "--epochs",
            "1",
            "--storage",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 Tune trials, 0 errors" in result.stdout
    assert "best: trial" in result.stdout
    [search] = [s for s in module_client.list_searches() if s.name == "ray-tune-digits"]
    assert [t.state for t in search.trials()] == ["COMPLETED"] * 4
