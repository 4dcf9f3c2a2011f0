"""Synthetic search histories for the search tests and the benchmark (no database needed)."""

from __future__ import annotations

import math

import numpy as np

from morphnas.core.graph import Graph
from morphnas.core.morphs import sample_morph
from morphnas.core.records import (
    Observation,
    Policy,
    Search,
    SearchConfig,
    SearchSnapshot,
    TrialState,
)
from morphnas.core.seeds import seed_graph

DIGITS = (1, 8, 8)


def config(policy: Policy = Policy.BAYESIAN, seed: int = 0, **changes: object) -> SearchConfig:
    values: dict[str, object] = {
        "name": "synthetic",
        "input_shape": DIGITS,
        "num_classes": 10,
        "seed": seed,
        "policy": policy,
        "seed_width": 16,
        "seed_depth": 2,
    }
    values.update(changes)
    return SearchConfig(**values)  # type: ignore[arg-type]


def score(graph: Graph) -> float:
    """A smooth synthetic objective: best near 60k parameters, likes depth and a few skips."""
    params = math.log(graph.num_params)
    depth = len(graph.main_chain)
    skips = sum(layer.kind in ("add", "concat") for layer in graph.layers)
    return (
        0.9 - 0.03 * (params - math.log(6e4)) ** 2 + 0.004 * min(depth, 30) + 0.01 * min(skips, 3)
    )


def history(cfg: SearchConfig, n: int, rng_seed: int = 0) -> list[Graph]:
    """n distinct architectures: the seed, then random 1-2 morph paths from earlier ones."""
    rng = np.random.default_rng(rng_seed)
    seed = seed_graph(cfg.input_shape, cfg.num_classes, cfg.seed_width, cfg.seed_depth)
    graphs = [seed]
    hashes = {seed.content_hash}
    while len(graphs) < n:
        graph = graphs[int(rng.integers(len(graphs)))]
        for _ in range(1 + int(rng.integers(2))):
            graph = sample_morph(graph, rng).apply(graph)
        if graph.content_hash not in hashes and graph.num_params < 2_000_000:
            hashes.add(graph.content_hash)
            graphs.append(graph)
    return graphs


def observation(
    graph: Graph, number: int, state: TrialState = TrialState.COMPLETED, value: float | None = None
) -> Observation:
    if state is TrialState.COMPLETED and value is None:
        value = score(graph)
    return Observation(
        trial_id=f"t{number}",
        number=number,
        architecture=graph.to_json(),
        arch_hash=graph.content_hash,
        state=state,
        score=value if state is TrialState.COMPLETED else None,
        parent_id=None,
    )


def snapshot(
    cfg: SearchConfig,
    graphs: list[Graph],
    pending: int = 0,
    size_cap: int | None = None,
) -> SearchSnapshot:
    """The first len(graphs) - pending completed, the last `pending` ACTIVE."""
    observations = tuple(
        observation(g, i, TrialState.ACTIVE if i >= len(graphs) - pending else TrialState.COMPLETED)
        for i, g in enumerate(graphs)
    )
    search = Search(
        id="s1",
        config=cfg,
        created_at=0.0,
        size_cap_params=cfg.max_params if size_cap is None else size_cap,
        trial_count=len(observations),
    )
    return SearchSnapshot(search, observations)
