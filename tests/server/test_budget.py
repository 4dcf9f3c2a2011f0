"""Compute budgets of server-side runs and early stopping across trials, through the API, the
SDK and the `morphnas run` command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from morphnas.client import Client, InvalidArgumentError
from morphnas.nn.datasets import builtin_dataset
from morphnas.options import parse_budget
from morphnas.runner import _follow
from morphnas.server.app import RunningServer
from morphnas.server.training import TrainingService
from morphnas.server.worker import Worker

#: How far past its budget a run with one worker may go: one batch, the restore of the best
#: weights and the report (measured: 0.01 to 0.2 s), plus slack for a CI machine so loaded that
#: one batch takes a second.
ONE_WORKER_OVERSHOOT_S = 2.0


def _workers(server: RunningServer, n: int) -> Iterator[list[Worker]]:
    workers = [
        Worker(TrainingService(server.service), name=f"w{i}", poll_seconds=0.1, device="cpu")
        for i in range(n)
    ]
    threads = [threading.Thread(target=w.run_forever, daemon=True) for w in workers]
    for t in threads:
        t.start()
    yield workers
    for w in workers:
        w.stop()
    for t in threads:
        t.join(60)


@pytest.fixture
def worker(server: RunningServer) -> Iterator[list[Worker]]:
    yield from _workers(server, 1)


def _small_search(client: Client, **options: object):
    return client.create_search(
        name="digits",
        input_shape=(1, 8, 8),
        num_classes=10,
        seed=0,
        seed_width=8,
        seed_depth=1,
        policy="random",
        **options,
    )


def test_a_budget_ends_the_run_cleanly(client: Client, worker: list[Worker]) -> None:
    search = _small_search(client)
    # Trials of at most 1 s each (more on a loaded machine: the limit is checked before each
    # batch): several fit, the last one cut to what is left.
    run = search.train("digits", budget_seconds=8.0, epochs=50, max_seconds=1.0, device="cpu")
    assert run.trials == 10_000 and run.budget_seconds == 8.0 and run.spent_seconds == 0.0
    events = list(search.watch(timeout=300))
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and events[0].payload["budget_seconds"] == 8.0
    assert kinds[-1] == "search_finished"
    finished = events[-1].payload
    assert finished["reason"] == "budget spent" and finished["budget_seconds"] == 8.0
    spent = finished["spent_seconds"]
    assert 8.0 <= spent <= 8.0 + ONE_WORKER_OVERSHOOT_S, spent
    # Every trial that started finished: none started after the budget was spent.
    started = [e.payload["trial_id"] for e in events if e.kind == "trial_started"]
    ended = [e.payload for e in events if e.kind == "trial_finished"]
    assert len(started) >= 2 and sorted(started) == sorted(p["trial_id"] for p in ended)
    assert all(p["state"] == "COMPLETED" for p in ended)
    # The run's seconds are its trials' seconds (each charged from just before its training).
    trained = sum(p["seconds"] for p in ended)
    assert trained <= spent <= trained + 1.0 * len(ended)
    assert ended[-1]["stopped_reason"] in ("time_limit", "budget")  # cut to what was left
    run = search.training_run()
    assert run.state == "DONE" and run.spent_seconds == spent and run.best_trial_id
    assert 0.0 < run.test_accuracy <= 1.0  # the best trial was evaluated on the test split
    assert all(t.state == "COMPLETED" for t in search.trials())


def test_two_workers_share_one_budget(server: RunningServer, client: Client) -> None:
    workers = _workers(server, 2)
    next(workers)
    try:
        search = _small_search(client)
        search.train("digits", budget_seconds=8.0, epochs=50, max_seconds=1.0, device="cpu")
        events = list(search.watch(timeout=300))
    finally:
        next(workers, None)
    finished = events[-1].payload
    assert events[-1].kind == "search_finished" and finished["reason"] == "budget spent"
    # Each worker sees the other's seconds as of its last epoch: the overshoot is about one
    # epoch of the other worker (tenths of a second here; seconds on a loaded machine).
    assert 8.0 <= finished["spent_seconds"] <= 8.0 + 3 * ONE_WORKER_OVERSHOOT_S
    assert len({e.payload["worker"] for e in events if e.kind == "trial_started"}) == 2


def test_a_trial_count_still_ends_a_run_with_a_budget(client: Client, worker: list[Worker]) -> None:
    search = _small_search(client)
    search.train("digits", 2, budget_seconds=3600.0, epochs=1, device="cpu")
    events = list(search.watch(timeout=300))
    finished = events[-1].payload
    assert finished["reason"] == "all trials done" and finished["trials"] == 2
    assert 0 < finished["spent_seconds"] < 3600.0
    assert search.training_run().spent_seconds == finished["spent_seconds"]


@pytest.mark.parametrize(
    ("trials", "budget", "words"),
    [
        (0, 0.0, "0 is allowed with a budget_seconds"),
        (-1, 10.0, "trials must be between 1 and 10000"),
        (10_001, 0.0, "trials must be between 1 and 10000"),
        (1, -1.0, "budget_seconds"),
        (1, float("nan"), "budget_seconds"),
        (1, 31 * 24 * 3600.0, "30 days"),
    ],
)
def test_bad_budgets_are_refused(client: Client, trials: int, budget: float, words: str) -> None:
    search = _small_search(client)
    with pytest.raises(InvalidArgumentError, match=words):
        search.train("digits", trials, budget_seconds=budget)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("120", 120.0),
        (" 2M ", 120.0),
        ("0.5", 0.5),
    ],
)
def test_parse_budget(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "-5m", "0", "0s", "nan", "inf", "1e9h", "1h30m"])
def test_parse_budget_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="--budget"):
        parse_budget(text)


def test_morphnas_run_refuses_a_bad_budget_before_creating_anything(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "morphnas.cli", "run", "--dataset", "digits", "--budget", "10x"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--budget '10x'" in lines[0] and "10m" in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # no database, no server


def test_progress_shows_the_budget(capsys: pytest.CaptureFixture[str]) -> None:
    events = [
        ("trial_started", {"trial_id": "a", "number": 0, "num_params": 10}),
        ("epoch_finished", {"trial_id": "a", "val_accuracy": 0.5, "seconds": 30.0}),
        (
            "trial_finished",
            {"trial_id": "a", "number": 0, "state": "COMPLETED", "score": 0.5, "seconds": 41.0},
        ),
        ("trial_started", {"trial_id": "b", "number": 1, "num_params": 10}),
        (
            "trial_finished",
            {
                "trial_id": "b",
                "number": 1,
                "state": "COMPLETED",
                "score": 0.4,
                "seconds": 90.0,
                "stopped_reason": "pruned",
            },
        ),
        ("search_finished", {"reason": "budget spent", "spent_seconds": 131.0}),
    ]
    search = SimpleNamespace(
        watch=lambda: iter(SimpleNamespace(kind=k, payload=p) for k, p in events)
    )
    finished = _follow(search, 0, 5, quiet=False, budget_seconds=120.0)  # type: ignore[arg-type]
    assert finished == {"reason": "budget spent", "spent_seconds": 131.0, "kind": "search_finished"}
    err = capsys.readouterr().err
    assert "41/120 s of budget" in err and "120/120 s of budget" in err  # capped at the budget
    assert "trials=2" in err and "last=pruned" in err


def _shuffled_digits() -> bytes:
    """Digits with labels shuffled: no network can learn them, so a child trained on them falls
    clearly below the curves its parent and peers had on the real labels."""
    data = builtin_dataset("digits")
    labels = np.random.default_rng(0).permutation(data.y)
    buffer = io.BytesIO()
    np.savez(buffer, x=data.x, y=labels)
    return buffer.getvalue()


@pytest.mark.slow
def test_a_clearly_bad_child_is_stopped_early(client: Client, worker: list[Worker]) -> None:
    search = _small_search(client)
    search.train("digits", 4, epochs=4, patience=50, device="cpu")  # a seed and 3 peers
    first = list(search.watch(timeout=600))
    assert first[-1].kind == "search_finished"
    assert not any(
        e.payload.get("stopped_reason") == "pruned" for e in first if e.kind == "trial_finished"
    )
    shuffled = client.upload_dataset(_shuffled_digits(), name="shuffled")
    search.train(shuffled.id, 1, epochs=12, patience=50, device="cpu")
    after = first[-1].id
    events = list(search.watch(after_event_id=after, timeout=600))
    [child] = [e.payload for e in events if e.kind == "trial_finished"]
    epochs = [e.payload for e in events if e.kind == "epoch_finished"]
    assert child["state"] == "COMPLETED" and child["reason"] == ""  # honest, not FAILED
    assert child["stopped_reason"] == "pruned", child
    assert child["epochs"] == 3 == len(epochs)  # stopped at the end of the warm-up, not at 12
    assert child["score"] is not None and child["score"] < 0.5
    trial = next(t for t in search.trials() if t.id == child["trial_id"])
    assert trial.state == "COMPLETED" and trial.parent_id and trial.info.has_trained_weights
    assert json.loads(json.dumps(events[-1].payload))["reason"] == "all trials done"


def test_ask_tell_workers_are_told_to_stop_a_clearly_bad_child(client: Client) -> None:
    search = client.create_search(name="remote", input_shape=(12,), num_classes=3, policy="random")
    [seed] = search.suggest(worker_id="seed")
    assert [seed.progress(s, v) for s, v in enumerate([0.5, 0.7, 0.8, 0.85], start=1)] == [
        False
    ] * 4  # a seed is never stopped
    seed.report(score=0.85, weights=seed.initial_weights())
    for i, values in enumerate(([0.80, 0.85, 0.88], [0.82, 0.86, 0.90], [0.70, 0.80, 0.84])):
        [peer] = search.suggest(worker_id=f"peer{i}")
        for step, value in enumerate(values, start=1):
            peer.progress(step, value)
        peer.report(score=max(values), weights=peer.initial_weights())
    [good, bad] = search.suggest(2, worker_id="w")
    assert bad.parent_id and good.parent_id
    assert [bad.progress(s, 0.2) for s in (1, 2, 3)] == [False, False, True]
    assert [good.progress(s, 0.9) for s in (1, 2, 3)] == [False, False, False]
    bad.report(score=0.2)  # its best so far, as COMPLETED
    assert bad.refresh().state == "COMPLETED"
