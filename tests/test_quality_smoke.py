"""Smoke test of ``bench/quality.py``: its ``--quick`` mode runs and writes files that parse.

``--quick`` is 2 trials of each policy, 1 seed, digits only, 1 epoch per trial, through the same
server-side path as the full bench (SQLite repository, SearchService, TrainingService, Worker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "quality.py"


@pytest.mark.slow
def test_quality_quick_writes_table_json_and_plot(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--quiet", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    data = json.loads((tmp_path / "quality.json").read_text())
    assert data["settings"]["trials"] == 2
    results = data["results"]
    assert {(r["dataset"], r["policy"], r["seed"]) for r in results} == {
        ("digits", "bayesian", 0),
        ("digits", "random", 0),
    }
    for r in results:
        assert len(r["curve"]) == len(r["trials"]) == 2
        assert [t["number"] for t in r["trials"]] == [0, 1]
        assert r["trials"][0]["parent"] is None and r["trials"][0]["path_length"] == 0
        scores = [v for v in r["curve"] if v is not None]
        assert scores == sorted(scores)  # best so far never decreases
        assert 0.0 <= r["best_val"] <= 1.0
        assert r["best_val"] == max(scores)
        assert r["test_accuracy"] is not None and 0.0 <= r["test_accuracy"] <= 1.0

    table = (tmp_path / "quality.txt").read_text()
    assert "digits   bayesian" in table and "digits   random" in table
    png = (tmp_path / "quality.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
