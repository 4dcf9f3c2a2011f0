"""How long morphing takes: enumerating a neighbourhood, and one morph with its weights.

For a few graphs (the seed CNN on (3, 32, 32) at width 64, about 80k parameters; a wider and
deeper seed of about 1M; and the small seed after random morphs up to about 60 layers) it times

* ``neighbourhood``: every legal one-step morph of the graph, on a fresh ``Graph`` instance so no
  per-graph cache is warm (the graph is validated before the clock starts);
* ``apply+transfer <kind>``: one random candidate of that kind applied to the graph (the child
  architecture, validated) and the parent's float32 weights carried over to it. The parent's
  own caches (shapes, main chain) are warm, as they are when a search expands one parent.

Median and 95th percentile over repeats, in milliseconds. Prints a table and writes it to
``bench/results/morph.txt``.

    python bench/morph.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from morphnas.core.graph import Graph
from morphnas.core.morphs import MORPH_KINDS, neighbourhood, sample_morph
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import init_weights

RESULTS = Path(__file__).parent / "results" / "morph.txt"


def bench_graphs() -> dict[str, Graph]:
    """The graphs to time, by a short description."""
    small = seed_graph((3, 32, 32), 10, width=64)
    large = seed_graph((3, 32, 32), 10, width=192, depth=4)
    morphed, rng = small, np.random.default_rng(0)
    while len(morphed.layers) < 60:
        morphed = sample_morph(morphed, rng).apply(morphed)
    return {"seed w64": small, "seed w192 d4": large, "seed w64 + morphs": morphed}


def fresh(graph: Graph) -> Graph:
    """An equal graph with cold caches (shapes are validated here, outside any timing)."""
    return Graph(graph.input_shape, graph.layers)


def timings(task: Callable[[], object], setup: Callable[[], object], repeats: int) -> np.ndarray:
    """Milliseconds of ``task(setup())`` over ``repeats`` runs (setup is not timed)."""
    result = []
    for _ in range(repeats):
        argument = setup()
        start = time.perf_counter()
        task(argument)  # type: ignore[call-arg]
        result.append((time.perf_counter() - start) * 1e3)
    return np.array(result)


def rows_for(name: str, graph: Graph, repeats: int) -> list[tuple[str, ...]]:
    weights = init_weights(graph, 0)
    rng = np.random.default_rng(1)
    ops = neighbourhood(graph)
    rows = []

    def row(what: str, ms: np.ndarray, note: str = "") -> None:
        median, p95 = np.median(ms), np.percentile(ms, 95)
        rows.append((name, f"{graph.num_params:,}", str(len(graph.layers)), what, note,
                     f"{median:.2f}", f"{p95:.2f}"))  # fmt: skip

    row("neighbourhood", timings(neighbourhood, lambda: fresh(graph), repeats), f"{len(ops)} ops")
    for kind in MORPH_KINDS:
        candidates = [op for op in ops if op.kind == kind]
        picked = [candidates[i] for i in rng.integers(len(candidates), size=repeats)]

        def one(op: object, g: Graph = graph) -> None:
            op.apply(g)  # type: ignore[attr-defined]
            op.transfer(g, weights)  # type: ignore[attr-defined]

        ms = timings(one, partial(next, iter(picked)), repeats)
        row(f"apply+transfer {kind}", ms, f"{len(candidates)} candidates")
    return rows


def table(rows: list[tuple[str, ...]]) -> str:
    header = ("graph", "params", "layers", "operation", "", "median ms", "p95 ms")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 5 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
             for r in [header, *rows]]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rows = []
    for name, graph in bench_graphs().items():
        rows.extend(rows_for(name, graph, args.repeats))
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"python {platform.python_version()}, numpy {np.__version__}, {args.repeats} repeats"
    )
    text = f"bench/morph.py ({machine})\n\n{table(rows)}\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
