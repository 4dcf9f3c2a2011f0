"""Accuracy against size and latency: morphnas' Pareto search against Optuna's multi-objective
samplers, at the same CPU-second budget.

Each search gets ``--budget`` CPU seconds (``time.process_time()`` of its process, one torch
thread, one ONNX Runtime thread), counted as in ``bench/peers.py`` (:class:`peers.CpuClock`: the
clock is checked before every training batch and before every new trial; the running trial is
cut at the budget and counts with its best finished epoch). Every completed trial's latency is
measured inside the budget by the same protocol, :func:`morphnas.nn.latency.measure_onnx` (its
ONNX file in ONNX Runtime on the CPU, one thread, batch 1, median of 30 runs after 5 warm-up
runs), because every method's search reads it.

Methods (``--methods``):

* ``morphnas-pareto``: a morphnas search with ``objectives=("params", "latency_ms")`` in-process,
  as the server's worker runs one (``bench/peers.py``'s loop: a temporary SQLite repository,
  ``SearchService.suggest`` → inherited initial weights → ``train_trial`` with the worker's
  recipe, :func:`peers.morphnas_train_config` → ``progress`` per epoch → latency → ``report``
  with the weights and the ``latency_ms`` metric). The search starts from the seed ladder of
  :mod:`morphnas.core.seed_ladder` and proposes by log EHVI per unit of training cost.
* ``optuna-tpe`` and ``optuna-nsga2``: Optuna's ``TPESampler(seed)`` and
  ``NSGAIISampler(seed, population_size=10)`` (the default population of 50 is more than a
  budget this size trains) on three objectives (validation accuracy ↑, log10 parameters ↓,
  latency ↓) over the conventional CNN space of ``bench/peers.py`` (:func:`peers.sample_space`,
  :func:`peers.build_cnn`: 2–5 conv blocks, width 16–128, kernel 3/5, residual, dropout,
  learning rate), trained from scratch with AdamW and a cosine schedule for ``--optuna-epochs``
  epochs (default 5, peers.py's ``optuna-tpe-short``: at this budget more, shorter trials give
  Optuna's fronts more points) as in ``peers.run_optuna`` (without its pruner: Optuna's pruners do not
  support multi-objective studies); a trial's accuracy is its best epoch's.

Score (per search, from its completed trials' validation accuracy ``a``, parameters ``p`` and
latency ``ℓ``): two 2-D hypervolumes (:func:`morphnas.search.pareto.hypervolume_2d`),

* ``HV_p``: of the points ``(a, log10 p)`` against the reference point (a = 0.1, the chance
  level of the 10 classes; log10 p = 6, a million parameters): accuracy above chance times
  decades of parameters below a million, summed over the staircase of the front;
* ``HV_ℓ``: of ``(a, log10 ℓ/ms)`` against (a = 0.1, ℓ = 1 ms).

The goal: a larger mean hypervolume than both Optuna samplers, on both datasets, for both.

Output in ``--out`` (default ``bench/results``): ``pareto.json`` (every search, written after
each), ``pareto.md`` (the table) and ``pareto.png`` (the fronts of seed 0).

Run::

    python bench/pareto.py --quick                # smoke test: digits, seed 0, 10 CPU-s
    python bench/pareto.py --jobs 2               # the figures of docs/performance.md (30 CPU-s)
    python bench/pareto.py --report               # table and plot again from the JSON
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (bench/peers.py: data, clock, CNN space, morphnas' trial recipe)

RESULTS = Path(__file__).parent / "results"
DATASETS = ("digits", "mnist1d")
METHODS = ("morphnas-pareto", "optuna-tpe", "optuna-nsga2")
#: Reference points (accuracy, log10 cost) of the two hypervolumes (see the module docstring).
REFERENCE_PARAMS = (0.1, 6.0)
REFERENCE_LATENCY = (0.1, 0.0)  # log10(1 ms)
LATENCY_WARMUP = 5
LATENCY_REPEATS = 30
LATENCY_BATCH = 32


def _latency_settings() -> Any:
    from morphnas.nn.latency import LatencySettings

    return LatencySettings(batch_size=LATENCY_BATCH, warmup=LATENCY_WARMUP, repeats=LATENCY_REPEATS)


# ------------------------------------------------------------------------------------ morphnas


def run_morphnas(dataset: str, seed: int, budget_s: float, say: Callable) -> list[dict]:
    """One in-process morphnas Pareto search; its trials as dicts (number, val, params, ms)."""
    from morphnas.core.graph import Graph
    from morphnas.core.records import (
        BUILTIN_DATASET_SHAPES,
        Policy,
        SearchConfig,
        TrainingBudget,
        TrialState,
    )
    from morphnas.core.weights import check_weights, weights_from_bytes, weights_to_bytes
    from morphnas.nn.latency import measure_latency
    from morphnas.nn.recipe import validation_score
    from morphnas.nn.train import train_trial
    from morphnas.server.service import SearchService
    from morphnas.storage.repository import Repository

    data, split, norm = peers.prepare(dataset, seed)
    input_shape, num_classes = BUILTIN_DATASET_SHAPES[dataset]
    defaults = peers.cli_defaults()
    run_budget = TrainingBudget(
        epochs=defaults["epochs"],
        max_seconds=peers.MAX_TRIAL_SECONDS,
        batch_size=defaults["batch_size"],
        optimizer=defaults["optimizer"],
        patience=defaults["patience"],
        device="cpu",
    )
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="morphnas-pareto-") as folder:
        repo = Repository.from_url(f"sqlite:///{Path(folder) / 'search.db'}")
        try:
            service = SearchService(repo)
            clock = peers.CpuClock(budget_s)
            search = service.create_search(
                SearchConfig(
                    name=f"pareto-{dataset}-{seed}",
                    input_shape=input_shape,
                    num_classes=num_classes,
                    seed=seed,
                    policy=Policy.BAYESIAN,
                    seed_width=defaults["seed_width"],
                    seed_depth=defaults["seed_depth"],
                    max_params=defaults["max_params"],
                    objectives=("params", "latency_ms"),
                    latency_batch_size=LATENCY_BATCH,
                )
            )
            while not clock.spent():
                [trial] = service.suggest(search.id, 1, "pareto-bench")
                graph = Graph.from_json(trial.architecture)
                weights = check_weights(
                    graph, weights_from_bytes(service.weights(trial.id, "initial"))
                )
                parent = service.get_trial(trial.parent_id) if trial.parent_id else None
                config = peers.morphnas_train_config(run_budget, search, trial, parent)

                def on_epoch(epoch: Any, trial_id: str = trial.id) -> bool:
                    _, stop = service.progress(
                        trial_id, epoch.epoch, epoch.val_accuracy, "val_accuracy"
                    )
                    return bool(stop)

                try:
                    result = train_trial(
                        graph,
                        weights,
                        data,
                        split,
                        norm,
                        config,
                        on_epoch=on_epoch,
                        should_stop=clock.spent,
                    )
                except Exception as err:  # noqa: BLE001 - a failed trial is part of the search
                    service.report(trial.id, state=TrialState.FAILED, score=None, reason=str(err))
                    continue
                latency = measure_latency(graph, result.weights, norm, _latency_settings())
                service.report(
                    trial.id,
                    state=TrialState.COMPLETED,
                    score=validation_score(result.val_accuracy, result.val_loss),
                    weights=weights_to_bytes(result.weights),
                    metrics=latency.metrics(),
                    measured_on=latency.machine,
                )
                records.append(
                    {
                        "number": trial.number,
                        "val": result.val_accuracy,
                        "params": graph.num_params,
                        "latency_ms": latency.batch1_ms,
                        "cpu": clock.used(),
                        "parent": trial.parent_id is not None,
                        "morphs": len(trial.operations),
                    }
                )
                say(_line(dataset, "morphnas-pareto", seed, records[-1]))
        finally:
            repo.close()
    return records


# ------------------------------------------------------------------------------------ optuna


def run_optuna(
    dataset: str, seed: int, budget_s: float, method: str, epochs: int, say: Callable
) -> list[dict]:
    """Optuna multi-objective TPE or NSGA-II over the CNN space of bench/peers.py."""
    import optuna
    import torch
    import torch.nn.functional as F

    from morphnas.nn.latency import measure_onnx

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data, split, norm = peers.prepare(dataset, seed)
    two_d = len(data.input_shape) == 3
    layout = torch.channels_last if two_d else torch.contiguous_format
    sampler: optuna.samplers.BaseSampler
    if method == "optuna-tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)

    def tensors(indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(norm.apply(data.x[indices]))  # (n, *input_shape)
        return x, torch.from_numpy(np.asarray(data.y[indices]))  # (n,)

    x_train, y_train = tensors(split.train)
    x_val, y_val = tensors(split.val)

    @torch.inference_mode()
    def accuracy(model: torch.nn.Module) -> float:
        model.eval()
        logits = model(x_val.contiguous(memory_format=layout))  # (n, K)
        return float((logits.argmax(1) == y_val).float().mean())

    clock = peers.CpuClock(budget_s)
    records: list[dict] = []
    n_train, batch = len(y_train), peers.BATCH_SIZE
    steps = max(1, n_train // batch)
    while not clock.spent():
        trial = study.ask()
        params = peers.sample_space(trial)
        torch.manual_seed(seed * 100_003 + trial.number)
        model = peers.build_cnn(params, data.input_shape, data.num_classes)
        model = model.to(memory_format=layout)
        n_params = sum(p.numel() for p in model.parameters())
        decayed = [p for p in model.parameters() if p.ndim >= 2]
        plain = [p for p in model.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [
                {"params": decayed, "weight_decay": peers.WEIGHT_DECAY},
                {"params": plain, "weight_decay": 0.0},
            ],
            lr=params["lr"],
        )
        generator = torch.Generator().manual_seed(seed * 100_003 + trial.number)
        total, step = epochs * steps, 0
        best: float | None = None
        best_state: dict[str, torch.Tensor] | None = None
        for _ in range(epochs):
            model.train()
            order = torch.randperm(n_train, generator=generator)
            cut = False
            for s in range(steps):
                if clock.spent():
                    cut = True
                    break
                rows = order[s * batch : (s + 1) * batch]
                for group in optimizer.param_groups:
                    group["lr"] = params["lr"] * 0.5 * (1.0 + math.cos(math.pi * step / total))
                loss = F.cross_entropy(
                    model(x_train[rows].contiguous(memory_format=layout)), y_train[rows]
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
            if cut:
                break
            val = accuracy(model)
            if best is None or val > best:
                best = val
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if best is None or best_state is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        model.load_state_dict(best_state)
        latency = measure_onnx(
            _onnx_of(model.eval(), data.input_shape), tuple(data.input_shape), _latency_settings()
        ).batch1_ms
        study.tell(trial, [best, math.log10(n_params), latency])
        records.append(
            {
                "number": trial.number,
                "val": best,
                "params": n_params,
                "latency_ms": latency,
                "cpu": clock.used(),
                "detail": params,
            }
        )
        say(_line(dataset, method, seed, records[-1]))
    return records


def _onnx_of(model: Any, input_shape: Sequence[int]) -> bytes:
    """The model as ONNX (float32 input (N, *input_shape), as morphnas exports)."""
    import io
    import warnings

    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros((1, *input_shape)),),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
    return buffer.getvalue()


def _line(dataset: str, method: str, seed: int, r: dict) -> str:
    return (
        f"{dataset:8s} {method:16s} seed {seed} #{r['number']:3d} val {r['val']:.4f} "
        f"params {r['params']:>9,} {r['latency_ms']:.4f} ms  cpu {r['cpu']:6.1f}"
    )


# ------------------------------------------------------------------------------------ scoring


def hypervolumes(records: Sequence[dict]) -> tuple[float, float]:
    """(HV_p, HV_ℓ) of a search's completed trials (see the module docstring)."""
    from morphnas.search.pareto import hypervolume_2d

    if not records:
        return 0.0, 0.0
    val = np.array([r["val"] for r in records], np.float64)
    log_p = np.log10([r["params"] for r in records])
    log_ms = np.log10([r["latency_ms"] for r in records])
    return (
        hypervolume_2d(val, log_p, REFERENCE_PARAMS),
        hypervolume_2d(val, log_ms, REFERENCE_LATENCY),
    )


def run_one(spec: tuple[str, str, int], budget: float, epochs: int, quiet: bool) -> dict:
    """One search in this process (single-threaded)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    dataset, method, seed = spec
    peers.prepare(dataset, seed)  # the dataset made before any clock starts

    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    began = time.process_time()
    if method == "morphnas-pareto":
        records = run_morphnas(dataset, seed, budget, say)
    else:
        records = run_optuna(dataset, seed, budget, method, epochs, say)
    hv_p, hv_l = hypervolumes(records)
    return {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "budget": budget,
        "cpu": time.process_time() - began,
        "hv_params": hv_p,
        "hv_latency": hv_l,
        "trials": records,
    }


# ------------------------------------------------------------------------------------ report


def table(results: Sequence[dict]) -> list[str]:
    lines = [
        "| dataset | method | seeds | trials (mean) | HV acc×log10 params (mean ± sd) "
        "| HV acc×log10 latency (mean ± sd) | best val (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in DATASETS:
        for method in METHODS:
            group = [r for r in results if r["dataset"] == dataset and r["method"] == method]
            if not group:
                continue
            hp = [r["hv_params"] for r in group]
            hl = [r["hv_latency"] for r in group]
            sd = statistics.stdev if len(group) > 1 else (lambda _: 0.0)
            best = [max((t["val"] for t in r["trials"]), default=0.0) for r in group]
            lines.append(
                f"| {dataset} | {method} | {len(group)} | "
                f"{statistics.mean(len(r['trials']) for r in group):.1f} | "
                f"{statistics.mean(hp):.3f} ± {sd(hp):.3f} | "
                f"{statistics.mean(hl):.3f} ± {sd(hl):.3f} | {statistics.mean(best):.4f} |"
            )
    return lines


def verdict(results: Sequence[dict]) -> list[str]:
    lines = []
    for dataset in DATASETS:
        means = {}
        for method in METHODS:
            group = [r for r in results if r["dataset"] == dataset and r["method"] == method]
            if group:
                means[method] = (
                    statistics.mean(r["hv_params"] for r in group),
                    statistics.mean(r["hv_latency"] for r in group),
                )
        if "morphnas-pareto" not in means or len(means) < 2:
            continue
        ours = means["morphnas-pareto"]
        for k, name in ((0, "params"), (1, "latency")):
            others = {m: v[k] for m, v in means.items() if m != "morphnas-pareto"}
            won = all(ours[k] > v for v in others.values())
            lines.append(
                f"- {dataset}, accuracy against {name}: morphnas {ours[k]:.3f} vs "
                + ", ".join(f"{m} {v:.3f}" for m, v in others.items())
                + (" — **larger than both**" if won else " — **not larger than both**")
            )
    return lines


def _front(records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    from morphnas.search.pareto import non_dominated

    val = np.array([r["val"] for r in records])
    cost = np.array([r[key] for r in records], np.float64)
    keep = non_dominated(val, cost[:, None])
    order = np.argsort(cost[keep])
    return cost[keep][order], val[keep][order]


def plot(results: Sequence[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in results)]
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 4.2 * len(datasets)), squeeze=False)
    colours = {"morphnas-pareto": "C3", "optuna-tpe": "C0", "optuna-nsga2": "C2"}
    for row, dataset in enumerate(datasets):
        for col, (key, label) in enumerate(
            (("params", "parameters"), ("latency_ms", "latency at batch 1 (ms, ONNX Runtime)"))
        ):
            ax = axes[row][col]
            for r in results:
                if r["dataset"] != dataset or r["seed"] != 0 or not r["trials"]:
                    continue
                x = [t[key] for t in r["trials"]]
                y = [t["val"] for t in r["trials"]]
                colour = colours[r["method"]]
                ax.scatter(x, y, s=10, alpha=0.3, color=colour)
                fx, fy = _front(r["trials"], key)
                ax.step(fx, fy, where="post", color=colour, label=r["method"], lw=2)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(label)
            ax.set_ylabel("validation accuracy")
            ax.set_title(f"{dataset} (seed 0): fronts and all trials")
            ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]))
            ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(payload: dict, out: Path) -> str:
    results = payload["results"]
    lines = [
        "# Accuracy against size and latency (bench/pareto.py)",
        "",
        f"Budget {payload['budget']:g} CPU-s per search, {payload['machine']}; "
        f"reference points: (accuracy {REFERENCE_PARAMS[0]}, 10^{REFERENCE_PARAMS[1]:g} "
        f"parameters) and (accuracy {REFERENCE_LATENCY[0]}, 1 ms).",
        "",
        *table(results),
        "",
        *verdict(results),
        "",
    ]
    text = "\n".join(lines)
    (out / "pareto.md").write_text(text)
    plot(results, out / "pareto.png")
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget", type=float, default=30.0, help="CPU seconds per search")
    p.add_argument("--optuna-epochs", type=int, default=5, help="epochs per Optuna trial")
    p.add_argument("--jobs", type=int, default=1, help="searches in parallel processes")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--resume", action="store_true", help="skip searches already in the JSON")
    p.add_argument("--report", action="store_true", help="only re-render table and plot")
    p.add_argument("--quick", action="store_true", help="smoke test: digits, seed 0, 10 CPU-s")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.datasets, args.seeds, args.budget = ["digits"], [0], 10.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "pareto.json"
    old = json.loads(path.read_text()) if path.exists() else None
    if args.report:
        if old is None:
            raise SystemExit(f"no {path}")
        print(write_report(old, args.out))
        return 0
    payload = {
        "budget": args.budget,
        "optuna_epochs": args.optuna_epochs,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "results": [],
    }
    if args.resume and old and old["budget"] == args.budget:
        payload["results"] = old["results"]
    done = {(r["dataset"], r["method"], r["seed"]) for r in payload["results"]}
    specs = [
        (d, m, s)
        for s in args.seeds
        for d in args.datasets
        for m in args.methods
        if (d, m, s) not in done
    ]
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=args.jobs, mp_context=__import__("multiprocessing").get_context("spawn")
    ) as pool:
        futures = [
            pool.submit(run_one, spec, args.budget, args.optuna_epochs, args.quiet)
            for spec in specs
        ]
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            payload["results"].append(result)
            path.write_text(json.dumps(payload, indent=1))
            print(
                f"done {result['dataset']} {result['method']} seed {result['seed']}: "
                f"{len(result['trials'])} trials, HV_p {result['hv_params']:.3f}, "
                f"HV_l {result['hv_latency']:.3f}",
                flush=True,
            )
    print(write_report(payload, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
