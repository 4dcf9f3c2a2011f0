"""Maximising the acquisition over the morph tree (Auto-Keras's Algorithm 1, per-child annealing).

Acquisition: any α given by the caller, evaluated on a batch of one-step morphs of one node; the
Bayesian policy uses expected improvement per unit of predicted cost (:mod:`morphnas.search.ei`),
``α(x) = log EI(x) − κ·log ĉ(x)``, where ``−κ·log ĉ`` is the ``cost_penalty`` of the children's
FLOPs that :func:`tree_search` adds (a child's FLOPs are known once it is materialised).

Tree search: a max-priority queue on α, seeded with the observed architectures. Each iteration
pops the best node, expands it into one-step morphs (all of them, or a fixed subset of
:data:`MAX_CHILDREN` stratified by morph kind when the neighbourhood is larger; the subset depends
only on the seed and the node's structure, so it is the same on every ask and its children stay
cached), evaluates α on the new children in one batch, and pushes each child with the
simulated-annealing rule ``push if α' ≥ α* or U(0,1) < exp((α' − α*)/T)`` where α* is the best α
found so far. ``T`` starts at T₀ = 1 and is multiplied per expansion by the cooling factor (0.9
unless the caller gives another: the Bayesian policy picks the one that spans its expansion
budget, see :func:`morphnas.search.cost.cooling`); the search stops when ``T < 1e-4`` (at most 88
expansions at 0.9), after ``max_expansions``, when the queue is empty or at the wall-clock
deadline (an expansion is not started when 1.5x the longest one so far would overrun it; the
search goes on past the deadline until it has a candidate, so even a spent budget gives a
GP-guided answer). The answer is the best child seen, with its observed ancestor and the morph
path from it.

Nodes :data:`MAX_PATH` morphs away from their observed ancestor are leaves. Without this limit the
queue's best-first order dives: every child carries a little more σ than its parent, so with an
optimistic acquisition the search follows one chain for dozens of morphs, and proposals land far
from any trained network (where the GP is least reliable and weight inheritance helps least).

Children over the size caps, and architectures already observed, pending or proposed
(``excluded`` holds their structural keys), are never pushed (nor returned). Materialised
children are cached by (parent node key, morph) in the search's
:class:`~morphnas.search.cache.SearchCache`: a cache only.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from morphnas.core.errors import InvalidArgumentError
from morphnas.core.graph import Graph
from morphnas.core.morphs import Morph, neighbourhood_args
from morphnas.search.cache import SearchCache
from morphnas.search.descriptors import Descriptor, descriptor, structural_key

log = logging.getLogger(__name__)

T0 = 1.0
COOLING = 0.9
T_MIN = 1e-4
MAX_CHILDREN = 8
#: Longest morph path from an observed (trained) ancestor to a proposal.
MAX_PATH = 3


@dataclass(frozen=True)
class Constraints:
    """Size caps a proposal must respect."""

    max_params: int
    max_memory_bytes: int
    batch_size: int

    def allow(self, params: int, memory: int) -> bool:
        return params <= self.max_params and memory <= self.max_memory_bytes

    def allows(self, graph: Graph) -> bool:
        return self.allow(graph.num_params, graph.training_memory_bytes(self.batch_size))


@dataclass(frozen=True)
class Child:
    """A materialised one-step morph of a graph."""

    graph: Graph
    key: str  # names the graph *with* its layer names (see Node.key)
    descriptor: Descriptor
    params: int
    memory: int
    flops: int  # forward FLOPs of one example (what the cost model reads)


@dataclass(frozen=True)
class Node:
    """A tree-search node: an architecture, its observed ancestor and the morph path from it.

    ``key`` identifies the graph including its layer names (morphs refer to layers by name, and
    the content hash ignores names): for an observed graph a digest of its stored text, for a
    child a digest of (parent key, morph).
    """

    graph: Graph
    key: str
    descriptor: Descriptor
    parent_id: str
    operations: tuple[Morph, ...]


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def architecture_key(architecture: str, cache: SearchCache) -> str:
    """The node key of a stored architecture (cached: the same texts come back on every ask)."""
    return cache.architecture_keys.get_or(architecture, lambda: text_key(architecture))


@dataclass(frozen=True)
class Found:
    """The search's answer."""

    node: Node
    acquisition: float
    expansions: int


def child_morphs(
    graph: Graph, key: str, seed: int, cache: SearchCache, limit: int = MAX_CHILDREN
) -> tuple[Morph, ...]:
    """The morphs to try from ``graph``: all, or a fixed random subset of ``limit``.

    The subset is stratified by morph kind (round-robin over kinds, random within a kind), as
    skip connections otherwise make up most of a neighbourhood. Its randomness is seeded by
    (seed, structure of the graph), so a node gets the same children on every ask.
    """

    def build() -> tuple[Morph, ...]:
        # Arguments, not morphs: only the picked few of (often) thousands are built.
        groups = [(cls, args) for cls, args in neighbourhood_args(graph) if args]
        if sum(len(args) for _, args in groups) <= limit:
            return tuple(cls(*a) for cls, args in groups for a in args)
        rng = np.random.default_rng([seed, int(structural_key(graph, cache=cache)[:15], 16)])
        orders = [rng.permutation(len(args)).tolist() for _, args in groups]
        taken = [0] * len(groups)
        picked: list[Morph] = []
        while len(picked) < limit:
            for g, (cls, args) in enumerate(groups):
                if taken[g] < len(args) and len(picked) < limit:
                    picked.append(cls(*args[orders[g][taken[g]]]))
                    taken[g] += 1
        return tuple(picked)

    return cache.neighbours.get_or((key, seed, limit), build)


def materialise(
    graph: Graph, key: str, op: Morph, batch_size: int, cache: SearchCache
) -> Child | None:
    """``op.apply(graph)`` with its descriptor and costs (cached); None if the morph is illegal."""

    def build() -> Child | None:
        try:
            child = op.apply(graph)
        except InvalidArgumentError:
            return None
        return Child(
            child,
            text_key(f"{key}/{op!r}"),
            descriptor(child, graph, cache),
            child.num_params,
            child.training_memory_bytes(batch_size),
            child.flops,
        )

    return cache.children.get_or((key, op, batch_size), build)


def tree_search(
    roots: Sequence[tuple[Node, float]],
    acquisition: Callable[[list[Descriptor], Descriptor], np.ndarray],
    excluded: set[str],
    constraints: Constraints,
    rng: np.random.Generator,
    deadline: float,
    seed: int,
    max_children: int | None = None,
    max_expansions: int | None = None,
    cost_penalty: Callable[[np.ndarray], np.ndarray] | None = None,
    cooling: float = COOLING,
    cache: SearchCache | None = None,
    child_acquisition: Callable[[list[Child], Descriptor], np.ndarray] | None = None,
) -> Found | None:
    """Best new architecture by acquisition reachable from ``roots`` (node, α) — see module doc.

    ``acquisition(children, parent)`` gives α of a batch of one-step morphs of ``parent``;
    ``cost_penalty(flops)`` (Q,) → (Q,), if given, is added to it.
    ``cache``: the search's cache (a fresh one when not given).
    ``child_acquisition(children, parent)``, if given, replaces ``acquisition`` and sees the
    materialised children (their parameters and FLOPs): the Pareto acquisition of
    :mod:`morphnas.search.pareto_acquisition`.
    """
    cache = cache if cache is not None else SearchCache()
    limit = MAX_CHILDREN if max_children is None else max_children
    queue: list[tuple[float, int, Node]] = []
    counter = 0
    for node, value in roots:
        queue.append((-value, counter, node))
        counter += 1
    heapq.heapify(queue)
    seen = set(excluded) | {node.descriptor.key for node, _ in roots}
    best: Node | None = None
    best_value = -math.inf
    temperature = T0
    expansions = 0
    longest = 0.0  # longest expansion so far: do not start one that may not finish in time
    # (with a 1.5x margin: cold expansions after warm ones take longer)
    while (
        queue
        and temperature >= T_MIN
        and (max_expansions is None or expansions < max_expansions)
        and (best is None or time.perf_counter() + 1.5 * longest < deadline)
    ):
        began = time.perf_counter()
        _, _, node = heapq.heappop(queue)
        if len(node.operations) >= MAX_PATH:
            continue  # a leaf: proposals stay within MAX_PATH morphs of a trained ancestor
        fresh: list[tuple[Morph, Child]] = []
        for op in child_morphs(node.graph, node.key, seed, cache, limit):
            if fresh and best is not None and time.perf_counter() >= deadline:
                break  # evaluate what we have; the loop ends below
            child = materialise(node.graph, node.key, op, constraints.batch_size, cache)
            if child is None or child.descriptor.key in seen:
                continue
            seen.add(child.descriptor.key)
            if constraints.allow(child.params, child.memory):
                fresh.append((op, child))
        expansions += 1
        if fresh:
            if child_acquisition is not None:
                values = child_acquisition([child for _, child in fresh], node.descriptor)
            else:
                values = acquisition([child.descriptor for _, child in fresh], node.descriptor)
            if cost_penalty is not None:
                values = values + cost_penalty(np.array([c.flops for _, c in fresh], np.float64))
            for (op, child), value in zip(fresh, values.tolist(), strict=True):
                path = (*node.operations, op)
                new = Node(child.graph, child.key, child.descriptor, node.parent_id, path)
                if value > best_value:
                    best, best_value = new, value
                if value >= best_value or rng.random() < math.exp(
                    (value - best_value) / temperature
                ):
                    heapq.heappush(queue, (-value, counter, new))
                    counter += 1
        temperature *= cooling
        longest = max(longest, time.perf_counter() - began)
    if queue and temperature >= T_MIN and (max_expansions is None or expansions < max_expansions):
        log.info("tree search stopped by its time budget after %d expansions", expansions)
    if best is None:
        return None
    return Found(best, best_value, expansions)
