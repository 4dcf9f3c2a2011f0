"""Trainer overhead: ``train_trial`` against a bare hand-written torch loop, same run.

Both sides start from the same graph, weights and raw data and end with trained weights; both
build the same :class:`~morphnas.nn.module.GraphModule`, normalise the same training split onto
the device, and run the same number of epochs of the same optimiser (torch defaults for the
bare loop) at the same batch size in the same memory layout (channels-last for images, as the
trainer chooses). The bare loop has nothing else: no validation, no schedule, no early stopping,
no limit checks, no best-epoch snapshot. ``train_trial`` runs with early stopping off so it runs
every epoch. Two more rows put the difference in context: ``bare+val`` adds the one validation
pass per epoch that early stopping needs, ``bare NCHW`` is the bare loop in torch's default
layout (what the trainer gains by choosing channels-last).

Throughput = training examples processed / wall-clock seconds of the whole call (setup
included, on both sides); on a shared CPU the same per CPU-second of this process is printed too
(steadier when other jobs compete for the cores). Runs alternate (bare, bare+val, trial, bare
NCHW, bare, ...) after one warm-up of each; the figures are medians over ``--repeats``. Results
are appended to ``bench/results/train.txt``.

    python bench/train.py                       # CPU, digits, seed CNN (width 64, depth 3)
    python bench/train.py --device cuda         # GPU (AMP + channels-last on both sides)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from morphnas.core.graph import Graph
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import Weights, init_weights
from morphnas.nn.datasets import (
    Dataset,
    Normalisation,
    Split,
    builtin_dataset,
    compute_normalisation,
    dataset_split,
)
from morphnas.nn.module import build_module, module_weights
from morphnas.nn.train import (
    TrainConfig,
    _amp_dtype,
    _memory_format,
    resolve_device,
    train_trial,
)

RESULTS = Path(__file__).parent / "results" / "train.txt"


def bare_loop(
    graph: Graph,
    weights: Weights,
    data: Dataset,
    split: Split,
    norm: Normalisation,
    config: TrainConfig,
    validate: bool = False,
    memory_format: torch.memory_format | None = None,
) -> int:
    """The hand-written baseline; returns the number of training examples processed.

    ``validate``: also compute the validation loss after every epoch (the least a loop that
    stops early must do), to separate the loop's own overhead from the cost of validating.
    ``memory_format``: None takes the trainer's choice (channels-last for images).
    """
    device = resolve_device(config.device)
    amp = _amp_dtype(config, device)
    if memory_format is None:
        memory_format = _memory_format(graph, config)
    torch.manual_seed(config.seed)
    model = build_module(graph, weights).to(device, memory_format=memory_format)
    x = torch.from_numpy(norm.apply(data.x[split.train])).to(device)
    y = torch.from_numpy(np.asarray(data.y[split.train])).to(device)
    x_val = torch.from_numpy(norm.apply(data.x[split.val])).to(device)
    y_val = torch.from_numpy(np.asarray(data.y[split.val])).to(device)
    if config.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=config.learning_rate,
            weight_decay=config.decay,
            fused=device.type == "cuda",
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.learning_rate, momentum=config.momentum
        )
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    seen = 0
    for _ in range(config.epochs):
        order = torch.randperm(len(y), generator=generator).to(device)
        for start in range(0, len(y), config.batch_size):
            batch = order[start : start + config.batch_size]
            xb = x[batch].contiguous(memory_format=memory_format)
            with _autocast(device, amp):
                loss = F.cross_entropy(model(xb), y[batch])
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            seen += len(batch)
        if validate:
            model.eval()
            with torch.inference_mode(), _autocast(device, amp):
                float(F.cross_entropy(model(x_val.contiguous(memory_format=memory_format)), y_val))
            model.train()
    module_weights(model)  # what train_trial returns too (and a device sync)
    return seen


def _autocast(
    device: torch.device, amp: torch.dtype | None
) -> contextlib.AbstractContextManager[object]:
    return torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()


def timed(run: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, samples) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    samples = run()
    return time.perf_counter() - wall, time.process_time() - cpu, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist1d"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = builtin_dataset(args.dataset)
    split = dataset_split(data, seed=0)
    norm = compute_normalisation(data.x, split.train)
    graph = seed_graph(data.input_shape, data.num_classes, width=args.width, depth=args.depth)
    weights = init_weights(graph, 0)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        patience=None,
        device=args.device,
    )

    def trial() -> int:
        result = train_trial(graph, weights, data, split, norm, config)
        trial_internal.append(result.samples_per_second)
        return len(split.train) * result.epochs_run

    def bare() -> int:
        return bare_loop(graph, weights, data, split, norm, config)

    def bare_val() -> int:
        return bare_loop(graph, weights, data, split, norm, config, validate=True)

    def bare_default_layout() -> int:
        layout = torch.contiguous_format
        return bare_loop(graph, weights, data, split, norm, config, memory_format=layout)

    contenders = (
        ("bare", bare),
        ("bare+val", bare_val),
        ("trial", trial),
        ("bare NCHW", bare_default_layout),
    )

    trial_internal: list[float] = []
    for _, run in contenders:  # warm-up: allocator, kernels, lazy imports
        timed(run)
    trial_internal.clear()
    rates: dict[str, list[float]] = {name: [] for name, _ in contenders}
    cpu_rates: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for _ in range(args.repeats):
        for name, run in contenders:
            wall, cpu, samples = timed(run)
            rates[name].append(samples / wall)
            cpu_rates[name].append(samples / cpu)
    wall_rate = {name: statistics.median(values) for name, values in rates.items()}
    cpu_rate = {name: statistics.median(values) for name, values in cpu_rates.items()}
    lines = [
        f"# bench/train.py  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"command: python bench/train.py {' '.join(_argv())}",
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {config.device}"
        + (
            f" ({torch.cuda.get_device_name()})"
            if resolve_device(args.device).type == "cuda"
            else ""
        ),
        f"dataset {args.dataset}: {len(split.train)} training examples, "
        f"graph {graph.num_params} params ({len(graph.layers)} layers), "
        f"{args.optimizer}, batch {args.batch_size}, {args.epochs} epochs, "
        f"median of {args.repeats}",
        "samples/s: median (runs)        wall clock                  per CPU-second",
        *(
            f"{name:<9} {wall_rate[name]:6.0f} ({_fmt(rates[name])})  "
            f"{cpu_rate[name]:6.0f} ({_fmt(cpu_rates[name])})"
            for name, _ in contenders
        ),
        f"train_trial's own figure (training steps only): "
        f"{statistics.median(trial_internal):.0f} samples/s",
        f"ratio trial / bare     : wall {wall_rate['trial'] / wall_rate['bare']:.3f}, "
        f"CPU {cpu_rate['trial'] / cpu_rate['bare']:.3f}  (goal >= 0.9)",
        f"ratio trial / bare+val : wall {wall_rate['trial'] / wall_rate['bare+val']:.3f}, "
        f"CPU {cpu_rate['trial'] / cpu_rate['bare+val']:.3f}",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as handle:
        handle.write(text + "\n")


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    main()
