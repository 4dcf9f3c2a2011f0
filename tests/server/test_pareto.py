"""Pareto searches through the API, on SQLite and PostgreSQL: named metrics, the front,
constraints, export by constraint, the CLI table, and the worker's latency measurement."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from morphnas import cli
from morphnas.client import (
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    SearchHandle,
    TrialInfo,
)
from morphnas.nn.onnx_export import onnx_metadata
from morphnas.server.app import RunningServer
from morphnas.server.training import TrainingService
from morphnas.server.worker import Worker

SCORES = [0.5, 0.7, 0.6, 0.7, 0.9, 0.8, 0.75]
LATENCIES = [0.3, 0.1, 0.2, 0.1, 0.4, 0.2, None]  # the last trial reports no latency


def _pareto_search(client: Client, **options: object) -> SearchHandle:
    return client.create_search(
        name="pareto",
        input_shape=(12,),
        num_classes=3,
        policy="random",
        objectives=["params", "latency_ms"],
        **options,
    )


def _told(search: SearchHandle, *, weights: bool = True) -> list[TrialInfo]:
    """Nine trials: seven COMPLETED with the scores and latencies above, one FAILED, one
    ACTIVE."""
    trials = search.suggest(9, worker_id="w")
    for trial, score, latency in zip(trials, SCORES, LATENCIES, strict=False):
        trial.report(
            score=score,
            weights=trial.initial_weights() if weights else None,
            metrics={} if latency is None else {"latency_ms": latency, "latency_ms_batch": 1.0},
            measured_on="" if latency is None else "test box",
            worker_id="w",
        )
    trials[7].report(state="FAILED", reason="diverged", worker_id="w")
    return [t.refresh().info for t in trials]


def _brute_front(trials: list[TrialInfo], keys: list[str]) -> set[str]:
    def cost(t: TrialInfo) -> list[float]:
        return [float(t.num_params) if k == "params" else t.metrics["latency_ms"] for k in keys]

    pool = [
        t
        for t in trials
        if t.state == "COMPLETED" and ("latency_ms" not in keys or "latency_ms" in t.metrics)
    ]

    def dominated(j: TrialInfo) -> bool:
        return any(
            i.score >= j.score  # type: ignore[operator]
            and all(a <= b for a, b in zip(cost(i), cost(j), strict=True))
            and (i.score > j.score or any(a < b for a, b in zip(cost(i), cost(j), strict=True)))  # type: ignore[operator]
            for i in pool
        )

    return {t.id for t in pool if not dominated(t)}


def test_the_front_is_the_non_dominated_set_of_completed_trials(client: Client) -> None:
    search = _pareto_search(client)
    assert search.info.objectives == ("params", "latency_ms")
    trials = _told(search)
    assert trials[0].metrics == {"latency_ms": 0.3, "latency_ms_batch": 1.0}
    assert trials[0].measured_on == "test box" and trials[6].metrics == {}

    front = search.pareto()
    assert front.objectives == ("params", "latency_ms")
    assert {t.id for t in front.trials} == _brute_front(trials, ["params", "latency_ms"])
    assert [t.num_params for t in front.trials] == sorted(t.num_params for t in front.trials)
    # Other objectives on request: params alone also sees the trial without a latency.
    by_params = search.pareto(["params"])
    assert {t.id for t in by_params.trials} == _brute_front(trials, ["params"])
    # A trial without a measured latency has no place on a latency front.
    assert trials[6].id not in {t.id for t in front.trials}


def test_constraints_exclude_what_they_must(client: Client) -> None:
    search = _pareto_search(client)
    trials = _told(search)
    fast = search.pareto(max_latency_ms=0.2)
    assert fast.trials and all(t.metrics["latency_ms"] <= 0.2 for t in fast.trials)
    assert trials[6].id not in {t.id for t in search.pareto(["params"], max_latency_ms=10).trials}
    cap = sorted(t.num_params for t in trials)[3]
    small = search.pareto(["params"], max_params=cap)
    assert small.trials and all(t.num_params <= cap for t in small.trials)
    eligible = [t for t in trials if t.state == "COMPLETED" and t.num_params <= cap]
    assert {t.id for t in small.trials} == _brute_front(eligible, ["params"])
    # A search's own max_latency_ms applies when none is asked for.
    strict = _pareto_search(client, max_latency_ms=0.15)
    told = _told(strict)
    assert {t.id for t in strict.pareto().trials} <= {
        t.id for t in told if t.metrics.get("latency_ms", 1.0) <= 0.15
    }


def test_export_by_constraint_picks_the_most_accurate_trial_that_meets_it(
    client: Client,
) -> None:
    search = _pareto_search(client)
    trials = _told(search)
    completed = [t for t in trials if t.state == "COMPLETED"]

    def expected(latency: float | None, params: int | None) -> str:
        meets = [
            t
            for t in completed
            if (latency is None or t.metrics.get("latency_ms", np.inf) <= latency)
            and (params is None or t.num_params <= params)
        ]
        return max(meets, key=lambda t: (t.score, -t.number)).id

    cap = sorted(t.num_params for t in completed)[2]
    for latency, params in [(0.2, None), (0.1, None), (None, cap), (0.25, cap), (10.0, None)]:
        blob = search.export_onnx(max_latency_ms=latency, max_params=params)
        assert onnx_metadata(blob)["trial"] == expected(latency, params), (latency, params)
    with pytest.raises(FailedPreconditionError, match="latency_ms <= 0.01"):
        search.export_onnx(max_latency_ms=0.01)
    with pytest.raises(InvalidArgumentError, match="not both"):
        client.export_onnx(search_id=search.id, trial_id=trials[0].id, max_params=cap)


def test_a_repeated_report_must_carry_the_same_metrics(client: Client) -> None:
    search = _pareto_search(client)
    [trial] = search.suggest(worker_id="w")
    trial.report(score=0.5, metrics={"latency_ms": 0.2}, measured_on="box")
    trial.report(score=0.5, metrics={"latency_ms": 0.2}, measured_on="box")  # a no-op
    with pytest.raises(FailedPreconditionError, match="other metrics"):
        trial.report(score=0.5, metrics={"latency_ms": 0.3})


def test_unknown_objectives_are_refused(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="unknown objective"):
        _pareto_search(client).pareto(["accuracy"])
    with pytest.raises(InvalidArgumentError, match="unknown objective"):
        client.create_search(name="x", input_shape=(4,), num_classes=2, objectives=["speed"])


def test_the_cli_prints_the_front_and_exports_by_budget(
    client: Client, server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    search = _pareto_search(client)
    trials = _told(search)
    assert cli.main(["pareto", search.id, "--server", server.address]) == 0
    out = capsys.readouterr().out
    front = search.pareto()
    assert f"{len(front.trials)} trial(s)" in out and "latency measured on: test box" in out
    for t in front.trials:
        assert t.id in out
    target = tmp_path / "fast.onnx"
    args = ["export", search.id, "-o", str(target), "--max-latency-ms", "0.1"]
    assert cli.main([*args, "--server", server.address]) == 0
    best_fast = max(
        (t for t in trials if t.metrics.get("latency_ms", 1.0) <= 0.1), key=lambda t: t.score
    )
    assert onnx_metadata(target.read_bytes())["trial"] == best_fast.id


def test_the_worker_measures_latency_for_a_pareto_search(
    client: Client, server: RunningServer
) -> None:
    worker = Worker(TrainingService(server.service), name="w", poll_seconds=0.1, device="cpu")
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    try:
        search = client.create_search(
            name="digits",
            input_shape=(1, 8, 8),
            num_classes=10,
            seed_width=16,
            objectives=["latency_ms"],
            latency_batch_size=8,
        )
        search.train("digits", 2, epochs=1, max_seconds=60, device="cpu")
        events = list(search.watch(timeout=300))
    finally:
        worker.stop()
        thread.join(60)
    trials = search.trials()
    assert [t.state for t in trials] == ["COMPLETED", "COMPLETED"]
    for t in trials:
        assert t.info.metrics["latency_ms"] > 0 and t.info.metrics["latency_batch_size"] == 8
        assert t.info.metrics["latency_ms_batch"] > 0 and "logical CPUs" in t.info.measured_on
    finished = [e.payload for e in events if e.kind == "trial_finished"]
    assert all(p["latency_ms"] > 0 for p in finished)
    # The second trial is the ladder's smallest seed, not a morph of the first.
    assert trials[1].parent_id is None and trials[1].info.num_params < trials[0].info.num_params


def test_run_takes_objectives_for_its_search() -> None:
    from morphnas.pareto_cli import objective_options

    args = cli.build_parser().parse_args(
        ["run", "--dataset", "digits", "--objectives", "params", "latency_ms"]
        + ["--max-latency-ms", "0.5"]
    )
    assert objective_options(args) == {
        "objectives": ["params", "latency_ms"],
        "max_latency_ms": 0.5,
    }
    plain = cli.build_parser().parse_args(["run", "--dataset", "digits"])
    assert objective_options(plain) == {}
