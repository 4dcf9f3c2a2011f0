"""The Pareto maths against brute-force references, and a Pareto search's proposals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morphnas.core.records import Observation, Search, SearchConfig, SearchSnapshot, TrialState
from morphnas.core.seed_ladder import ladder_sizes, seed_ladder
from morphnas.search.pareto import (
    front_staircase,
    hypervolume_2d,
    log_ehvi,
    non_dominated,
)
from morphnas.search.policy import propose


def dominates(a_i: float, c_i: np.ndarray, a_j: float, c_j: np.ndarray) -> bool:
    """The definition, written out: at least as good everywhere, better somewhere."""
    at_least = a_i >= a_j and all(x <= y for x, y in zip(c_i, c_j, strict=True))
    better = a_i > a_j or any(x < y for x, y in zip(c_i, c_j, strict=True))
    return at_least and better


small = st.integers(min_value=0, max_value=4)  # few values: ties and duplicates are common


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(small, small, small), min_size=1, max_size=12))
def test_non_dominated_is_the_set_no_point_dominates(points: list[tuple[int, int, int]]) -> None:
    scores = np.array([p[0] for p in points], np.float64)
    costs = np.array([p[1:] for p in points], np.float64)
    expected = [
        not any(dominates(scores[i], costs[i], scores[j], costs[j]) for i in range(len(points)))
        for j in range(len(points))
    ]
    assert non_dominated(scores, costs).tolist() == expected


def test_hypervolume_of_a_staircase_by_hand() -> None:
    # Points (score, cost): (0.5, 1), (0.8, 3); reference (0, 5):
    # [1, 3) at height 0.5, [3, 5) at height 0.8 → 1.0 + 1.6.
    assert hypervolume_2d(np.array([0.5, 0.8]), np.array([1.0, 3.0]), (0.0, 5.0)) == 2.6
    # A dominated point adds nothing; points beyond the reference add nothing.
    assert (
        hypervolume_2d(np.array([0.5, 0.8, 0.4, 0.9]), np.array([1.0, 3.0, 2.0, 6.0]), (0.0, 5.0))
        == 2.6
    )


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(small, small), min_size=1, max_size=8))
def test_hypervolume_counts_the_dominated_cells(points: list[tuple[int, int]]) -> None:
    scores = np.array([p[0] for p in points], np.float64)
    costs = np.array([p[1] for p in points], np.float64)
    reference = (-1.0, 5.0)
    # Unit cells [a, a+1) x [c, c+1) of the grid, counted when some point dominates their
    # corner (a + 1, c).
    cells = sum(
        any(s >= a + 1 and c_ <= c for s, c_ in zip(scores, costs, strict=True))
        for a, c in itertools.product(range(-1, 5), range(0, 5))
    )
    assert hypervolume_2d(scores, costs, reference) == cells


def test_log_ehvi_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    scores, costs = np.array([0.2, 0.6, 0.9]), np.array([0.1, 0.5, 0.9])
    reference = (0.0, 1.2)
    breaks, levels = front_staircase(scores, costs, reference)
    base = hypervolume_2d(scores, costs, reference)
    for mean, std, cost in [(0.7, 0.1, 0.3), (0.95, 0.05, 0.95), (0.1, 0.3, 0.05)]:
        draws = rng.normal(mean, std, 20_000)
        gains = [
            hypervolume_2d(np.append(scores, a), np.append(costs, cost), reference) - base
            for a in draws
        ]
        exact = float(
            np.exp(log_ehvi(np.array([mean]), np.array([std]), np.array([cost]), breaks, levels))[0]
        )
        assert abs(exact - np.mean(gains)) < 4 * np.std(gains) / np.sqrt(len(gains)) + 1e-9


def test_seed_ladder_starts_with_the_search_seed_and_goes_smaller() -> None:
    assert ladder_sizes(64, 3) == [(64, 3), (16, 2), (32, 2), (16, 3), (8, 3)]
    assert ladder_sizes(8, 1) == [(8, 1), (2, 1), (4, 1)]
    graphs = seed_ladder((1, 8, 8), 10, 64, 3)
    params = [g.num_params for g in graphs]
    assert params[0] == max(params) and min(params) < params[0] / 25
    assert len({g.content_hash for g in graphs}) == len(graphs)


def _config(**options: object) -> SearchConfig:
    return SearchConfig(name="p", input_shape=(1, 8, 8), num_classes=10, **options)  # type: ignore[arg-type]


def test_a_pareto_search_first_hands_out_its_ladder_of_seeds() -> None:
    config = _config(objectives=("params", "latency_ms"))
    search = Search("a" * 32, config, 0.0, config.max_params)
    proposals = propose(SearchSnapshot(search, ()), 5)
    ladder = seed_ladder((1, 8, 8), 10, config.seed_width, config.seed_depth)
    assert [p.graph.content_hash for p in proposals] == [g.content_hash for g in ladder]
    assert all(p.parent_id is None and p.operations == () for p in proposals)
    # A single-objective search keeps its one seed.
    plain = Search("b" * 32, _config(), 0.0, config.max_params)
    assert propose(SearchSnapshot(plain, ()), 1)[0].graph.content_hash == ladder[0].content_hash
    assert propose(SearchSnapshot(plain, ()), 2)[1].operations != ()


def test_pareto_proposals_grow_small_networks_where_they_pay() -> None:
    """With accuracy that grows with log size, the front's cheap end is where EHVI per cost is
    largest: the proposals are one to three morphs from observed seeds, mostly small ones."""
    config = _config(objectives=("params",))
    search = Search("c" * 32, config, 0.0, config.max_params)
    ladder = seed_ladder((1, 8, 8), 10, config.seed_width, config.seed_depth)
    observations = tuple(
        Observation(
            f"{i:032x}",
            i,
            g.to_json(),
            g.content_hash,
            TrialState.COMPLETED,
            0.3 + 0.05 * float(np.log(g.num_params)),
            None,
            True,
            6.0,
        )
        for i, g in enumerate(ladder)
    )
    proposals = propose(SearchSnapshot(search, observations), 3, max_expansions=24)
    assert len(proposals) == 3
    assert len({p.graph.content_hash for p in proposals}) == 3
    parents = {o.trial_id: o for o in observations}
    assert all(p.parent_id in parents and 1 <= len(p.operations) <= 3 for p in proposals)
    assert min(p.graph.num_params for p in proposals) < ladder[0].num_params


def test_log_ehvi_is_finite_for_certain_and_hopeless_candidates() -> None:
    breaks, levels = front_staircase(np.array([0.2, 0.6]), np.array([0.1, 0.5]), (-5.0, 1.2))
    values = log_ehvi(
        np.array([0.5, 100.0, -1e4, 0.5]),
        np.array([1e-12, 1e-12, 1e-3, 0.1]),
        np.array([0.3, 0.3, 0.3, 5.0]),  # the last beyond the reference cost
        breaks,
        levels,
    )
    assert np.isfinite(values).all()
    # A certain score of 100 at cost 0.3 adds [0.3, 0.5) x (100 - 0.2) + [0.5, 1.2) x (100 - 0.6).
    assert np.exp(values[1]) == pytest.approx(0.2 * 99.8 + 0.7 * 99.4, rel=1e-9)
