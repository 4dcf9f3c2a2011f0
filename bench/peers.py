"""Equal compute against the peers: morphnas against what an engineer would use instead.

Every search gets the same budget of CPU seconds: ``time.process_time()`` of the process that
runs it, one torch thread (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``), everything of
the search counted: suggest calls (morphnas' policy and storage, Optuna's sampler), weight
transfer, training, per-epoch validation, reports to the database or the study.

Budget rule, the same for every method: the clock is checked before every training batch and
before every new trial. When the budget is spent the running trial is **cut** before its next
batch and counts with its best finished epoch (for a morphnas child epoch 0, its inherited
weights, is a finished epoch: that is how morphnas' trainer scores a trial; an Optuna trial cut
before its first epoch has no score). No new trial starts after the budget. The CPU seconds a
search really used are reported (they exceed the budget by the cut trial's last batch and
report).

Not counted: making the dataset, the split and the normalisation (the same for every method),
importing torch, and the test evaluations. The test split never steers a search: after the
search the test accuracy of its best-by-validation model is the result. For the best-so-far
curve the bench also measures the test accuracy of each new best model as it appears; that CPU
time is taken out of the budget clock and no decision reads it.

Methods (``--methods``):

* ``morphnas-bayesian``, ``morphnas-random``: a real morphnas search in-process, as the server's
  worker runs one: a temporary SQLite :class:`Repository`, :class:`SearchService`,
  ``create_search`` with the CLI's defaults (seed width/depth, parameter cap), then per trial
  ``suggest`` → the trial's initial (inherited) weights → ``train_trial`` with the run's
  :class:`TrainConfig` (:func:`morphnas_train_config`: the worker's recipe, ``nn.recipe``; from
  ``morphnas run``'s default budget, except its per-trial wall-clock limit, lifted unless
  ``--trial-max-seconds``: on a busy machine it would cut trials by load, not by compute, and
  Optuna's trials have none) → ``progress`` after every epoch (its ``should_stop`` stops
  the trial) → ``report`` with the trained weights.
* ``optuna-tpe``: Optuna ``TPESampler(seed)`` + a pruner (``--pruner median`` (default) or
  ``hyperband``) over a conventional CNN written here in plain torch: 2–5 blocks (conv → BN →
  ReLU, optional residual with a 1×1 projection when widths differ, max-pool after blocks 2 and
  4), width 16–128 (log-uniform int), kernel 3 or 5, residual on/off, dropout 0–0.5 before the
  linear head, learning rate log-uniform 1e-4–1e-2; 2-D convolutions for digits (1×8×8), 1-D for
  MNIST-1D (1×40). Trained from scratch with AdamW (weight decay 1e-2, morphnas' default), the
  same batch size (128), split and normalisation as morphnas, a per-step cosine schedule as in
  morphnas' trainer, channels-last for images as morphnas' trainer; ``--optuna-epochs`` (default
  20, as the outside measurement) epochs per trial, validation accuracy reported to the pruner
  after every epoch; a trial's value is its best epoch's validation accuracy (those weights are
  kept). A sampled network over the parameter cap is pruned before training (its CPU counts).
* ``optuna-tpe-short``: the same with ``--optuna-short-epochs`` (default 5) epochs per trial.

Median or Hyperband: the default is ``MedianPruner(n_startup_trials=5, n_warmup_steps=2)`` (a
trial can be pruned from its 2nd epoch on, once 5 trials have finished), the pruner of the
outside measurement and of Optuna's tutorials; with the budgets here (a few dozen trials)
Hyperband's brackets barely fill. ``--pruner hyperband`` runs ``HyperbandPruner(min_resource=1,
max_resource=epochs, reduction_factor=3)`` for comparison.

Datasets: ``digits`` and ``mnist1d`` from :mod:`morphnas.nn.datasets`, split by
``dataset_split(data, seed)`` (the search seed, as the server does), normalised with the training
split's statistics; the same for every method of a seed.

Output in ``--out`` (default ``bench/results``): ``peers.json`` (every search, written after each
one; ``--resume`` skips searches already there whose method's settings are unchanged: a new
seed network or recipe reruns the morphnas searches and keeps the Optuna ones), ``peers.md`` (the
table) and ``peers.png`` (best-so-far test accuracy against CPU seconds, mean over seeds).

Run::

    python bench/peers.py --quick                      # smoke test: digits, 1 seed, 6 CPU-s
    python bench/peers.py --datasets digits --budgets 60 --seeds 0 --jobs 2
    python bench/peers.py --datasets digits mnist1d --budgets 120 480 --seeds 0 1 2 --jobs 2
    python bench/peers.py --report                     # table and plot again from the JSON
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import math
import multiprocessing
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
DATASETS = ("digits", "mnist1d")
METHODS = ("morphnas-bayesian", "morphnas-random", "optuna-tpe", "optuna-tpe-short")
DEFAULT_METHODS = METHODS
#: The method the goal is about; "peers" are every other method in the run.
MAIN = "morphnas-bayesian"
BATCH_SIZE = 128
#: The largest per-trial wall-clock limit a TrainingBudget takes: "no limit" for the bench.
MAX_TRIAL_SECONDS = 7 * 24 * 3600.0
WEIGHT_DECAY = 1e-2


# ------------------------------------------------------------------------------------ records


@dataclass
class TrialRecord:
    """One trial of a search, with the CPU clock (budget seconds) when it started and ended."""

    number: int
    state: str  # COMPLETED, PRUNED, CUT, FAILED, OVER_CAP
    val: float | None  # the trial's score: best epoch's validation accuracy
    epochs: int  # epochs trained
    params: int
    cpu_start: float
    cpu_end: float
    suggest_seconds: float
    parent: int | None = None  # morphnas: the parent's trial number
    path: list[str] = field(default_factory=list)  # morphnas: the morph kinds
    best_epoch: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # optuna: the sampled parameters


@dataclass
class SearchResult:
    """One (dataset, budget, method, seed) search."""

    dataset: str
    budget: float
    method: str
    seed: int
    best_val: float | None
    test_accuracy: float | None  # of the best-by-validation model
    best_trial: int | None
    trials: int  # trials started (every state)
    completed: int  # trials with a score (COMPLETED and CUT with a finished epoch)
    cpu_seconds: float  # budget clock at the end (suggest + training + validation + reports)
    suggest_seconds: float
    suggest_share: float  # suggest_seconds / cpu_seconds
    wall_seconds: float
    excluded_seconds: float  # CPU for the curve's test evaluations, not on the budget clock
    cut: bool  # a trial was cut at the budget
    #: best-so-far after each improvement: [cpu seconds, best val, test of that best model]
    curve: list[list[float]] = field(default_factory=list)
    trial_records: list[TrialRecord] = field(default_factory=list)


class CpuClock:
    """The budget clock: process CPU seconds since start, minus excluded sections."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.started = time.process_time()
        self.excluded = 0.0

    def used(self) -> float:
        return time.process_time() - self.started - self.excluded

    def spent(self) -> bool:
        return self.used() >= self.budget

    @contextmanager
    def paused(self) -> Iterator[None]:
        began = time.process_time()
        try:
            yield
        finally:
            self.excluded += time.process_time() - began


class Best:
    """Best-by-validation tracking (earliest on ties) and the curve of improvements."""

    def __init__(self) -> None:
        self.val: float | None = None
        self.test: float | None = None
        self.trial: int | None = None
        self.curve: list[list[float]] = []

    def offer(self, number: int, val: float, cpu: float, test: Callable[[], float]) -> None:
        if self.val is not None and val <= self.val:
            return
        self.val, self.trial, self.test = val, number, test()
        self.curve.append([cpu, val, self.test])


# ------------------------------------------------------------------------------------ settings


def cli_defaults() -> dict[str, Any]:
    """What ``morphnas run --dataset X`` uses unless told otherwise (read from the code)."""
    from morphnas.core.records import SearchConfig, TrainingBudget
    from morphnas.runner import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dataset", "digits"])
    config = {f.name: f.default for f in dataclasses.fields(SearchConfig)}
    budget = {f.name: f.default for f in dataclasses.fields(TrainingBudget)}
    return {
        "max_params": config["max_params"],
        "seed_width": config["seed_width"],
        "seed_depth": config["seed_depth"],
        "epochs": getattr(args, "epochs", budget["epochs"]),
        "max_seconds": getattr(args, "max_seconds", budget["max_seconds"]),
        "patience": budget["patience"],
        "batch_size": budget["batch_size"],
        "optimizer": budget["optimizer"],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument(
        "--budgets", nargs="+", type=float, default=[120.0, 480.0], help="CPU seconds per search"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    p.add_argument("--jobs", type=int, default=1, help="searches in parallel processes")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder of peers.{json,md,png}")
    p.add_argument("--pruner", choices=("median", "hyperband"), default="median")
    p.add_argument("--optuna-epochs", type=int, default=20, help="epochs per optuna-tpe trial")
    p.add_argument(
        "--optuna-short-epochs", type=int, default=5, help="epochs per optuna-tpe-short trial"
    )
    p.add_argument(
        "--max-params",
        type=int,
        default=None,
        help="parameter cap of every method (default: morphnas' CLI default)",
    )
    p.add_argument(
        "--trial-max-seconds",
        type=float,
        default=None,
        help="morphnas' per-trial wall-clock limit (default: none, the CPU budget is the limit; "
        "a wall-clock limit would depend on how busy the machine is, and Optuna has none)",
    )
    p.add_argument("--resume", action="store_true", help="skip searches already in the JSON")
    p.add_argument("--report", action="store_true", help="only re-render table and plot")
    p.add_argument("--quick", action="store_true", help="smoke test: digits, 6 CPU-s, seed 0")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    args = p.parse_args(argv)
    if args.quick:
        args.budgets, args.seeds = [6.0], [0]
        given = sys.argv[1:] if argv is None else list(argv)
        if "--datasets" not in given:
            args.datasets = ["digits"]
    if args.jobs < 1 or any(b <= 0 for b in args.budgets):
        p.error("--jobs and --budgets must be positive")
    return args


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """What makes two runs comparable (``--resume`` reuses only searches with equal settings)."""
    defaults = cli_defaults()
    defaults["max_seconds"] = args.trial_max_seconds or MAX_TRIAL_SECONDS
    return {
        "max_params": args.max_params or defaults["max_params"],
        "morphnas": defaults,
        "morphnas_train_config": "morphnas.nn.recipe.recipe_config",
        "morphnas_recipe": recipe_settings(),
        "optuna": {
            "pruner": args.pruner,
            "epochs": {
                "optuna-tpe": args.optuna_epochs,
                "optuna-tpe-short": args.optuna_short_epochs,
            },
            "batch_size": BATCH_SIZE,
            "optimizer": "adamw",
            "weight_decay": WEIGHT_DECAY,
        },
        "budget_rule": "cut before the next batch; the cut trial counts with its best epoch",
    }


def recipe_settings() -> dict[str, Any]:
    """The constants of the seed network and of a child's training recipe (they change what a
    morphnas search does, so a change must not ``--resume`` old morphnas searches)."""
    from morphnas.core import seeds
    from morphnas.nn import recipe

    return {
        "seed_pool_every": seeds.POOL_EVERY,
        "seed_min_pooled_map": seeds.MIN_POOLED_MAP,
        "child_lr_scale": recipe.CHILD_LR_SCALE,
        "child_warmup_epochs": recipe.CHILD_WARMUP_EPOCHS,
        "child_bn_calibration": recipe.CHILD_BN_CALIBRATION,
        "child_patience_after": "middle of the schedule after the warm-up",
        "ema_epochs": recipe.EMA_EPOCHS,
        "monitor": recipe.MONITOR,
    }


def comparable(old: dict[str, Any], new: dict[str, Any], method: str) -> bool:
    """Whether a search of ``method`` run under settings ``old`` counts under ``new``: the
    settings it depends on are equal (an Optuna search does not depend on morphnas' settings,
    so a change of the seed network or of the trial recipe keeps the Optuna searches)."""
    shared = ("max_params", "budget_rule")
    own = ("optuna",) if method.startswith("optuna") else ("morphnas", "morphnas_recipe")
    return all(old.get(key) == new.get(key) for key in shared + own)


# ------------------------------------------------------------------------------------ data


def prepare(dataset: str, seed: int) -> tuple[Any, Any, Any]:
    """The dataset, the search seed's split and the training split's normalisation."""
    from morphnas.nn.datasets import builtin_dataset, compute_normalisation, dataset_split

    data = builtin_dataset(dataset)
    split = dataset_split(data, seed=seed)
    return data, split, compute_normalisation(data.x, split.train)


# ------------------------------------------------------------------------------------ morphnas


def morphnas_train_config(budget: Any, search: Any, trial: Any, parent: Any) -> Any:
    """The TrainConfig of one morphnas trial, as the worker builds it (``nn.recipe``)."""
    from morphnas.nn.recipe import recipe_config, trial_seed

    inherited = parent is not None and parent.has_trained_weights
    return recipe_config(
        budget, seed=trial_seed(search, trial), inherited=inherited, device=budget.device
    )


def run_morphnas(
    dataset: str, policy: str, seed: int, budget_s: float, config: dict[str, Any], say: Callable
) -> SearchResult:
    """One in-process morphnas search under the CPU budget (see the module docstring)."""
    from morphnas.core.graph import Graph
    from morphnas.core.records import (
        BUILTIN_DATASET_SHAPES,
        Policy,
        SearchConfig,
        TrainingBudget,
        TrialState,
    )
    from morphnas.core.weights import check_weights, weights_from_bytes, weights_to_bytes
    from morphnas.nn.recipe import validation_score
    from morphnas.nn.train import evaluate, train_trial
    from morphnas.server.service import SearchService
    from morphnas.storage.repository import Repository

    data, split, norm = prepare(dataset, seed)
    input_shape, num_classes = BUILTIN_DATASET_SHAPES[dataset]
    defaults = config["morphnas"]
    run_budget = TrainingBudget(
        epochs=defaults["epochs"],
        max_seconds=defaults["max_seconds"],
        batch_size=defaults["batch_size"],
        optimizer=defaults["optimizer"],
        patience=defaults["patience"],
        device="cpu",
    )
    records: list[TrialRecord] = []
    best = Best()
    cut = False
    suggest_total = 0.0
    method = f"morphnas-{policy}"
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="morphnas-peers-") as folder:
        repo = Repository.from_url(f"sqlite:///{Path(folder) / 'search.db'}")
        try:
            service = SearchService(repo)
            clock = CpuClock(budget_s)
            search = service.create_search(
                SearchConfig(
                    name=f"peers-{dataset}-{policy}-{seed}",
                    input_shape=input_shape,
                    num_classes=num_classes,
                    seed=seed,
                    policy=Policy(policy),
                    seed_width=defaults["seed_width"],
                    seed_depth=defaults["seed_depth"],
                    max_params=config["max_params"],
                )
            )
            numbers: dict[str, int] = {}
            while not clock.spent():
                start = clock.used()
                began = time.process_time()
                [trial] = service.suggest(search.id, 1, "peers-bench")
                suggested = time.process_time() - began
                suggest_total += suggested
                numbers[trial.id] = trial.number
                graph = Graph.from_json(trial.architecture)
                weights = check_weights(
                    graph, weights_from_bytes(service.weights(trial.id, "initial"))
                )
                parent = service.get_trial(trial.parent_id) if trial.parent_id else None
                train_config = morphnas_train_config(run_budget, search, trial, parent)

                def on_epoch(epoch: Any, trial_id: str = trial.id) -> bool:
                    _, stop = service.progress(
                        trial_id, epoch.epoch, epoch.val_accuracy, "val_accuracy"
                    )
                    return bool(stop)

                record = TrialRecord(
                    number=trial.number,
                    state="FAILED",
                    val=None,
                    epochs=0,
                    params=graph.num_params,
                    cpu_start=start,
                    cpu_end=start,
                    suggest_seconds=suggested,
                    parent=numbers.get(trial.parent_id) if trial.parent_id else None,
                    path=[str(op.get("op", "?")) for op in trial.operations],
                )
                try:
                    result = train_trial(
                        graph,
                        weights,
                        data,
                        split,
                        norm,
                        train_config,
                        on_epoch=on_epoch,
                        should_stop=clock.spent,
                    )
                except Exception as err:  # noqa: BLE001 - a failed trial is part of the search
                    service.report(
                        trial.id,
                        state=TrialState.FAILED,
                        score=None,
                        reason=f"{type(err).__name__}: {err}",
                    )
                else:
                    # A trial cut by the budget (or stopped by progress) still reports its best
                    # epoch, as a worker reports an honest best.
                    service.report(
                        trial.id,
                        state=TrialState.COMPLETED,
                        score=validation_score(result.val_accuracy, result.val_loss),
                        weights=weights_to_bytes(result.weights),
                    )
                    was_cut = result.stopped_reason == "cancelled" and clock.spent()
                    cut = cut or was_cut
                    record.state = "CUT" if was_cut else "COMPLETED"
                    record.val = result.val_accuracy
                    record.epochs = result.epochs_run
                    record.best_epoch = result.best_epoch
                    record.detail = {"stopped": result.stopped_reason}

                    def test(result: Any = result, graph: Any = graph) -> float:
                        with clock.paused():
                            accuracy, _ = evaluate(graph, result.weights, data, split.test, norm)
                        return accuracy

                    best.offer(trial.number, result.val_accuracy, clock.used(), test)
                record.cpu_end = clock.used()
                records.append(record)
                _say_trial(say, dataset, method, seed, record)
            used = clock.used()
            excluded = clock.excluded
        finally:
            repo.close()
    return _result(
        dataset, budget_s, method, seed, best, records, used, suggest_total, wall, excluded, cut
    )


def _say_trial(say: Callable, dataset: str, method: str, seed: int, r: TrialRecord) -> None:
    val = "  -   " if r.val is None else f"{r.val:.4f}"
    say(
        f"  {dataset} {method} s{seed}: trial {r.number:3d} {r.state:9s} val {val} "
        f"{r.params:>9,} params {r.epochs:2d} ep  cpu {r.cpu_end:7.1f} s"
    )


def _result(
    dataset: str,
    budget: float,
    method: str,
    seed: int,
    best: Best,
    records: list[TrialRecord],
    used: float,
    suggest: float,
    wall_start: float,
    excluded: float,
    cut: bool,
) -> SearchResult:
    if best.curve:
        best.curve.append([used, best.curve[-1][1], best.curve[-1][2]])
    return SearchResult(
        dataset=dataset,
        budget=budget,
        method=method,
        seed=seed,
        best_val=best.val,
        test_accuracy=best.test,
        best_trial=best.trial,
        trials=len(records),
        completed=sum(r.val is not None and r.state in ("COMPLETED", "CUT") for r in records),
        cpu_seconds=used,
        suggest_seconds=suggest,
        suggest_share=suggest / used if used > 0 else 0.0,
        wall_seconds=time.perf_counter() - wall_start,
        excluded_seconds=excluded,
        cut=cut,
        curve=best.curve,
        trial_records=records,
    )


# ------------------------------------------------------------------------------------ optuna


def sample_space(trial: Any) -> dict[str, Any]:
    """The conventional CNN space (Optuna's define-by-run)."""
    return {
        "blocks": trial.suggest_int("blocks", 2, 5),
        "width": trial.suggest_int("width", 16, 128, log=True),
        "kernel": trial.suggest_categorical("kernel", [3, 5]),
        "residual": trial.suggest_categorical("residual", [False, True]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
    }


def build_cnn(params: dict[str, Any], input_shape: Sequence[int], num_classes: int) -> Any:
    """A plain torch CNN: blocks of conv → BN → ReLU (+ residual), pooling, linear head."""
    import torch
    from torch import nn

    two_d = len(input_shape) == 3
    conv = nn.Conv2d if two_d else nn.Conv1d
    norm = nn.BatchNorm2d if two_d else nn.BatchNorm1d
    pool = nn.MaxPool2d if two_d else nn.MaxPool1d
    gap = nn.AdaptiveAvgPool2d(1) if two_d else nn.AdaptiveAvgPool1d(1)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            k = params["kernel"]
            self.conv = conv(cin, cout, k, padding=k // 2, bias=False)
            self.bn = norm(cout)
            self.residual = params["residual"]
            self.proj = (
                conv(cin, cout, 1, bias=False) if self.residual and cin != cout else nn.Identity()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn(self.conv(x))
            if self.residual:
                y = y + self.proj(x)
            return torch.relu(y)

    layers: list[nn.Module] = []
    cin, width = input_shape[0], params["width"]
    size = min(input_shape[1:])
    for i in range(params["blocks"]):
        layers.append(Block(cin, width))
        cin = width
        if i in (1, 3) and size >= 4:  # pool after blocks 2 and 4: 8→4→2, 40→20→10
            layers.append(pool(2))
            size //= 2
    layers += [gap, nn.Flatten(), nn.Dropout(params["dropout"]), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


def run_optuna(
    dataset: str,
    seed: int,
    budget_s: float,
    epochs: int,
    method: str,
    config: dict[str, Any],
    say: Callable,
) -> SearchResult:
    """Optuna TPE + pruner over the CNN space, trained from scratch, under the CPU budget."""
    import numpy as np
    import optuna
    import torch
    import torch.nn.functional as F

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data, split, norm = prepare(dataset, seed)
    two_d = len(data.input_shape) == 3
    layout = torch.channels_last if two_d else torch.contiguous_format
    cap = config["max_params"]
    pruner: optuna.pruners.BasePruner
    if config["optuna"]["pruner"] == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        )
    else:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    records: list[TrialRecord] = []
    best = Best()
    cut = False
    suggest_total = 0.0
    wall = time.perf_counter()
    clock = CpuClock(budget_s)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner
    )

    def tensors(indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(norm.apply(data.x[indices]))  # (n, *input_shape)
        return x, torch.from_numpy(np.asarray(data.y[indices]))  # (n,)

    x_train, y_train = tensors(split.train)
    x_val, y_val = tensors(split.val)
    x_test, y_test = tensors(split.test)

    @torch.inference_mode()
    def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        model.eval()
        logits = torch.cat(
            [
                model(x[i : i + 1024].contiguous(memory_format=layout))
                for i in range(0, len(x), 1024)
            ]
        )  # (n, K)
        return float((logits.argmax(1) == y).float().mean())

    n_train = len(y_train)
    steps = n_train // BATCH_SIZE + (1 if n_train % BATCH_SIZE >= 2 else 0)
    while not clock.spent():
        start = clock.used()
        began = time.process_time()
        trial = study.ask()
        params = sample_space(trial)
        suggested = time.process_time() - began
        torch.manual_seed(seed * 100_003 + trial.number)
        model = build_cnn(params, data.input_shape, data.num_classes).to(memory_format=layout)
        n_params = sum(p.numel() for p in model.parameters())
        record = TrialRecord(
            number=trial.number,
            state="OVER_CAP",
            val=None,
            epochs=0,
            params=n_params,
            cpu_start=start,
            cpu_end=start,
            suggest_seconds=0.0,
            detail=params,
        )
        state = optuna.trial.TrialState.PRUNED
        value: float | None = None
        if n_params <= cap:
            decayed = [p for p in model.parameters() if p.ndim >= 2]
            plain = [p for p in model.parameters() if p.ndim < 2]
            optimizer = torch.optim.AdamW(
                [
                    {"params": decayed, "weight_decay": WEIGHT_DECAY},
                    {"params": plain, "weight_decay": 0.0},
                ],
                lr=params["lr"],
                foreach=True,
            )
            generator = torch.Generator().manual_seed(seed * 100_003 + trial.number)
            total, step = max(1, epochs * steps), 0
            trial_best: float | None = None
            best_state: dict[str, torch.Tensor] | None = None
            record.state = "COMPLETED"
            for epoch in range(1, epochs + 1):
                model.train()
                order = torch.randperm(n_train, generator=generator)
                interrupted = False
                for s in range(steps):
                    if clock.spent():
                        interrupted = True
                        break
                    batch = order[s * BATCH_SIZE : (s + 1) * BATCH_SIZE]
                    lr = params["lr"] * 0.5 * (1.0 + math.cos(math.pi * step / total))
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss = F.cross_entropy(
                        model(x_train[batch].contiguous(memory_format=layout)), y_train[batch]
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                if interrupted:
                    record.state, cut = "CUT", True
                    break
                val = accuracy(model, x_val, y_val)
                record.epochs = epoch
                if trial_best is None or val > trial_best:
                    trial_best, record.best_epoch = val, epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                trial.report(val, epoch)
                if trial.should_prune():
                    record.state = "PRUNED"
                    break
            record.val = trial_best
            if record.state in ("COMPLETED", "CUT") and trial_best is not None:
                state, value = optuna.trial.TrialState.COMPLETE, trial_best
                assert best_state is not None
                model.load_state_dict(best_state)

                def test(model: torch.nn.Module = model) -> float:
                    with clock.paused():
                        return accuracy(model, x_test, y_test)

                best.offer(trial.number, trial_best, clock.used(), test)
            elif record.state == "CUT":
                state = optuna.trial.TrialState.FAIL
        began = time.process_time()
        if value is not None:
            study.tell(trial, value, state=state)
        else:
            study.tell(trial, state=state)
        told = time.process_time() - began
        record.suggest_seconds = suggested + told
        suggest_total += suggested + told
        record.cpu_end = clock.used()
        records.append(record)
        _say_trial(say, dataset, method, seed, record)
    return _result(
        dataset,
        budget_s,
        method,
        seed,
        best,
        records,
        clock.used(),
        suggest_total,
        wall,
        clock.excluded,
        cut,
    )


# ------------------------------------------------------------------------------------ one search


def run_one(spec: tuple[str, float, str, int], config: dict[str, Any], quiet: bool) -> dict:
    """One search in this process (single-threaded); its result as a JSON-ready dict."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    dataset, budget, method, seed = spec
    prepare(dataset, seed)  # make the dataset (cached) before any clock starts
    warm = torch.nn.Conv2d(1, 8, 3)
    warm(torch.zeros(2, 1, 8, 8)).sum().backward()

    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    if method.startswith("morphnas-"):
        policy = method.removeprefix("morphnas-")
        result = run_morphnas(dataset, policy, seed, budget, config, say)
    else:
        epochs = config["optuna"]["epochs"][method]
        result = run_optuna(dataset, seed, budget, epochs, method, config, say)
    return asdict(result)


def _init_child() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


# ------------------------------------------------------------------------------------ report


def _from_json(data: dict[str, Any]) -> SearchResult:
    data = dict(data)
    trials = [TrialRecord(**t) for t in data.pop("trial_records")]
    return SearchResult(**data, trial_records=trials)


def _pct(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def test_at(result: SearchResult, cpu: float) -> float | None:
    """Test accuracy of the search's best-by-validation model at ``cpu`` seconds (step)."""
    value = None
    for t, _, test in result.curve:
        if t > cpu:
            break
        value = test
    return value


def mean_curve(results: Sequence[SearchResult]) -> list[tuple[float, float]]:
    """Mean over searches of the best-so-far test accuracy, at every improvement of any of them
    (defined once every search has a best model)."""
    times = sorted({t for r in results for t, _, _ in r.curve})
    points = []
    for t in times:
        values = [test_at(r, t) for r in results]
        if all(v is not None for v in values):
            points.append((t, statistics.fmean(v for v in values if v is not None)))
    return points


def groups(results: Sequence[SearchResult]) -> dict[tuple[str, float, str], list[SearchResult]]:
    out: dict[tuple[str, float, str], list[SearchResult]] = {}
    for r in results:
        out.setdefault((r.dataset, r.budget, r.method), []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r.seed)
    return out


def table(results: Sequence[SearchResult]) -> list[str]:
    by = groups(results)
    lines = [
        "| dataset | budget (CPU s) | method | seeds | test % of best model (mean ± std) | "
        "best val % (mean) | trials (mean; scored) | CPU s used (mean) | suggest share (max) | "
        "test % per seed |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for d in DATASETS:
        for b in sorted({k[1] for k in by if k[0] == d}):
            for m in METHODS:
                rs = by.get((d, b, m))
                if not rs:
                    continue
                tests = [r.test_accuracy for r in rs if r.test_accuracy is not None]
                vals = [r.best_val for r in rs if r.best_val is not None]
                std = statistics.stdev(tests) if len(tests) > 1 else 0.0
                lines.append(
                    f"| {d} | {b:g} | {m} | {len(rs)} | {_pct(_mean(tests))} ± {100 * std:.2f} | "
                    f"{_pct(_mean(vals))} | {_mean([r.trials for r in rs]):.1f}; "
                    f"{_mean([r.completed for r in rs]):.1f} | "
                    f"{_mean([r.cpu_seconds for r in rs]):.1f} | "
                    f"{100 * max(r.suggest_share for r in rs):.2f} % | "
                    + ", ".join(f"s{r.seed} {_pct(r.test_accuracy)}" for r in rs)
                    + " |"
                )
    return lines


def verdict(results: Sequence[SearchResult]) -> list[str]:
    """Per (dataset, budget): is morphnas-bayesian ahead of every peer, and when it reaches the
    best peer's final mean test accuracy."""
    by = groups(results)
    lines = []
    for d in DATASETS:
        for b in sorted({k[1] for k in by if k[0] == d}):
            main = by.get((d, b, MAIN))
            peers = {
                m: _mean([r.test_accuracy for r in rs if r.test_accuracy is not None])
                for (dd, bb, m), rs in by.items()
                if dd == d and bb == b and m != MAIN
            }
            if not main or not peers:
                continue
            own = _mean([r.test_accuracy for r in main if r.test_accuracy is not None])
            peer, target = max(peers.items(), key=lambda kv: kv[1])
            gap = 100 * (own - target)
            where = "ahead of" if gap > 0 else ("level with" if gap == 0 else "BEHIND")
            curve = mean_curve(main)
            reach = next((t for t, v in curve if v >= target), None)
            # From when on it stays there (a later best-by-validation model may test lower).
            hold = None
            for t, v in reversed(curve):
                if v < target:
                    break
                hold = t
            when = (
                f"first reaches it at {reach:.0f} CPU s ({100 * reach / b:.0f} % of the budget)"
                + (
                    f" and holds it from {hold:.0f} CPU s ({100 * hold / b:.0f} %)"
                    if hold is not None
                    else ", but ends below it"
                )
                if reach is not None
                else "never reaches it"
            )
            lines.append(
                f"- {d}, {b:g} CPU s: {MAIN} {_pct(own)} % is {where} the best peer {peer} "
                f"{_pct(target)} % ({gap:+.2f} points); mean best-so-far test {when}."
            )
    return lines


def diagnostics(results: Sequence[SearchResult]) -> list[str]:
    by = groups(results)
    lines = []
    for (d, b, m), rs in sorted(by.items()):
        trials = [t for r in rs for t in r.trial_records]
        states: dict[str, int] = {}
        for t in trials:
            states[t.state] = states.get(t.state, 0) + 1
        params = sorted(t.params for t in trials) or [0]
        epochs = [t.epochs for t in trials]
        extra = ""
        if m.startswith("morphnas"):
            children = [t for t in trials if t.parent is not None and t.best_epoch is not None]
            kept = sum(t.best_epoch == 0 for t in children)
            beat = sum(_beats_parent(r) for r in rs)
            stopped: dict[str, int] = {}
            for t in trials:
                reason = t.detail.get("stopped")
                if reason:
                    stopped[reason] = stopped.get(reason, 0) + 1
            extra = (
                f"; children that beat their parent (validation) {beat}/{len(children)}"
                f"; children that kept their inherited weights (best epoch 0) "
                f"{kept}/{len(children)}; trainer's stop reasons {dict(sorted(stopped.items()))}"
            )
        lines.append(
            f"- {d} {b:g} {m}: states {dict(sorted(states.items()))}; params median "
            f"{params[len(params) // 2]:,} max {params[-1]:,}; epochs/trial "
            f"{_mean(epochs):.1f}; suggest s/search {_mean([r.suggest_seconds for r in rs]):.2f}"
            f"{extra}"
        )
    return lines


def _beats_parent(result: SearchResult) -> int:
    """How many scored children of one search have a validation accuracy above their parent's."""
    val = {t.number: t.val for t in result.trial_records}
    return sum(
        1
        for t in result.trial_records
        if t.parent is not None
        and t.best_epoch is not None
        and t.val is not None
        and (parent := val.get(t.parent)) is not None
        and t.val > parent
    )


def plot(results: Sequence[SearchResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = groups(results)
    datasets = [d for d in DATASETS if any(k[0] == d for k in by)]
    budgets = sorted({k[1] for k in by})
    colours = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=True))
    styles = dict(zip(METHODS, ("-", "--", "-.", ":"), strict=True))
    fig, axes = plt.subplots(
        len(datasets),
        len(budgets),
        figsize=(5.5 * len(budgets), 3.8 * len(datasets)),
        squeeze=False,
    )
    for row, d in enumerate(datasets):
        for col, b in enumerate(budgets):
            ax = axes[row][col]
            lows = []
            for m in METHODS:
                rs = by.get((d, b, m))
                if not rs:
                    continue
                points = mean_curve(rs)
                if not points:
                    continue
                xs = [t for t, _ in points] + [b]
                ys = [100 * v for _, v in points] + [100 * points[-1][1]]
                lows += ys
                label = f"{m} ({len(rs)} seed{'s' if len(rs) > 1 else ''})"
                ax.step(xs, ys, where="post", color=colours[m], ls=styles[m], lw=2, label=label)
            ax.set_title(f"{d}, {b:g} CPU s per search")
            ax.set_xlabel("CPU seconds (one thread)")
            ax.set_ylabel("test acc. of best-by-val model (%)")
            if lows:
                ax.set_ylim(max(min(lows) - 1, 0), min(max(lows) + 0.5, 100.2))
            ax.set_xlim(0, b)
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=8)
    fig.suptitle("equal CPU budget: best-so-far test accuracy, mean over seeds", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(payload: dict[str, Any], out: Path) -> str:
    results = [_from_json(r) for r in payload["results"]]
    s = payload["settings"]
    lines = [
        "# bench/peers.py: equal CPU budget against the peers",
        "",
        f"- command: `{payload['command']}`",
        f"- machine: {payload['machine']}; written {payload['date']}",
        f"- budget rule: CPU seconds of the search's process, one torch thread; {s['budget_rule']}"
        "; no trial starts after the budget; test evaluations are off the clock",
        f"- parameter cap {s['max_params']:,} for every method; morphnas: CLI defaults "
        f"{json.dumps(s['morphnas'])}; optuna: {json.dumps(s['optuna'])}",
        f"- morphnas trials' TrainConfig: {s.get('morphnas_train_config', '-')}",
        "",
        *table(results),
        "",
        *verdict(results),
        "",
        "How the trials were spent:",
        "",
        *diagnostics(results),
        "",
    ]
    text = "\n".join(lines)
    (out / "peers.md").write_text(text)
    plot(results, out / "peers.png")
    return text


# ------------------------------------------------------------------------------------ main


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.environ["OMP_NUM_THREADS"] = "1"
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "peers.json"
    if args.report:
        old = _load(json_path)
        if old is None:
            raise SystemExit(f"--report: no readable {json_path}")
        print(write_report(old, args.out))
        return 0
    import torch

    torch.set_num_threads(1)
    config = settings(args)
    results: list[dict[str, Any]] = []
    if args.resume and (old := _load(json_path)):
        results = [r for r in old["results"] if comparable(old["settings"], config, r["method"])]
        print(f"resuming: {len(results)} searches already done with equal settings", flush=True)
    done = {(r["dataset"], r["budget"], r["method"], r["seed"]) for r in results}
    command = "python bench/peers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"1 thread per search, {args.jobs} searches in parallel, device cpu"
    )
    print(f"# {command}\n# {machine}\n# settings {json.dumps(config)}", flush=True)
    # Seeds outermost: an interrupted run still compares like with like.
    specs = [
        (d, float(b), m, s)
        for s in args.seeds
        for b in args.budgets
        for d in args.datasets
        for m in args.methods
        if (d, float(b), m, s) not in done
    ]

    def save() -> dict[str, Any]:
        payload = {
            "command": command,
            "machine": machine,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "settings": config,
            "results": results,
        }
        json_path.write_text(json.dumps(payload, indent=1))
        return payload

    def finished(result: dict[str, Any]) -> None:
        results.append(result)
        save()
        print(
            f"{result['dataset']} {result['budget']:g} {result['method']} s{result['seed']}: "
            f"best val {_pct(result['best_val'])} %, test {_pct(result['test_accuracy'])} %, "
            f"{result['trials']} trials, {result['cpu_seconds']:.1f} CPU s "
            f"(suggest {100 * result['suggest_share']:.2f} %), wall {result['wall_seconds']:.0f} s",
            flush=True,
        )

    if args.jobs == 1:
        for spec in specs:
            finished(run_one(spec, config, args.quiet))
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=args.jobs, mp_context=context, initializer=_init_child
        ) as pool:
            futures = [pool.submit(run_one, spec, config, args.quiet) for spec in specs]
            try:
                for future in concurrent.futures.as_completed(futures):
                    finished(future.result())
            except BaseException:
                # Interrupted (Ctrl-C, SIGTERM) or a search failed: end the running searches too.
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
                raise
    print("\n" + write_report(save(), args.out), flush=True)
    print(f"wrote {json_path}, {args.out / 'peers.md'}, {args.out / 'peers.png'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
