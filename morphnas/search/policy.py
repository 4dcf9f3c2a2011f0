"""Policies: a snapshot of a search in, proposals out. No state is kept between calls.

:func:`propose` dispatches on ``config.policy``:

* **bootstrap** (both policies, while no trial has completed): the seed architecture first
  (parent None), then, while the seed is pending or has failed, random 1–2 morph paths of the
  seed (parent None: the server builds them from the seed with initial weights).
* **random** (:attr:`Policy.RANDOM`, the baseline): a completed trial picked with probability
  proportional to 1/(rank by score), one uniformly sampled legal morph.
* **bayesian** (:attr:`Policy.BAYESIAN`): the GP of :mod:`morphnas.search.surrogate` with pending
  trials as fantasies at their predicted mean; the acquisition is expected improvement per unit
  of predicted training cost (:mod:`morphnas.search.ei`, cost model of :mod:`morphnas.search.cost`
  fitted on the snapshot's measured trial seconds), maximised by the tree search of
  :mod:`morphnas.search.acquisition` with an effort in expansions that scales with the measured
  trial time (:func:`morphnas.search.cost.expansions`); each proposal of a ``count > 1`` call
  becomes a fantasy before the next is searched, so k asks give k different architectures.
* **Pareto** (a search with ``objectives``): first the seeds of
  :func:`morphnas.core.seed_ladder.seed_ladder` (the search's seed, then narrower and shallower
  ones: morphs only grow networks, so small ones must be started from), then the bayesian
  policy with log EHVI in place of log EI (:mod:`morphnas.search.pareto_acquisition`); the
  random policy morphs as usual.

Every proposal is new (its content hash differs from every trial in the snapshot and from the
other proposals of the call) and respects the size caps. Randomness comes from a numpy Generator
seeded with ``(config.seed, number of trials in the snapshot)``, so the same snapshot gives the
same proposals — unless the wall-clock budget cuts the tree search short, which is logged.

What the search remembers between calls lives in the :class:`~morphnas.search.cache.SearchCache`
passed in (the server builds one and shares it between its threads); a fresh cache gives the same
proposals, more slowly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np

from morphnas.core.errors import InvalidArgumentError
from morphnas.core.graph import Graph
from morphnas.core.morphs import Morph, sample_morph
from morphnas.core.records import Observation, Policy, SearchSnapshot
from morphnas.core.seed_ladder import seed_ladder
from morphnas.core.seeds import seed_graph
from morphnas.search import cost, ei, surrogate
from morphnas.search.acquisition import T0, T_MIN, Constraints, Node, architecture_key, tree_search
from morphnas.search.cache import SearchCache
from morphnas.search.descriptors import Descriptor, descriptor, parse
from morphnas.search.pareto_acquisition import ParetoAcquisition

log = logging.getLogger(__name__)

#: Attempts at drawing a new random architecture before giving up on one proposal.
RANDOM_ATTEMPTS = 400


@dataclass(frozen=True)
class Proposal:
    """A new architecture: ``graph`` is ``operations`` applied to the parent trial's graph."""

    parent_id: str | None  # trial id of the observed ancestor (None = the seed architecture)
    operations: tuple[Morph, ...]  # path of morphs from the parent's graph to `graph`
    graph: Graph


def propose(
    snapshot: SearchSnapshot,
    count: int,
    *,
    time_budget_s: float | None = None,
    max_expansions: int | None = None,
    cache: SearchCache | None = None,
) -> list[Proposal]:
    """Up to ``count`` new architectures for this search (fewer only if none can be found).

    The tree search of each proposal stops after ``max_expansions`` expansions (None: scaled
    with the search's measured trial seconds by :func:`morphnas.search.cost.expansions`; either
    way a budget of work, so the answer depends only on the snapshot and the seed), or, as a
    safety net, when the call's ``time_budget_s`` is spent (None: ``count`` times
    :func:`morphnas.search.cost.safety_seconds` of the planned expansions; past it the answer
    depends on the machine's speed, which is logged). ``cache``: the cache shared by the calls
    of a process (a fresh one when not given: the same answer, more slowly).
    """
    if count < 1:
        return []
    cache = cache if cache is not None else SearchCache()
    config = snapshot.search.config
    rng = np.random.default_rng([config.seed % 2**63, len(snapshot.observations)])
    taken = Taken(snapshot.arch_hashes)
    constraints = Constraints(
        min(snapshot.search.size_cap_params, config.max_params),
        config.max_memory_bytes,
        config.batch_size,
    )
    seeds = _ladder(snapshot, count, taken, constraints) if config.objectives else []
    count -= len(seeds)
    if count < 1:
        return seeds
    completed = snapshot.completed
    if not completed:
        return seeds + _bootstrap(snapshot, count, rng, taken, constraints)
    if config.policy is Policy.RANDOM:
        return seeds + _random(snapshot.ranked, count, rng, taken, constraints, cache)
    planned = cost.expansions(completed) if max_expansions is None else max_expansions
    if time_budget_s is None:
        time_budget_s = cost.safety_seconds(planned) * count
    deadline = time.perf_counter() + time_budget_s
    return seeds + _bayesian(snapshot, count, rng, taken, constraints, deadline, cache, planned)


# ----------------------------------------------------------------------------- helpers


class Taken:
    """Content hashes a proposal must avoid: the snapshot's (shared, never copied: a search may
    hold many thousands) and those proposed so far in this call."""

    def __init__(self, stored: AbstractSet[str]) -> None:
        self._stored = stored
        self._new: set[str] = set()

    def __contains__(self, content_hash: object) -> bool:
        return content_hash in self._new or content_hash in self._stored

    def add(self, content_hash: str) -> None:
        self._new.add(content_hash)


def _rank_cdf(n: int) -> np.ndarray:
    """Cumulative probabilities of picking rank 1..n with probability proportional to 1/rank.

    Computed as ``Generator.choice(n, p=...)`` does, so that ``cdf.searchsorted(rng.random(),
    side="right")`` draws exactly what ``rng.choice(n, p=weights)`` would, without re-checking
    and re-summing ``p`` on every draw.
    """
    weights = 1.0 / np.arange(1, n + 1)
    weights /= weights.sum()
    cdf = weights.cumsum()
    cdf /= cdf[-1]
    return cdf


def _graph(observation: Observation) -> Graph:
    """The parsed graph alone (``Graph.from_json`` remembers recent parses; the random policy
    needs no descriptor, so none is built)."""
    return Graph.from_json(observation.architecture)


def _accept(graph: Graph, taken: Taken, constraints: Constraints) -> bool:
    return graph.content_hash not in taken and constraints.allows(graph)


def _random_path(
    graph: Graph, length: int, rng: np.random.Generator
) -> tuple[tuple[Morph, ...], Graph] | None:
    ops: list[Morph] = []
    for _ in range(length):
        try:
            op = sample_morph(graph, rng)
            graph = op.apply(graph)
        except InvalidArgumentError:
            return None
        ops.append(op)
    return tuple(ops), graph


def _random_step(
    graph: Graph, rng: np.random.Generator, taken: Taken, cache: SearchCache
) -> tuple[tuple[Morph, ...], Graph] | None:
    """``_random_path(graph, 1, rng)``, except that a morph whose child is known, from an
    earlier draw of the same morph of this (immutable) graph, to be taken already is not
    applied again: it returns None, as the check of that child would have. The draws made are
    the same either way, so the proposals are too.

    On a long search the best trials are drawn as parents again and again and their one-step
    children are soon all taken: about one draw in five, each costing a graph build and hash.
    """
    try:
        op = sample_morph(graph, rng)
    except InvalidArgumentError:
        return None
    known = cache.child_hashes.get_or(graph, dict)
    seen = known.get(op)
    if seen is not None and seen in taken:
        return None
    try:
        child = op.apply(graph)
    except InvalidArgumentError:
        return None
    known[op] = child.content_hash
    return (op,), child


def _bootstrap(
    snapshot: SearchSnapshot,
    count: int,
    rng: np.random.Generator,
    taken: Taken,
    constraints: Constraints,
) -> list[Proposal]:
    config = snapshot.search.config
    seed = seed_graph(config.input_shape, config.num_classes, config.seed_width, config.seed_depth)
    proposals: list[Proposal] = []
    if seed.content_hash not in taken:
        if not constraints.allows(seed):
            log.warning("the seed architecture is over the size caps; nothing to propose")
            return []
        proposals.append(Proposal(None, (), seed))
        taken.add(seed.content_hash)
    for _ in range(RANDOM_ATTEMPTS):
        if len(proposals) >= count:
            break
        drawn = _random_path(seed, 1 + int(rng.integers(2)), rng)
        if drawn is not None and _accept(drawn[1], taken, constraints):
            proposals.append(Proposal(None, *drawn))
            taken.add(drawn[1].content_hash)
    return proposals[:count]


def _ladder(
    snapshot: SearchSnapshot, count: int, taken: Taken, constraints: Constraints
) -> list[Proposal]:
    """A Pareto search's seeds not handed out yet, the search's own seed first
    (:func:`morphnas.core.seed_ladder.seed_ladder`: morphs only grow, so the small end of the
    front needs small starting points)."""
    config = snapshot.search.config
    proposals: list[Proposal] = []
    for graph in seed_ladder(
        config.input_shape, config.num_classes, config.seed_width, config.seed_depth
    ):
        if len(proposals) >= count:
            break
        if _accept(graph, taken, constraints):
            proposals.append(Proposal(None, (), graph))
            taken.add(graph.content_hash)
    return proposals


def _ranked(completed: Sequence[Observation]) -> list[Observation]:
    """Completed trials, best score first (ties: lower trial number)."""
    scores = np.array([o.score or 0.0 for o in completed], dtype=np.float64)
    numbers = np.array([o.number for o in completed], dtype=np.int64)
    return [completed[i] for i in np.lexsort((numbers, -scores)).tolist()]


def _random_one(
    ranked: Sequence[Observation],
    rng: np.random.Generator,
    taken: Taken,
    constraints: Constraints,
    cache: SearchCache,
) -> Proposal | None:
    cdf = _rank_cdf(len(ranked))
    for attempt in range(RANDOM_ATTEMPTS):
        parent = ranked[int(cdf.searchsorted(rng.random(), side="right"))]
        # One morph normally; two once one-step neighbours keep colliding.
        if attempt < RANDOM_ATTEMPTS // 2:
            drawn = _random_step(_graph(parent), rng, taken, cache)
        else:
            drawn = _random_path(_graph(parent), 2, rng)
        if drawn is not None and _accept(drawn[1], taken, constraints):
            return Proposal(parent.trial_id, *drawn)
    return None


def _random(
    ranked: Sequence[Observation],
    count: int,
    rng: np.random.Generator,
    taken: Taken,
    constraints: Constraints,
    cache: SearchCache,
) -> list[Proposal]:
    """``ranked``: the completed trials, best first (``SearchSnapshot.ranked``)."""
    proposals: list[Proposal] = []
    for _ in range(count):
        proposal = _random_one(ranked, rng, taken, constraints, cache)
        if proposal is None:
            break
        proposals.append(proposal)
        taken.add(proposal.graph.content_hash)
    return proposals


# ----------------------------------------------------------------------------- bayesian


@dataclass(frozen=True)
class _Points:
    """Distinct completed architectures, first-trial order, with mean score, count and parent."""

    graphs: list[Graph]  # as stored with trial_ids (layer names matter for morph paths)
    descriptors: list[Descriptor]
    keys: list[str]  # name-aware node keys (see acquisition.Node)
    scores: np.ndarray
    counts: np.ndarray
    trial_ids: list[str]  # the best-scoring trial of each architecture


def _points(completed: Sequence[Observation], cache: SearchCache) -> _Points:
    groups: dict[str, list[Observation]] = {}
    for o in sorted(completed, key=lambda o: o.number):
        groups.setdefault(parse(o.architecture, cache)[1].key, []).append(o)
    graphs, descs, keys, scores, counts, ids = [], [], [], [], [], []
    for members in groups.values():
        best = _ranked(members)[0] if len(members) > 1 else members[0]
        graph, desc = parse(best.architecture, cache)
        graphs.append(graph)
        descs.append(desc)
        keys.append(architecture_key(best.architecture, cache))
        if len(members) > 1:
            scores.append(float(np.mean([float(m.score or 0.0) for m in members])))
        else:
            scores.append(float(best.score or 0.0))
        counts.append(len(members))
        ids.append(best.trial_id)
    return _Points(graphs, descs, keys, np.array(scores), np.array(counts, np.float64), ids)


def _bayesian(
    snapshot: SearchSnapshot,
    count: int,
    rng: np.random.Generator,
    taken: Taken,
    constraints: Constraints,
    deadline: float,
    cache: SearchCache,
    max_expansions: int,
) -> list[Proposal]:
    config = snapshot.search.config
    points = _points(snapshot.completed, cache)
    costs = cost.CostModel.fit(
        [parse(o.architecture, cache)[0].flops for o in snapshot.completed],
        [o.seconds for o in snapshot.completed],
    )
    model = surrogate.Surrogate(points.descriptors, points.scores, points.counts, cache)
    excluded = {parse(o.architecture, cache)[1].key for o in snapshot.observations}
    pending = {
        desc.key: desc
        for desc in (parse(o.architecture, cache)[1] for o in snapshot.pending)
        if desc.key not in model.point_keys
    }
    model.add_fantasies(list(pending.values()))
    mean, std = model.predict_points()
    incumbent = float(np.max(mean))
    root_values = ei.acquisition(
        mean, std, incumbent, costs.log_relative(np.array([g.flops for g in points.graphs]))
    )
    front = None  # a Pareto search: log EHVI instead of log EI (search/pareto_acquisition.py)
    if config.objectives:
        front = ParetoAcquisition.build(
            config.objectives,
            model,
            costs,
            points.graphs,
            [snapshot.by_id[i].metrics for i in points.trial_ids],
            rng,
        )
        root_values = front.roots()
    roots = [
        (Node(g, key, desc, trial_id, ()), float(value))
        for g, key, desc, trial_id, value in zip(
            points.graphs,
            points.keys,
            points.descriptors,
            points.trial_ids,
            root_values,
            strict=True,
        )
    ]

    def acquisition_of(candidates: list[Descriptor], parent: Descriptor) -> np.ndarray:
        m, s = model.predict(candidates, parent)
        return ei.log_expected_improvement(m, s, incumbent)

    def cost_penalty(flops: np.ndarray) -> np.ndarray:
        return -ei.COST_EXPONENT * costs.log_relative(flops)

    start = time.perf_counter()
    budget = max(deadline - start, 0.0)
    ranked = snapshot.ranked
    proposals: list[Proposal] = []
    for k in range(count):
        proposal = None
        if front is not None and k > 0:
            front.redraw(rng)
        for _ in range(3):  # the structural key and the content hash agree; this is a guard
            found = tree_search(
                roots,
                acquisition_of,
                excluded,
                constraints,
                rng,
                start + budget * (k + 1) / count,
                config.seed % 2**63,
                max_expansions=max_expansions,
                cost_penalty=cost_penalty if front is None else None,
                cooling=cost.cooling(max_expansions, T0, T_MIN),
                cache=cache,
                child_acquisition=front.children if front is not None else None,
            )
            if found is None:
                break
            if found.node.graph.content_hash not in taken:
                node = found.node
                proposal = Proposal(node.parent_id, node.operations, node.graph)
                log.debug(
                    "proposal %d: α=%.3f after %d expansions, %s from trial %s",
                    k,
                    found.acquisition,
                    found.expansions,
                    "+".join(op.kind for op in node.operations),
                    node.parent_id,
                )
                break
            excluded.add(found.node.descriptor.key)
        if proposal is None:
            proposal = _random_one(ranked, rng, taken, constraints, cache)
            if proposal is None:
                break
        proposals.append(proposal)
        taken.add(proposal.graph.content_hash)
        excluded.add(descriptor(proposal.graph, cache=cache).key)
        if k + 1 < count:
            model.add_fantasies([descriptor(proposal.graph, cache=cache)])
    return proposals
