"""Why does the peer's CNN train better per CPU second than morphnas' seed? One factor at a time.

Each variant trains one network from scratch on a dataset's split (the search seed's split and
normalisation, as ``bench/peers.py``) and prints its best validation accuracy, the test accuracy
of that best epoch, the epochs, the parameter count and the CPU seconds (process time, one torch
thread). Variants change one thing of a base:

* ``seed-*``: morphnas' seed graph (built here with the knobs below, trained by morphnas'
  trainer ``train_trial`` with the recipe of a fresh trial, ``nn.recipe.recipe_config``);
* ``peer-*``: ``bench/peers.py``'s conventional CNN (``build_cnn``) trained by the peer's loop
  (a copy of the loop in ``run_optuna``, without the pruner), to tell the trainer from the
  architecture.

Knobs of the seed graph: ``order`` (``pre``: [ReLU →] BN → Conv, the seed as it was; ``post``:
Conv → BN → ReLU), ``pool`` (blocks after which a max-pool halves the map: ``all`` or a list of
block numbers), ``head`` (``dense``: GAP → Dropout → Dense(width) → ReLU → Dense(K); ``linear``:
GAP → Dropout → Dense(K)), width, depth, kernel, dropout; training: epochs and learning rate.

    python bench/seed_strength.py [--dataset mnist1d] [--seeds 0 1] [--variants ...]

Figures measured with this script are quoted in ``morphnas/core/seeds.py`` and
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from morphnas.core.graph import INPUT, Graph, build_graph
from morphnas.core.layers import Layer
from morphnas.core.records import TrainingBudget
from morphnas.core.seeds import seed_graph
from morphnas.nn.datasets import builtin_dataset, compute_normalisation, dataset_split
from morphnas.nn.recipe import recipe_config
from morphnas.nn.train import evaluate, train_trial


@dataclass(frozen=True)
class Variant:
    """One network and how it trains (see the module docstring for the knobs)."""

    kind: str = "seed"  # "seed" (morphnas graph + trainer), "current" (core.seeds), "peer"
    order: str = "pre"
    pool: str = "all"
    head: str = "dense"
    width: int = 64
    depth: int = 3
    kernel: int = 3
    dropout: float = 0.25
    final_relu: bool = False  # pre-order: a ReLU before the global pooling
    residual: bool = False  # peer only
    epochs: int = 8
    lr: float | None = None  # None: the trainer's default (AdamW 3e-3)


BASE = Variant()
PEER = Variant(kind="peer", order="post", pool="2,4", head="linear", width=70, depth=4,
               residual=True, dropout=0.22, epochs=20, lr=6e-3)  # fmt: skip
PEERLIKE8 = replace(BASE, order="post", pool="2,4", head="linear", width=70, depth=4,
                    dropout=0.22, lr=6e-3)  # fmt: skip
VARIANTS: dict[str, Variant] = {
    "current": Variant(kind="current"),
    "seed": BASE,
    "seed-ep20": replace(BASE, epochs=20),
    "seed-lr6e-3": replace(BASE, lr=6e-3),
    "seed-lr1e-3": replace(BASE, lr=1e-3),
    "seed-pool2": replace(BASE, pool="2"),
    "seed-pool2,4": replace(BASE, pool="2,4"),
    "seed-post": replace(BASE, order="post"),
    "seed-linear": replace(BASE, head="linear"),
    "seed-k5": replace(BASE, kernel=5),
    "seed-final-relu": replace(BASE, final_relu=True),
    "seed-d4": replace(BASE, depth=4),
    "seed-post-pool2": replace(BASE, order="post", pool="2"),
    "seed-post-pool2-linear": replace(BASE, order="post", pool="2", head="linear"),
    "seed-pool2-linear": replace(BASE, pool="2", head="linear"),
    "seed-peerlike": replace(
        BASE,
        order="post",
        pool="2,4",
        head="linear",
        width=70,
        depth=4,
        dropout=0.22,
        epochs=20,
        lr=6e-3,
    ),  # fmt: skip
    "seed-peerlike-ep8": PEERLIKE8,
    # One factor at a time from the peer-like graph at 8 epochs (the search's trial length).
    **{
        f"pl8-{name}": replace(PEERLIKE8, **change)
        for name, change in {
            "lr3e-3": {"lr": 3e-3},
            "pre": {"order": "pre"},
            "pool-all": {"pool": "all"},
            "pool2": {"pool": "2"},
            "dense-head": {"head": "dense"},
            "d3": {"depth": 3},
            "w64": {"width": 64},
            "w32": {"width": 32},
            "drop0.25": {"dropout": 0.25},
            "k5": {"kernel": 5},
            "ep12": {"epochs": 12},
        }.items()
    },
    "peer": PEER,
    "peer-noresid": replace(PEER, residual=False),
    "peer-ep8": replace(PEER, epochs=8),
    "peer-lr3e-3": replace(PEER, lr=3e-3),
    "peer-pool-all": replace(PEER, pool="all"),
}


def _pools(variant: Variant) -> set[int]:
    if variant.pool == "all":
        return set(range(1, variant.depth + 1))
    return {int(b) for b in variant.pool.split(",") if b}


def build_seed(variant: Variant, input_shape: tuple[int, ...], num_classes: int) -> Graph:
    """A seed graph with the variant's knobs (valid for the morphs: only registered kinds)."""
    if variant.kind == "current":
        return seed_graph(input_shape, num_classes)
    layers: list[Layer] = []
    previous = INPUT
    spatial = list(input_shape[1:])
    pools = _pools(variant)

    def add(kind: str, **attrs: Any) -> None:
        nonlocal previous
        name = f"{kind}{len(layers)}"
        layers.append(Layer(name=name, kind=kind, inputs=(previous,), **attrs))
        previous = name

    for block in range(1, variant.depth + 1):
        if variant.order == "pre":
            if block > 1:
                add("relu")
            add("bn")
            add("conv", units=variant.width, kernel=variant.kernel, stride=1)
        else:
            add("conv", units=variant.width, kernel=variant.kernel, stride=1)
            add("bn")
            add("relu")
        if block in pools and min(spatial) >= 2:
            add("maxpool", kernel=2, stride=2)
            spatial = [n // 2 for n in spatial]
    if variant.order == "pre" and variant.final_relu:
        add("relu")
    add("gap")
    add("dropout", rate=variant.dropout)
    if variant.head == "dense":
        add("dense", units=variant.width)
        add("relu")
    add("dense", units=num_classes)
    return build_graph(input_shape, layers)


def run_seed(variant: Variant, dataset: str, seed: int) -> dict[str, float]:
    data = builtin_dataset(dataset)
    split = dataset_split(data, seed=seed)
    norm = compute_normalisation(data.x, split.train)
    graph = build_seed(variant, data.input_shape, data.num_classes)
    budget = TrainingBudget(epochs=variant.epochs, device="cpu", learning_rate=variant.lr or 0.0)
    config = recipe_config(budget, seed=seed * 100_003, inherited=False)
    began = time.process_time()
    result = train_trial(graph, None, data, split, norm, config)
    cpu = time.process_time() - began
    test, _ = evaluate(graph, result.weights, data, split.test, norm)
    return {
        "val": result.val_accuracy,
        "test": test,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "params": graph.num_params,
        "cpu": cpu,
    }


def run_peer(variant: Variant, dataset: str, seed: int) -> dict[str, float]:
    """``bench/peers.py``'s CNN and loop (no pruner), best epoch by validation accuracy."""
    from bench.peers import BATCH_SIZE, WEIGHT_DECAY, build_cnn

    data = builtin_dataset(dataset)
    split = dataset_split(data, seed=seed)
    norm = compute_normalisation(data.x, split.train)
    params = {
        "blocks": variant.depth,
        "width": variant.width,
        "kernel": variant.kernel,
        "residual": variant.residual,
        "dropout": variant.dropout,
        "lr": variant.lr or 3e-3,
    }
    began = time.process_time()
    torch.manual_seed(seed * 100_003)
    if variant.pool == "all":
        model = _peer_all_pools(params, data.input_shape, data.num_classes)
    else:
        model = build_cnn(params, data.input_shape, data.num_classes)

    def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(norm.apply(data.x[idx])), torch.from_numpy(data.y[idx])

    (xt, yt), (xv, yv), (xs, ys) = tensors(split.train), tensors(split.val), tensors(split.test)

    @torch.inference_mode()
    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        model.eval()
        return float((model(x).argmax(1) == y).float().mean())

    decayed = [p for p in model.parameters() if p.ndim >= 2]
    plain = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": WEIGHT_DECAY}, {"params": plain, "weight_decay": 0}],
        lr=params["lr"],
        foreach=True,
    )
    n = len(yt)
    steps = n // BATCH_SIZE + (1 if n % BATCH_SIZE >= 2 else 0)
    total, step = variant.epochs * steps, 0
    generator = torch.Generator().manual_seed(seed * 100_003)
    best_val, best_test, best_epoch = -1.0, 0.0, 0
    for epoch in range(1, variant.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        for s in range(steps):
            batch = order[s * BATCH_SIZE : (s + 1) * BATCH_SIZE]
            for group in optimizer.param_groups:
                group["lr"] = params["lr"] * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(model(xt[batch]), yt[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        val = accuracy(xv, yv)
        if val > best_val:
            best_val, best_test, best_epoch = val, accuracy(xs, ys), epoch
    cpu = time.process_time() - began
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "val": best_val,
        "test": best_test,
        "epochs": variant.epochs,
        "best_epoch": best_epoch,
        "params": n_params,
        "cpu": cpu,
    }


def _peer_all_pools(params: dict[str, Any], input_shape: Sequence[int], classes: int) -> Any:
    from torch import nn

    from bench.peers import build_cnn

    model = build_cnn({**params, "blocks": 1}, input_shape, classes)
    block = type(model[0])
    pool = nn.MaxPool2d if len(input_shape) == 3 else nn.MaxPool1d
    layers: list[nn.Module] = []
    cin, size = input_shape[0], min(input_shape[1:])
    for _ in range(params["blocks"]):
        layers.append(block(cin, params["width"]))
        cin = params["width"]
        if size >= 2:
            layers.append(pool(2))
            size //= 2
    layers += list(model)[-4:]  # gap, flatten, dropout, linear
    return nn.Sequential(*layers)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--dataset", default="mnist1d", choices=("digits", "mnist1d"))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{args.dataset}, seeds {args.seeds}: mean over seeds (val %, test %, CPU s)")
    print(f"{'variant':28s} {'params':>7s} {'val':>6s} {'test':>6s} {'cpu':>6s}  per seed")
    for name in args.variants:
        variant = VARIANTS[name]
        runner = run_peer if variant.kind == "peer" else run_seed
        rows = [runner(variant, args.dataset, seed) for seed in args.seeds]
        per_seed = " ".join(
            f"s{s}:{100 * r['val']:.1f}/{100 * r['test']:.1f}/{r['cpu']:.0f}s@{r['best_epoch']}"
            for s, r in zip(args.seeds, rows, strict=True)
        )
        print(
            f"{name:28s} {rows[0]['params']:7,d} "
            f"{100 * statistics.mean(r['val'] for r in rows):6.2f} "
            f"{100 * statistics.mean(r['test'] for r in rows):6.2f} "
            f"{statistics.mean(r['cpu'] for r in rows):6.1f}  {per_seed}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
