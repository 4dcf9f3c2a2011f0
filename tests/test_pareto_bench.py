"""Tests of ``bench/pareto.py``: its scoring (fast) and a ``--quick`` run end to end (slow), so
the bench does not rot as the API under it changes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "pareto.py"


def _bench() -> ModuleType:
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_pareto", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_pareto"] = module
    spec.loader.exec_module(module)
    return module


def test_hypervolumes_use_the_stated_reference_points() -> None:
    bench = _bench()
    trials = [
        {"val": 0.9, "params": 10_000, "latency_ms": 0.1},  # log10: 4, -1
        {"val": 0.6, "params": 1_000, "latency_ms": 0.01},  # log10: 3, -2
        {"val": 0.5, "params": 100_000, "latency_ms": 0.5},  # dominated on both
    ]
    hv_p, hv_l = bench.hypervolumes(trials)
    # params: [3, 4) at 0.6 - 0.1, [4, 6) at 0.9 - 0.1; latency: [-2, -1) at 0.5, [-1, 0) at 0.8
    assert hv_p == pytest.approx(0.5 * 1 + 0.8 * 2)
    assert hv_l == pytest.approx(0.5 * 1 + 0.8 * 1)
    assert bench.hypervolumes([]) == (0.0, 0.0)


def test_the_verdict_says_whether_morphnas_beats_both(tmp_path: Path) -> None:
    bench = _bench()
    results = [
        {"dataset": "digits", "method": m, "seed": 0, "hv_params": p, "hv_latency": q, "trials": []}
        for m, p, q in [
            ("morphnas-pareto", 2.0, 1.0),
            ("optuna-tpe", 1.5, 1.2),
            ("optuna-nsga2", 1.0, 0.5),
        ]
    ]
    lines = bench.verdict(results)
    assert "larger than both" in lines[0] and "not larger than both" in lines[1]


@pytest.mark.slow
def test_a_quick_run_writes_table_plot_and_json(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--quiet", "--jobs", "2", "--out", str(tmp_path)],
        check=True,
        cwd=ROOT,
        timeout=900,
    )
    payload = json.loads((tmp_path / "pareto.json").read_text())
    methods = {r["method"] for r in payload["results"]}
    assert methods == {"morphnas-pareto", "optuna-tpe", "optuna-nsga2"}
    for result in payload["results"]:
        assert result["trials"] and result["hv_params"] > 0 and result["hv_latency"] > 0
        assert all(t["latency_ms"] > 0 for t in result["trials"])
    assert "reference points" in (tmp_path / "pareto.md").read_text()
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
