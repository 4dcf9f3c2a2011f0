"""Synthetic objectives of the architecture: the optimiser's unit benchmarks (no training).

Each objective scores a :class:`~morphnas.core.graph.Graph` (higher is better, about 0..1) and
:func:`seconds` says what training it "costs", so the cost model has something to learn.
:func:`run` drives :func:`~morphnas.search.policy.propose` one trial at a time, as a single
ask/tell worker would, on the digits-shaped seed of :mod:`tests.search.synthetic` (2,956
parameters).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from morphnas.core.graph import Graph
from morphnas.core.records import Observation, Policy, Search, SearchSnapshot, TrialState
from morphnas.search.cache import SearchCache
from morphnas.search.policy import propose
from tests.search import synthetic

#: The objectives' size scale: the synthetic seed's parameter count when they were written (the
#: depth-3 seed; today's depth-4 seed has 2,714). Kept fixed so the objectives, and the figures
#: measured on them, stay the same when the seed changes.
SEED_PARAMS = 2956


def _log_size(graph: Graph) -> float:
    """log(parameters / SEED_PARAMS)."""
    return math.log(graph.num_params / SEED_PARAMS)


def size_peak(graph: Graph) -> float:
    """Peaks at 6x SEED_PARAMS parameters, penalising growth past it (quadratic in log size);
    conv depth (up to 4 more layers) adds a little, so where the peak is reached matters."""
    convs = sum(layer.kind == "conv" for layer in graph.layers if layer.kernel > 1)
    return 0.8 - 0.15 * (_log_size(graph) - math.log(6.0)) ** 2 + 0.03 * min(convs - 2, 4)


def add_skips_only(graph: Graph) -> float:
    """Pays for add-skip connections (up to 6) and for nothing else; size costs a little."""
    adds = sum(layer.kind == "add" for layer in graph.layers)
    return 0.6 + 0.05 * min(adds, 6) - 0.02 * max(_log_size(graph), 0.0)


def first_layer_width(graph: Graph) -> float:
    """Needs width in the first conv layer (up to 128 units); size elsewhere costs a little."""
    first = next(layer for layer in graph.layers if layer.kind == "conv")
    gain = 0.1 * math.log2(min(first.units, 128) / 16)
    return 0.6 + gain - 0.03 * max(_log_size(graph), 0.0)


def depth_not_width(graph: Graph) -> float:
    """Pays for conv depth (up to 6 more layers), penalises every conv wider than the seed's
    16 units: the opposite of first_layer_width, so no single morph kind wins both."""
    convs = [layer for layer in graph.layers if layer.kind == "conv" and layer.kernel > 1]
    excess = sum(math.log2(layer.units / 16) for layer in convs if layer.units > 16)
    return 0.6 + 0.04 * min(len(convs) - 2, 6) - 0.05 * excess


OBJECTIVES: dict[str, Callable[[Graph], float]] = {
    "size_peak": size_peak,
    "add_skips_only": add_skips_only,
    "first_layer_width": first_layer_width,
    "depth_not_width": depth_not_width,
}


def seconds(graph: Graph) -> float:
    """A training time that grows with the forward FLOPs (the seed: about 5 s)."""
    return 0.3 + 5e-5 * graph.flops


@dataclass(frozen=True)
class Run:
    best: float
    path_lengths: list[int]  # of each proposal after the seed
    params: list[int]  # of each proposal after the seed
    seconds: float  # total "training" time


def run(
    objective: Callable[[Graph], float],
    policy: Policy,
    seed: int,
    trials: int = 30,
    **propose_args: object,
) -> Run:
    """``trials`` sequential ask/tell rounds; the best score, paths, sizes and total seconds."""
    cfg = synthetic.config(policy=policy, seed=seed)
    cache = SearchCache()  # what one server process keeps between asks
    observations: list[Observation] = []
    paths, params, total = [], [], 0.0
    for number in range(trials):
        search = Search("s", cfg, 0.0, cfg.max_params, number)
        snapshot = SearchSnapshot(search, tuple(observations))
        [proposal] = propose(snapshot, 1, cache=cache, **propose_args)  # type: ignore[arg-type]
        graph = proposal.graph
        cost = seconds(graph)
        observations.append(
            Observation(
                trial_id=f"t{number}",
                number=number,
                architecture=graph.to_json(),
                arch_hash=graph.content_hash,
                state=TrialState.COMPLETED,
                score=objective(graph),
                parent_id=proposal.parent_id,
                seconds=cost,
            )
        )
        total += cost
        if number:
            paths.append(len(proposal.operations))
            params.append(graph.num_params)
    return Run(max(float(o.score or 0.0) for o in observations), paths, params, total)


def table(
    seeds: tuple[int, ...] = (0, 1, 2), trials: int = 30, **propose_args: object
) -> dict[tuple[str, Policy], list[Run]]:
    return {
        (name, policy): [run(f, policy, s, trials, **propose_args) for s in seeds]
        for name, f in OBJECTIVES.items()
        for policy in (Policy.BAYESIAN, Policy.RANDOM)
    }


def summary(results: dict[tuple[str, Policy], list[Run]]) -> str:
    lines = [
        "objective          policy    best (mean)  per seed               path  params(med) params(mean)  s/search"
    ]
    for (name, policy), runs in results.items():
        paths = [p for r in runs for p in r.path_lengths]
        params = [p for r in runs for p in r.params]
        lines.append(
            f"{name:18} {policy.value:9} {np.mean([r.best for r in runs]):11.4f}  "
            + " ".join(f"{r.best:.4f}" for r in runs)
            + f"  {np.mean(paths):5.2f}  {int(np.median(params)):10,d}  {int(np.mean(params)):10,d}"
            + f"  {np.mean([r.seconds for r in runs]):8.1f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    import time

    expansions = int(sys.argv[1]) if len(sys.argv) > 1 else None
    start = time.perf_counter()
    args: dict[str, object] = {"time_budget_s": 60.0}
    if expansions:
        args["max_expansions"] = expansions
    print(summary(table(**args)))
    print(f"{time.perf_counter() - start:.1f} s")
