"""Does weight inheritance pay? Parent vs inherited child vs the same child from scratch.

On scikit-learn's digits (8×8 images as (1, 8, 8), scaled x/16; a stratified 70/30 split):

1. train the seed CNN (the parent) for ``PARENT_EPOCHS`` epochs;
2. morph it (one Deeper, Wider, AddSkip and ConcatSkip, each drawn at random among the
   candidates) and carry the trained weights over: the child starts with the parent's function;
3. train the inherited child for one more epoch;
4. train the same child architecture for one epoch from a fresh initialisation.

It prints the three test accuracies for each seed and their medians. The training loop is a
deliberately small one (AdamW, batch 64, cross-entropy); the real trainer lives in
``morphnas.nn.train``.

    python bench/inheritance.py [--seeds 0 1 2] [--parent-epochs 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from morphnas.core.graph import Graph
from morphnas.core.morphs import MORPH_KINDS, Morph, apply_path
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import Weights, init_weights
from morphnas.nn.module import build_module, module_weights

PARENT_EPOCHS = 15
LEARNING_RATE = 1e-3
BATCH_SIZE = 64


@dataclass(frozen=True)
class Digits:
    x_train: torch.Tensor  # (N, 1, 8, 8) float32 in [0, 1]
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(frozen=True)
class Outcome:
    """Test accuracies (fractions) of one run."""

    parent: float
    inherited: float  # morphed child, parent's weights, one more epoch
    scratch: float  # same child, fresh weights, one epoch
    path: tuple[str, ...]


def load_digits_split(seed: int, test_fraction: float = 0.3) -> Digits:
    """Digits as (N, 1, 8, 8) / 16 with a stratified split drawn from ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    as_x, as_y = torch.from_numpy, lambda a: torch.from_numpy(a.astype(np.int64))
    return Digits(as_x(x_tr), as_y(y_tr), as_x(x_te), as_y(y_te))


def train(graph: Graph, weights: Weights, data: Digits, epochs: int, seed: int) -> Weights:
    """``epochs`` passes of AdamW over shuffled batches of 64; returns the trained weights.

    The learning rate follows a cosine from ``LEARNING_RATE`` to 0 over the whole run (every run,
    parent or child, is a complete training with its own schedule).
    """
    torch.manual_seed(seed)
    module = build_module(graph, weights).train()
    optimiser = torch.optim.AdamW(module.parameters(), lr=LEARNING_RATE)
    steps = epochs * -(-len(data.y_train) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(data.y_train), generator=generator)
        for batch in order.split(BATCH_SIZE):
            loss = torch.nn.functional.cross_entropy(
                module(data.x_train[batch]), data.y_train[batch]
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return module_weights(module)


def accuracy(graph: Graph, weights: Weights, data: Digits) -> float:
    """Fraction of test images classified correctly (eval mode)."""
    module = build_module(graph, weights).eval()
    with torch.no_grad():
        predicted = module(data.x_test).argmax(dim=1)
    return float((predicted == data.y_test).float().mean())


def morph_path(graph: Graph, rng: np.random.Generator) -> list[Morph]:
    """One morph of every registered kind, each drawn among the candidates of the graph so far."""
    ops: list[Morph] = []
    for cls in MORPH_KINDS.values():
        candidates = cls.candidates(graph)  # type: ignore[attr-defined]
        ops.append(candidates[int(rng.integers(len(candidates)))])
        graph = ops[-1].apply(graph)
    return ops


def run(seed: int, parent_epochs: int = PARENT_EPOCHS) -> Outcome:
    """One parent / inherited child / scratch child comparison."""
    data = load_digits_split(seed)
    parent = seed_graph((1, 8, 8), 10)
    parent_weights = train(parent, init_weights(parent, seed), data, parent_epochs, seed)
    ops = morph_path(parent, np.random.default_rng(seed))
    child, inherited = apply_path(parent, ops, parent_weights)
    assert inherited is not None
    return Outcome(
        parent=accuracy(parent, parent_weights, data),
        inherited=accuracy(child, train(child, inherited, data, 1, seed + 1), data),
        scratch=accuracy(
            child, train(child, init_weights(child, seed + 1), data, 1, seed + 1), data
        ),
        path=tuple(str(op) for op in ops),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parent-epochs", type=int, default=PARENT_EPOCHS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    outcomes = []
    print(f"{'seed':>4}  {'parent':>7}  {'inherited+1':>11}  {'scratch+1':>9}  seconds")
    for seed in args.seeds:
        start = time.perf_counter()
        outcome = run(seed, args.parent_epochs)
        outcomes.append(outcome)
        seconds = time.perf_counter() - start
        print(
            f"{seed:>4}  {outcome.parent:7.2%}  {outcome.inherited:11.2%}  "
            f"{outcome.scratch:9.2%}  {seconds:7.1f}"
        )
        print("      path: " + ", ".join(outcome.path))
    median = {
        field: statistics.median(getattr(o, field) for o in outcomes)
        for field in ("parent", "inherited", "scratch")
    }
    print(
        f"median parent {median['parent']:.2%}  inherited child after 1 epoch "
        f"{median['inherited']:.2%}  child from scratch after 1 epoch {median['scratch']:.2%}"
    )


if __name__ == "__main__":
    main()
