"""The optimiser's one cache object: everything the search package remembers between asks.

A :class:`SearchCache` is built by the composition root (``morphnas.server.app``) and passed
down: ``SearchService`` → ``propose(..., cache=...)`` → the surrogate, the tree search and the
distance code. Nothing in ``morphnas.search`` keeps module-level state, and nothing is written
into the frozen domain objects (per-graph memos are held by identity, weakly).

It is only a cache: every entry is a pure function of its key, so a fresh object (what a
restart gives) changes timings, never results. It is safe to share between threads: each
table has its own lock, held only to look up or insert (:mod:`morphnas.search.memo`), and each
distance table holds its lock while it fills a block. Every table is bounded by its number of
entries and counts its hits and misses; :meth:`SearchCache.stats` reports them (the server
exports them as Prometheus metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from morphnas.search.distance import DistanceCache
from morphnas.search.memo import LRU, CacheStats, GraphMemo

if TYPE_CHECKING:
    from morphnas.core.graph import Graph
    from morphnas.core.morphs import Morph
    from morphnas.search.acquisition import Child
    from morphnas.search.descriptors import Descriptor
    from morphnas.search.gp import Basis, Hyper


class SearchCache:
    """See the module docstring. The tables, by the name :meth:`stats` reports them under:

    ``descriptors``        structural key → :class:`~morphnas.search.descriptors.Descriptor`
    ``parsed``             stored architecture text → (Graph, Descriptor)
    ``digests``            Graph (by identity) → structural digest of each of its tensors
    ``child_hashes``       Graph (by identity) → {morph → content hash of the child}
    ``architecture_keys``  stored architecture text → its tree-search node key
    ``neighbours``         (node key, seed, limit) → the morphs tried from that node
    ``children``           (node key, morph, batch size) → the materialised child
    ``hypers``             digest of the fitted points → fitted GP hyperparameters
    ``bases``              (digest of the landmarks, hyperparameters) → the kernel's feature map
    ``distance_layers``    layer distances between main chains (pairs; rows of ``max_rows``)
    ``distance_skips``     skip distances between skip sets (pairs; rows of ``max_rows``)
    ``distance_columns``   column sets of the batched distance DP
    ``distance_parent_rows``  DP rows of recently expanded tree-search nodes
    """

    def __init__(self, max_rows: int = 8192) -> None:
        self.descriptors: LRU[str, Descriptor] = LRU(200_000)
        self.parsed: LRU[str, tuple[Graph, Descriptor]] = LRU(20_000)
        self.digests: GraphMemo[Graph, dict[str, str]] = GraphMemo(20_000)
        self.child_hashes: GraphMemo[Graph, dict[Morph, str]] = GraphMemo(20_000)
        self.architecture_keys: LRU[str, str] = LRU(20_000)
        self.neighbours: LRU[tuple[Any, ...], tuple[Morph, ...]] = LRU(20_000)
        self.children: LRU[tuple[Any, ...], Child | None] = LRU(100_000)
        self.hypers: LRU[str, Hyper] = LRU(512)
        self.bases: LRU[tuple[Any, ...], Basis] = LRU(8)
        self.distances = DistanceCache(max_rows)

    def stats(self) -> dict[str, CacheStats]:
        """Hits, misses, entries and bound of every table, by name (see the class docstring)."""
        tables: dict[str, Any] = {
            "descriptors": self.descriptors,
            "parsed": self.parsed,
            "digests": self.digests,
            "child_hashes": self.child_hashes,
            "architecture_keys": self.architecture_keys,
            "neighbours": self.neighbours,
            "children": self.children,
            "hypers": self.hypers,
            "bases": self.bases,
        }
        found = {name: table.stats() for name, table in tables.items()}
        found.update(self.distances.stats())
        return found
