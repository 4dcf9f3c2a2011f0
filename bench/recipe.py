"""Do inherited children beat their parent? The old training recipe against the new one.

For each dataset and seed: the seed network (the parent) is trained as trial 0 of a server-side
run would be (default :class:`TrainingBudget`, the dataset split of the search's seed); then a
handful of children are drawn by random morph paths of 1 to 3 operations
(``morphnas.core.morphs.sample_morph``), carrying the parent's trained weights over, and each
child is trained under every recipe. Printed per recipe: the fraction of children whose
validation accuracy beats their parent's, the mean gain in validation and in test accuracy
(the test split is only read here, to tell real gains from selection on a small validation
split), how many children returned their inherited weights (best epoch 0), and the epoch-0
validation accuracy after calibration against the parent's.

Recipes: ``old`` is the trainer as it was (full learning rate at once, cosine, patience 5 on
the validation loss, for parent and child alike); ``new`` is :func:`morphnas.nn.recipe.
recipe_config`; the others change one thing of ``new`` for a child (its parent is ``new``'s).

    python bench/recipe.py [--datasets digits mnist1d] [--seeds 0] [--children 6] [--epochs 8]
        [--recipes old new lr1 lr0.5 lr0.1 calib-none calib-estimate]

``new`` trains parent and children for ``--epochs`` (default 8, ``morphnas run``'s; the figures
quoted in ``nn/recipe.py`` before the seed changed were taken at the budget's default of 20).

One torch thread. Figures measured with this script are quoted in ``morphnas/nn/recipe.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from morphnas.core.graph import Graph
from morphnas.core.morphs import Morph, apply_path, sample_morph
from morphnas.core.records import TrainingBudget
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import Weights
from morphnas.nn.datasets import builtin_dataset, compute_normalisation, dataset_split
from morphnas.nn.recipe import recipe_config
from morphnas.nn.train import TrainConfig, TrainResult, evaluate, train_trial

OLD = TrainConfig(device="cpu")  # what every trial used before: the trainer's defaults (20 epochs)


#: Epochs of every trial, parent and child (``morphnas run``'s default; ``--epochs``).
EPOCHS = 8


def _budget() -> TrainingBudget:
    return TrainingBudget(epochs=EPOCHS, device="cpu")


def _new_child(seed: int) -> TrainConfig:
    return recipe_config(_budget(), seed=seed, inherited=True)


CHILD_RECIPES: dict[str, Callable[[int], TrainConfig]] = {
    "old": lambda seed: replace(OLD, seed=seed),
    "new": _new_child,
    "lr1": lambda seed: replace(_new_child(seed), lr=OLD.learning_rate),
    "lr0.1": lambda seed: replace(_new_child(seed), lr=OLD.learning_rate * 0.1),
    "lr0.5": lambda seed: replace(_new_child(seed), lr=OLD.learning_rate * 0.5),
    "calib-none": lambda seed: replace(_new_child(seed), bn_calibration="none"),
    "calib-estimate": lambda seed: replace(_new_child(seed), bn_calibration="estimate"),
    "nowarmup": lambda seed: replace(_new_child(seed), warmup_epochs=0.0),
    "lr0.3": lambda seed: replace(_new_child(seed), lr=OLD.learning_rate * 0.3),
    "no-average": lambda seed: replace(_new_child(seed), ema_epochs=None),
    "early-patience": lambda seed: replace(_new_child(seed), patience_after=0),
}


def parent_config(recipe: str, seed: int) -> TrainConfig:
    if recipe == "old":
        return replace(OLD, seed=seed)
    return recipe_config(_budget(), seed=seed, inherited=False)


@dataclass(frozen=True)
class ChildOutcome:
    recipe: str
    path: str
    parent_val: float
    parent_test: float
    val: float
    test: float
    start_val: float
    best_epoch: int
    seconds: float


def draw_children(graph: Graph, count: int, rng: np.random.Generator) -> list[list[Morph]]:
    paths = []
    for _ in range(count):
        ops: list[Morph] = []
        current = graph
        for _ in range(int(rng.integers(1, 4))):
            op = sample_morph(current, rng)
            ops.append(op)
            current = op.apply(current)
        paths.append(ops)
    return paths


def describe(ops: list[Morph]) -> str:
    return " + ".join(op.kind for op in ops)  # type: ignore[attr-defined]


def run_dataset(name: str, seed: int, children: int, recipes: list[str]) -> list[ChildOutcome]:
    data = builtin_dataset(name)
    split = dataset_split(data, seed=seed)
    norm = compute_normalisation(data.x, split.train)
    graph = seed_graph(data.input_shape, data.num_classes)
    paths = draw_children(graph, children, np.random.default_rng(seed))
    parents: dict[str, tuple[TrainResult, float]] = {}
    outcomes = []
    for recipe in recipes:
        kind = "old" if recipe == "old" else "new"
        if kind not in parents:
            result = train_trial(graph, None, data, split, norm, parent_config(kind, seed))
            test, _ = evaluate(graph, result.weights, data, split.test, norm)
            parents[kind] = (result, test)
            print(
                f"{name} seed {seed}: parent ({kind}) val {result.val_accuracy:.4f} "
                f"test {test:.4f} best epoch {result.best_epoch}/{result.epochs_run}",
                flush=True,
            )
        parent, parent_test = parents[kind]
        for number, ops in enumerate(paths, start=1):
            child, weights = apply_path(graph, ops, parent.weights)
            assert weights is not None
            outcome = train_child(
                child, weights, data, split, norm, CHILD_RECIPES[recipe](seed * 100_003 + number)
            )
            test, _ = evaluate(child, outcome.weights, data, split.test, norm)
            outcomes.append(
                ChildOutcome(
                    recipe,
                    describe(ops),
                    parent.val_accuracy,
                    parent_test,
                    outcome.val_accuracy,
                    test,
                    outcome.start_val_accuracy,
                    outcome.best_epoch,
                    outcome.seconds,
                )
            )
            o = outcomes[-1]
            print(
                f"  {recipe:>14} child {number} ({o.path}): val {o.val:.4f} "
                f"(start {o.start_val:.4f}) test {o.test:.4f} best epoch {o.best_epoch} "
                f"{o.seconds:.1f} s",
                flush=True,
            )
    return outcomes


def train_child(
    graph: Graph, weights: Weights, data, split, norm, config: TrainConfig
) -> TrainResult:
    return train_trial(graph, weights, data, split, norm, config)


def summary(outcomes: list[ChildOutcome], recipes: list[str]) -> str:
    lines = [
        f"{'recipe':>14} {'beat parent':>12} {'val gain':>9} {'test gain':>9} "
        f"{'epoch 0 kept':>12} {'start-parent':>12} {'s/child':>8}"
    ]
    for recipe in recipes:
        rows = [o for o in outcomes if o.recipe == recipe]
        if not rows:
            continue
        beat = sum(o.val > o.parent_val for o in rows)
        val_gain = statistics.mean(o.val - o.parent_val for o in rows)
        test_gain = statistics.mean(o.test - o.parent_test for o in rows)
        kept = sum(o.best_epoch == 0 for o in rows)
        start = statistics.mean(o.start_val - o.parent_val for o in rows)
        seconds = statistics.mean(o.seconds for o in rows)
        lines.append(
            f"{recipe:>14} {beat:>5}/{len(rows):<6} {100 * val_gain:>+8.2f}% {100 * test_gain:>+8.2f}% "
            f"{kept:>5}/{len(rows):<6} {100 * start:>+11.2f}% {seconds:>8.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    global EPOCHS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--children", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs of the new recipe")
    parser.add_argument("--recipes", nargs="+", default=["old", "new"], choices=list(CHILD_RECIPES))
    args = parser.parse_args()
    EPOCHS = args.epochs
    torch.set_num_threads(1)
    started = time.perf_counter()
    for name in args.datasets:
        outcomes: list[ChildOutcome] = []
        for seed in args.seeds:
            outcomes += run_dataset(name, seed, args.children, args.recipes)
        print(f"\n{name}, seeds {args.seeds}, {args.children} children each")
        print(summary(outcomes, args.recipes), flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
