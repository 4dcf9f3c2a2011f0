"""Several seeds of a Pareto search: the search's seed and narrower, shallower ones.

Morphs only grow networks (wider, deeper, skip connections), so a search that starts from one
seed never proposes anything smaller than it. A Pareto search wants the whole accuracy–size
trade-off, so it starts from a ladder of seeds (all built by :func:`morphnas.core.seeds
.seed_graph`, the same kind of network) and grows each where the acquisition sees a gain:

``(w, d)`` (the search's seed), ``(w/4, d₂)``, ``(w/2, d₂)``, ``(w/4, d)``, ``(w/8, d)``

with ``w, d`` the search's seed width and depth, ``d₂ = min(2, d)`` (widths at least 2).
Duplicates (a small w or d) are given once. Why not one block: with the default recipe
(8 epochs) one-block networks stayed near chance on digits (width 8: 11 %, width 32: 25 %
validation accuracy) while two blocks of width 16 reached 86 % with 2,956 parameters, a 27th
of the default seed's.
"""

from __future__ import annotations

from morphnas.core.graph import Graph
from morphnas.core.layers import Shape
from morphnas.core.seeds import seed_graph


def ladder_sizes(width: int, depth: int) -> list[tuple[int, int]]:
    """The (width, depth) of each seed, the search's own first, without repeats."""
    shallow = min(2, depth)
    sizes = [
        (width, depth),
        (max(2, width // 4), shallow),
        (max(2, width // 2), shallow),
        (max(2, width // 4), depth),
        (max(2, width // 8), depth),
    ]
    return list(dict.fromkeys(sizes))


def seed_ladder(input_shape: Shape, num_classes: int, width: int, depth: int) -> list[Graph]:
    """The seeds of a Pareto search (see the module docstring)."""
    return [seed_graph(input_shape, num_classes, w, d) for w, d in ladder_sizes(width, depth)]
