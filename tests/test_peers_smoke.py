"""Tests of ``bench/peers.py``: its report logic and CNN space (fast), and a ``--quick`` run (slow).

The slow test runs the real bench end to end (two methods on digits, 6 CPU seconds each, in two
parallel processes) so the bench does not rot as the product's API changes under it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "peers.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _result(peers: ModuleType, method: str, seed: int, curve: list[list[float]]) -> object:
    return peers.SearchResult(
        dataset="digits",
        budget=100.0,
        method=method,
        seed=seed,
        best_val=curve[-1][1],
        test_accuracy=curve[-1][2],
        best_trial=0,
        trials=3,
        completed=3,
        cpu_seconds=100.5,
        suggest_seconds=1.0,
        suggest_share=0.01,
        wall_seconds=120.0,
        excluded_seconds=0.1,
        cut=True,
        curve=curve,
        trial_records=[],
    )


def test_mean_curve_and_time_to_reach_the_best_peer(tmp_path: Path) -> None:
    peers = _bench()
    main = [
        _result(
            peers, "morphnas-bayesian", 0, [[10, 0.90, 0.91], [40, 0.95, 0.97], [100, 0.95, 0.97]]
        ),
        _result(
            peers, "morphnas-bayesian", 1, [[20, 0.92, 0.93], [60, 0.96, 0.98], [100, 0.96, 0.98]]
        ),
    ]
    assert peers.test_at(main[0], 5) is None
    assert peers.test_at(main[0], 40) == 0.97
    # Defined once both seeds have a best model: at 20 s (0.91, 0.93), 40 s, 60 s, 100 s.
    curve = peers.mean_curve(main)
    assert [t for t, _ in curve] == [20, 40, 60, 100]
    assert [v for _, v in curve] == pytest.approx([0.92, 0.95, 0.975, 0.975])
    peer = [_result(peers, "optuna-tpe", s, [[50, 0.94, 0.95], [100, 0.94, 0.95]]) for s in (0, 1)]
    lines = peers.verdict([*main, *peer])
    assert len(lines) == 1
    # bayesian 97.5 % against optuna's 95 %; the mean curve first reaches 95 % at 40 s.
    assert "ahead of the best peer optuna-tpe 95.00 %" in lines[0]
    assert "(+2.50 points)" in lines[0]
    assert "first reaches it at 40 CPU s (40 % of the budget)" in lines[0]
    assert "holds it from 40 CPU s (40 %)" in lines[0]

    payload = {
        "command": "test",
        "machine": "test",
        "date": "now",
        "settings": {"budget_rule": "cut", "max_params": 100, "morphnas": {}, "optuna": {}},
        "results": [peers.asdict(r) for r in [*main, *peer]],
    }
    text = peers.write_report(payload, tmp_path)
    assert "| digits | 100 | morphnas-bayesian | 2 | 97.50 ± 0.71 |" in text
    assert (tmp_path / "peers.png").read_bytes().startswith(b"\x89PNG")


def test_cnn_space_builds_2d_and_1d_networks_of_the_sampled_size() -> None:
    import torch

    peers = _bench()
    params = {"blocks": 5, "width": 16, "kernel": 5, "residual": True, "dropout": 0.1, "lr": 1e-3}
    image = peers.build_cnn(params, (1, 8, 8), 10)
    assert image(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    sequence = peers.build_cnn({**params, "residual": False, "kernel": 3}, (1, 40), 10)
    assert sequence(torch.zeros(3, 1, 40)).shape == (3, 10)
    # Block 1: 1→16 conv (k=5, 2-D) + 1×1 projection; blocks 2-5: 16→16; BN 2×16 each; head.
    expected = (25 * 16 + 16) + 4 * (25 * 16 * 16) + 5 * 32 + (16 * 10 + 10)
    assert sum(p.numel() for p in image.parameters()) == expected


def test_cpu_clock_excludes_paused_sections() -> None:
    peers = _bench()
    clock = peers.CpuClock(budget=1e9)
    with clock.paused():
        sum(i * i for i in range(300_000))
    assert clock.excluded > 0
    assert clock.used() < clock.excluded
    assert not clock.spent()


@pytest.mark.slow
def test_peers_quick_runs_two_methods_in_parallel(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    methods = ["morphnas-bayesian", "optuna-tpe-short"]
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--quiet", "--jobs", "2", "--out", str(tmp_path)]
        + ["--methods", *methods],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    data = json.loads((tmp_path / "peers.json").read_text())
    results = data["results"]
    assert {(r["dataset"], r["budget"], r["method"], r["seed"]) for r in results} == {
        ("digits", 6.0, m, 0) for m in methods
    }
    for r in results:
        assert r["trials"] >= 1 and r["completed"] >= 1
        # The budget is a hard stop: at most one batch and one report past it.
        assert 6.0 <= r["cpu_seconds"] < 6.0 + 2.0
        assert 0.0 < r["suggest_share"] < 1.0
        assert 0.0 <= r["test_accuracy"] <= 1.0 and 0.0 <= r["best_val"] <= 1.0
        vals = [v for _, v, _ in r["curve"]]
        assert vals == sorted(vals) and vals[-1] == r["best_val"]
        times = [t for t, _, _ in r["curve"]]
        assert times == sorted(times) and times[-1] == r["cpu_seconds"]
        starts = [t["cpu_start"] for t in r["trial_records"]]
        assert starts == sorted(starts) and all(s < 6.0 for s in starts)  # none after the budget
    table = (tmp_path / "peers.md").read_text()
    assert "| digits | 6 | morphnas-bayesian | 1 |" in table
    assert "| digits | 6 | optuna-tpe-short | 1 |" in table
    assert (tmp_path / "peers.png").read_bytes().startswith(b"\x89PNG")
