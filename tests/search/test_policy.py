"""Policies: bootstrap, Bayesian and random proposals on synthetic snapshots."""

from __future__ import annotations

import time

import numpy as np
import pytest

from morphnas.core.graph import Graph
from morphnas.core.morphs import apply_path
from morphnas.core.records import Policy, SearchSnapshot
from morphnas.core.seeds import seed_graph
from morphnas.search import acquisition, propose
from morphnas.search.acquisition import Constraints, Node, tree_search
from morphnas.search.cache import SearchCache
from morphnas.search.descriptors import descriptor
from morphnas.search.policy import Proposal
from tests.search import synthetic

BUDGET = 120.0  # generous: these tests check decisions, not latency


@pytest.fixture(autouse=True)
def small_neighbourhoods(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acquisition, "MAX_CHILDREN", 8)


@pytest.fixture(scope="module")
def graphs() -> list[Graph]:
    return synthetic.history(synthetic.config(), 24, rng_seed=2)


def key(p: Proposal) -> tuple:
    return (p.parent_id, p.operations, p.graph.content_hash)


def check_valid(snapshot: SearchSnapshot, proposals: list[Proposal]) -> None:
    """New, distinct, within caps, and reproducible from the named parent."""
    config = snapshot.search.config
    taken = {o.arch_hash for o in snapshot.observations}
    hashes = [p.graph.content_hash for p in proposals]
    assert len(set(hashes)) == len(hashes)
    assert not taken & set(hashes)
    by_id = {o.trial_id: o for o in snapshot.completed}
    seed = seed_graph(config.input_shape, config.num_classes, config.seed_width, config.seed_depth)
    for p in proposals:
        assert p.graph.num_params <= snapshot.search.size_cap_params
        assert p.graph.training_memory_bytes(config.batch_size) <= config.max_memory_bytes
        parent = seed if p.parent_id is None else Graph.from_json(by_id[p.parent_id].architecture)
        assert apply_path(parent, p.operations)[0].content_hash == p.graph.content_hash


def test_bootstrap_seed_first_then_seed_paths() -> None:
    cfg = synthetic.config()
    empty = synthetic.snapshot(cfg, [])
    [first] = propose(empty, 1)
    assert first.parent_id is None and first.operations == ()
    seed = seed_graph(cfg.input_shape, cfg.num_classes, cfg.seed_width, cfg.seed_depth)
    assert first.graph.content_hash == seed.content_hash
    three = propose(empty, 3)
    assert three[0].graph.content_hash == seed.content_hash
    check_valid(empty, three)
    # The seed is pending: more workers get morphs of the seed, still parent None.
    pending = synthetic.snapshot(cfg, [seed], pending=1)
    more = propose(pending, 4)
    assert len(more) == 4
    assert all(p.parent_id is None and 1 <= len(p.operations) <= 2 for p in more)
    check_valid(pending, more)


def test_bayesian_parallel_proposals_are_new_distinct_and_valid(graphs: list[Graph]) -> None:
    snapshot = synthetic.snapshot(synthetic.config(), graphs, pending=3)
    proposals = propose(snapshot, 4, time_budget_s=BUDGET)
    assert len(proposals) == 4
    check_valid(snapshot, proposals)
    assert all(p.parent_id is not None and p.operations for p in proposals)


def test_bayesian_is_deterministic_across_calls_and_restarts(graphs: list[Graph]) -> None:
    snapshot = synthetic.snapshot(synthetic.config(seed=7), graphs[:18])
    cache = SearchCache()  # shared by the calls of one process
    first = [key(p) for p in propose(snapshot, 2, time_budget_s=BUDGET, cache=cache)]
    again = [key(p) for p in propose(snapshot, 2, time_budget_s=BUDGET, cache=cache)]
    restart = SearchCache()  # a new process starts with an empty cache
    restarted = [key(p) for p in propose(snapshot, 2, time_budget_s=BUDGET, cache=restart)]
    assert first == again == restarted


def test_size_and_memory_caps_are_respected(graphs: list[Graph]) -> None:
    observed = sorted(g.num_params for g in graphs)
    cap = observed[len(observed) // 2]
    snapshot = synthetic.snapshot(synthetic.config(), graphs, size_cap=cap)
    proposals = propose(snapshot, 2, time_budget_s=BUDGET)
    assert proposals and all(p.graph.num_params <= cap for p in proposals)
    memory = sorted(g.training_memory_bytes(128) for g in graphs)
    tight = synthetic.config(max_memory_bytes=memory[len(memory) // 2])
    snapshot = synthetic.snapshot(tight, graphs)
    proposals = propose(snapshot, 2, time_budget_s=BUDGET)
    check_valid(snapshot, proposals)


def test_random_policy(graphs: list[Graph]) -> None:
    cfg = synthetic.config(policy=Policy.RANDOM, seed=3)
    snapshot = synthetic.snapshot(cfg, graphs, pending=2)
    proposals = propose(snapshot, 6)
    assert len(proposals) == 6
    check_valid(snapshot, proposals)
    completed = {o.trial_id for o in snapshot.completed}
    assert all(p.parent_id in completed and len(p.operations) == 1 for p in proposals)
    assert [key(p) for p in proposals] == [key(p) for p in propose(snapshot, 6)]
    # Better trials are picked more often (1/rank weights).
    many = propose(snapshot, 60)
    ranked = sorted(snapshot.completed, key=lambda o: -float(o.score or 0))
    top = {o.trial_id for o in ranked[:3]}
    assert sum(p.parent_id in top for p in many) > 60 * 3 / len(ranked)


def test_random_policy_does_not_rebuild_children_known_to_be_taken(
    graphs: list[Graph], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A morph drawn again whose child is known to be taken is skipped unbuilt: fewer graph
    builds, the same answer as building and checking every draw."""
    from morphnas.core.morphs import MORPH_KINDS, neighbourhood
    from morphnas.search import policy

    builds = 0
    for cls in set(MORPH_KINDS.values()):
        original = cls.apply

        def counting(self, graph, _original=original):  # type: ignore[no-untyped-def]
            nonlocal builds
            builds += 1
            return _original(self, graph)

        monkeypatch.setattr(cls, "apply", counting)
    cfg = synthetic.config(policy=Policy.RANDOM, seed=4)
    snapshot = synthetic.snapshot(cfg, graphs[:1])
    parent = Graph.from_json(snapshot.ranked[0].architecture)
    children = sorted({op.apply(parent).content_hash for op in neighbourhood(parent)})
    builds = 0
    crowded = frozenset(children[2:])  # all but two of the parent's children are taken
    caps = Constraints(10**12, 2**50, 1)
    cache = SearchCache()

    def draw() -> tuple:
        found = policy._random_one(
            snapshot.ranked, np.random.default_rng(7), policy.Taken(crowded), caps, cache
        )
        assert found is not None
        return key(found)

    cold = draw()
    cold_builds, builds = builds, 0
    warm = draw()  # the same draws; the taken children are known now
    warm_builds, builds = builds, 0
    monkeypatch.setattr(
        policy, "_random_step", lambda g, rng, taken, cache: policy._random_path(g, 1, rng)
    )
    plain = draw()
    assert cold == warm == plain and cold[2] in children[:2]
    assert warm_builds == 1 < cold_builds < builds  # plain: every draw built


def roots_of(graphs: list[Graph]) -> list[tuple[Node, float]]:
    return [
        (Node(g, acquisition.text_key(g.to_json()), descriptor(g), f"t{i}", ()), 0.0)
        for i, g in enumerate(graphs)
    ]


def test_tree_search_anneals_at_most_88_expansions_and_honours_deadline(
    graphs: list[Graph],
) -> None:
    limits = Constraints(10**9, 10**12, 128)
    rng = np.random.default_rng(0)

    def acquisition_of(candidates: list, parent: object) -> np.ndarray:
        return np.array([-abs(len(d.tokens) - 20) + 0.01 * len(d.skips) for d in candidates])

    found = tree_search(
        roots_of(graphs[:5]), acquisition_of, set(), limits, rng, time.perf_counter() + BUDGET, 0
    )
    assert found is not None and 1 <= found.expansions <= 88
    start = time.perf_counter()
    quick = tree_search(roots_of(graphs[5:10]), acquisition_of, set(), limits, rng, start + 0.05, 0)
    assert time.perf_counter() - start < 2.0
    assert quick is None or quick.expansions < 88


def test_bayesian_paths_stay_short(graphs: list[Graph]) -> None:
    snapshot = synthetic.snapshot(synthetic.config(seed=5), graphs[:12])
    for proposal in propose(snapshot, 2, time_budget_s=BUDGET):
        assert 1 <= len(proposal.operations) <= acquisition.MAX_PATH


def test_bayesian_with_a_single_completed_trial(graphs: list[Graph]) -> None:
    snapshot = synthetic.snapshot(synthetic.config(), graphs[:2], pending=1)
    proposals = propose(snapshot, 2, time_budget_s=BUDGET)
    assert len(proposals) == 2
    check_valid(snapshot, proposals)


def test_spent_budget_still_gives_a_guided_proposal(graphs: list[Graph]) -> None:
    snapshot = synthetic.snapshot(synthetic.config(), graphs)
    [proposal] = propose(snapshot, 1, time_budget_s=0.0)
    check_valid(snapshot, [proposal])
    assert 1 <= len(proposal.operations) <= acquisition.MAX_PATH


def test_rank_draws_are_exactly_what_generator_choice_would_draw() -> None:
    from morphnas.search.policy import _rank_cdf

    n = 1234
    weights = 1.0 / np.arange(1, n + 1)
    weights /= weights.sum()
    by_choice, by_cdf = np.random.default_rng([5, 77]), np.random.default_rng([5, 77])
    cdf = _rank_cdf(n)
    drawn = [int(cdf.searchsorted(by_cdf.random(), side="right")) for _ in range(500)]
    assert drawn == [int(by_choice.choice(n, p=weights)) for _ in range(500)]
